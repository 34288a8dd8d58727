"""Python values from YAML, with the line of every value, duplicate keys refused and YAML 1.1 traps named.

Two builders give the same values, lines and issues in the same order: :class:`EventBuilder` straight from the
events of a file without anchors and aliases (most files), :class:`NodeBuilder` from composed nodes (aliases
expanded into copies under the alias cap, merge keys flattened). See :mod:`convcost.spec.yamlio`, which reads
files, streams their events once under the caps and picks the builder.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from convcost.errors import FieldIssue, SpecError
from convcost.spec.bounds import MAX_NUMBER_TEXT

Loc = tuple[str | int, ...]

_PLAIN_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
COLLECTION_START = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
COLLECTION_END = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})

_MERGE_TAG = "tag:yaml.org,2002:merge"
# the keys flatten_mapping rewrites: merge keys (<<) and value keys (=)
_FLATTENED = frozenset({_MERGE_TAG, "tag:yaml.org,2002:value"})
_STR_TAG = "tag:yaml.org,2002:str"


class NodeBuilder:
    """Python values from composed nodes, with the line of each value, the YAML 1.1 traps and the alias cap."""

    def __init__(
        self, loader: Any, lines: dict[Loc, int], issues: list[FieldIssue], max_values: int, max_depth: int
    ) -> None:
        self.loader = loader
        self.lines = lines
        self.issues = issues
        self.max_values, self.max_depth = max_values, max_depth
        self.left = max_values
        # (tag, text) → the value: the same text under the same tag constructs to the same immutable value
        self.scalars: dict[tuple[str, str], Any] = {}

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.left -= 1
        if self.left < 0:
            # the file as written was counted by yamlio's scan: only aliases can take it past the cap here
            raise SpecError(
                [FieldIssue((), f"more than {self.max_values:,} values once aliases are expanded: refusing to load "
                                "(nested aliases can make a short file enormous)", node.start_mark.line + 1)]
            )  # fmt: skip
        if len(loc) > self.max_depth:  # aliases inside aliases nest deeper than the file as written
            raise SpecError(
                [FieldIssue((), f"lists and mappings nested more than {self.max_depth} levels deep once aliases are "
                                "expanded", node.start_mark.line + 1)]
            )  # fmt: skip
        self.lines[loc] = node.start_mark.line + 1
        if node.tag not in _PLAIN_TAGS:
            self.issues.append(_foreign(node.tag, loc, node.start_mark.line + 1))
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*loc, index)) for index, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = _scalar(node, self.loader, self.scalars)
        # the style is None (pure-Python parser) or "" (libyaml) for a plain scalar; a bool is not an int here
        if type(value) is int and not node.style and not _PLAIN_DECIMAL.match(node.value):
            self.issues.append(_yaml11_number(loc, node.value, value, node.start_mark.line + 1))
        return value

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        issues = self.issues
        explicit: set[int] | None = None  # the mapping's own keys, when it merges others
        if any(key_node.tag in _FLATTENED for key_node, _ in node.value):
            explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
            try:
                self.loader.flatten_mapping(node)  # merge keys (<<): merged pairs first, then the mapping's own
            except yaml.constructor.ConstructorError:
                line = node.start_mark.line + 1
                self.issues.append(FieldIssue(loc, "a merge key (<<) takes a mapping or a list of mappings", line))
                return {}
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merged: set[Any] = set()  # keys whose value came from a merge: the mapping's own key may override them
        for key_node, value_node in node.value:
            if key_node.tag not in _PLAIN_TAGS:
                issues.append(_foreign(key_node.tag, loc, key_node.start_mark.line + 1))
                continue
            key = _scalar(key_node, self.loader, self.scalars) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int)) or _long_number(key_node):
                issues.append(FieldIssue(loc, "mapping keys must be plain words", key_node.start_mark.line + 1))
                continue
            if isinstance(key, bool):
                issues.append(_boolean_key(loc, key_node.value, key_node.start_mark.line + 1))
                continue
            key_line = key_node.start_mark.line + 1
            if key in result and key not in merged:
                issues.append(
                    FieldIssue((*loc, key), f"duplicate key (first given on line {first_line[key]})", key_line)
                )
                continue
            if explicit is not None:
                merged.discard(key)
                if id(key_node) not in explicit:
                    merged.add(key)
            first_line[key] = key_line
            self.lines[("key", *loc, key)] = key_line
            result[key] = self.value(value_node, (*loc, key))
        return result


class NeedNodes(Exception):
    """The file needs composed nodes: it has a merge key."""


class EventBuilder:
    """What NodeBuilder builds, straight from the events of a file without anchors and aliases (most files): the
    same values, lines and issues in the same order, without composing nodes first."""

    def __init__(self, events: list[Any], loader: Any, lines: dict[Loc, int], issues: list[FieldIssue]) -> None:
        self.events = events
        self.at = 0  # the next event
        self.loader = loader
        self.lines = lines
        self.issues = issues
        self.scalars: dict[tuple[str | None, str, tuple[bool, bool]], tuple[str, Any]] = {}

    def value(self, loc: Loc) -> Any:
        event = self.events[self.at]
        self.at += 1
        kind = type(event)
        line = event.start_mark.line + 1
        self.lines[loc] = line
        if kind is yaml.ScalarEvent:
            tag, value = self.scalar(event)
            if tag not in _PLAIN_TAGS:
                self.issues.append(_foreign(tag, loc, line))
                return None
            if type(value) is int and not event.style and not _PLAIN_DECIMAL.match(event.value):
                self.issues.append(_yaml11_number(loc, event.value, value, line))
            return value
        tag = self.tag(event, kind)
        if tag not in _PLAIN_TAGS:
            self.issues.append(_foreign(tag, loc, line))
            self.skip(kind)
            return None
        if kind is yaml.MappingStartEvent:
            return self.mapping(loc)
        items: list[Any] = []
        while type(self.events[self.at]) is not yaml.SequenceEndEvent:
            items.append(self.value((*loc, len(items))))
        self.at += 1
        return items

    def mapping(self, loc: Loc) -> dict[Any, Any]:
        events, issues = self.events, self.issues
        result: dict[Any, Any] = {}
        while type(key_event := events[self.at]) is not yaml.MappingEndEvent:
            self.at += 1
            kind = type(key_event)
            if kind is yaml.ScalarEvent:
                tag, key = self.scalar(key_event)
            else:  # a list or a mapping as a key: refused below, once past it
                tag, key = self.tag(key_event, kind), None
                self.skip(kind)
            if tag in _FLATTENED:
                raise NeedNodes
            line = key_event.start_mark.line + 1
            if tag not in _PLAIN_TAGS:
                issues.append(_foreign(tag, loc, line))
                self.skip_value()
                continue
            if not isinstance(key, (str, int)) or (tag == _INT_TAG and len(key_event.value) > MAX_NUMBER_TEXT):
                issues.append(FieldIssue(loc, "mapping keys must be plain words", line))
                self.skip_value()
                continue
            if isinstance(key, bool):
                issues.append(_boolean_key(loc, key_event.value, line))
                self.skip_value()
                continue
            if key in result:
                first = self.lines[("key", *loc, key)]
                issues.append(FieldIssue((*loc, key), f"duplicate key (first given on line {first})", line))
                self.skip_value()
                continue
            self.lines[("key", *loc, key)] = line
            result[key] = self.value((*loc, key))
        self.at += 1
        return result

    def tag(self, event: Any, kind: type) -> str:
        """A collection's tag, resolved as the composer resolves it."""
        tag: str | None = event.tag
        if tag is not None and tag != "!":
            return tag
        node_class = yaml.MappingNode if kind is yaml.MappingStartEvent else yaml.SequenceNode
        return str(self.loader.resolve(node_class, None, event.implicit))

    def scalar(self, event: Any) -> tuple[str, Any]:
        """A scalar's tag, resolved as the composer resolves it, and its value (see :func:`_scalar`): the same text
        and tag give the same immutable value, so both are kept by (tag, text, implicit)."""
        key = (event.tag, event.value, event.implicit)
        known = self.scalars.get(key)
        if known is None:
            tag: str | None = event.tag
            if tag is None or tag == "!":  # the safe loader resolves by the text alone (it has no path resolvers)
                tag = str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))
            value = event.value
            if tag != _STR_TAG and tag in _PLAIN_TAGS:  # a foreign tag is refused, never constructed
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
                value = _scalar(node, self.loader, {})  # a malformed tagged scalar is its text, as from nodes
            known = self.scalars[key] = (tag, value)
        return known

    def skip(self, kind: type) -> None:
        """Past the rest of a value whose first event was of ``kind``."""
        depth = 1 if kind in COLLECTION_START else 0
        while depth:
            kind = type(self.events[self.at])
            self.at += 1
            depth += 1 if kind in COLLECTION_START else -1 if kind in COLLECTION_END else 0

    def skip_value(self) -> None:
        self.at += 1
        self.skip(type(self.events[self.at - 1]))


def _scalar(node: yaml.Node, loader: Any, scalars: dict[tuple[str, str], Any]) -> Any:
    """A scalar's value; ``scalars`` keeps each (tag, text) constructed (the values are immutable)."""
    tag = node.tag
    if tag == _STR_TAG:  # what construct_yaml_str returns
        return node.value
    if _long_number(node):
        return str(node.value)
    cached = scalars.get((tag, node.value), scalars)
    if cached is not scalars:
        return cached
    try:
        value = loader.construct_object(node, deep=True)
    except Exception:  # PyYAML's constructors raise anything on a malformed tagged scalar
        # (ValueError for the timestamp 2001-13-45, KeyError for !!bool maybe, AttributeError for !!timestamp x):
        # its text, for the validators, and the node forgotten so that an alias to it is not "recursive"
        loader.recursive_objects.pop(node, None)
        return str(node.value)
    scalars[(tag, node.value)] = value
    return value


def _yaml11_number(loc: Loc, text: str, value: int, line: int) -> FieldIssue:
    return FieldIssue(
        loc,
        f"YAML 1.1 reads {text} as the number {value}: write it as a decimal number, "
        f'or quote it if you mean something else ("{text}")',
        line,
    )


def _boolean_key(loc: Loc, text: str, line: int) -> FieldIssue:
    # `on:`/`off:`/`yes:` as keys: YAML 1.1 turns them into booleans
    return FieldIssue(loc, f"key {text!r} reads as a boolean in YAML 1.1: quote it", line)


_INT_TAG = "tag:yaml.org,2002:int"


def _long_number(node: yaml.Node) -> bool:
    """An integer too long to convert safely (int() of 5,000 digits raises): kept as its text, which the
    validators then refuse with the field's range (see convcost.spec.bounds)."""
    return node.tag == _INT_TAG and len(str(node.value)) > MAX_NUMBER_TEXT


# What the safe loader resolves plain YAML to; anything else (!!python/..., !!set, custom tags) is refused with a
# line rather than silently read as a list or a mapping, or crashing the constructor.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
}


def _foreign(tag: str, loc: Loc, line: int) -> FieldIssue:
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    return FieldIssue(loc, f"YAML tag {shown} is not allowed here: write plain values", line)
