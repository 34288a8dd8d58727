"""Python values from YAML, with the line of every value, duplicate keys refused and YAML 1.1 traps named.

:class:`NodeBuilder` reads composed nodes (aliases expanded into copies under the alias cap, merge keys
flattened), with the line of every value and each problem. :class:`PlainBuilder` reads a plain file (most files)
straight from its events, without lines, and gives up on anything else. See :mod:`convcost.spec.yamlio`, which
reads files, tries PlainBuilder, and otherwise streams the events once under the caps before composing nodes.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from convcost.errors import FieldIssue, Loc, SpecError
from convcost.spec.bounds import MAX_NUMBER_TEXT

_PLAIN_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")

_MERGE_TAG = "tag:yaml.org,2002:merge"
# the keys flatten_mapping rewrites: merge keys (<<) and value keys (=)
_FLATTENED = frozenset({_MERGE_TAG, "tag:yaml.org,2002:value"})
_STR_TAG = "tag:yaml.org,2002:str"


class NodeBuilder:
    """Python values from composed nodes, with the line of each value, the YAML 1.1 traps and the alias cap."""

    def __init__(
        self,
        loader: Any,
        lines: dict[Loc, int],
        key_lines: dict[Loc, int],
        issues: list[FieldIssue],
        max_values: int,
        max_depth: int,
    ) -> None:
        self.loader = loader
        self.lines, self.key_lines = lines, key_lines  # the line of each value, and of each key, by place
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
            self.key_lines[(*loc, key)] = key_line
            result[key] = self.value(value_node, (*loc, key))
        return result


class Unusual(Exception):
    """The file is not plain: read it the full way, which names each problem with its line (yamlio.loads)."""


_ENDS = (yaml.DocumentEndEvent, yaml.StreamEndEvent)


class PlainBuilder:
    """The values of a plain file (one document without anchors, aliases, tags, issues or values past the caps),
    streamed from its events without lines: what NodeBuilder would give it. Unusual for any other file."""

    def __init__(self, text: str, loader_class: Any, max_values: int, max_depth: int) -> None:
        # what loader.resolve reads, by a plain scalar's first character (the safe loaders have no path resolvers)
        self.resolvers: dict[Any, list[tuple[str, Any]]] = loader_class.yaml_implicit_resolvers
        if None in self.resolvers or loader_class.yaml_path_resolvers:
            raise Unusual
        self.loader = loader_class(text)
        self.next = self.loader.get_event
        self.left, self.depth = max_values, max_depth
        # (text, implicit) → the value, of the scalars read so far that may be values, and that may be keys
        self.values: dict[tuple[str, Any], Any] = {}
        self.keys: dict[tuple[str, Any], Any] = {}

    def read(self) -> Any:
        try:
            if [type(self.next()), type(self.next())] != [yaml.StreamStartEvent, yaml.DocumentStartEvent]:
                raise Unusual  # an empty file
            data = self.value(self.next())
            if (type(self.next()), type(self.next())) != _ENDS:
                raise Unusual  # a second document
            return data
        except yaml.YAMLError:
            raise Unusual from None
        finally:
            self.loader.dispose()

    def value(self, event: Any) -> Any:
        self.left -= 1
        if self.left < 0:  # past the cap: given up at once (the caps scan names the line)
            raise Unusual
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return self.scalar(event, self.values, _PLAIN_TAGS)
        self.depth -= 1
        if kind is yaml.AliasEvent or event.tag is not None or event.anchor is not None or self.depth < 0:
            raise Unusual
        if kind is yaml.SequenceStartEvent:
            items = []
            while type(event := self.next()) is not yaml.SequenceEndEvent:
                items.append(self.value(event))
            self.depth += 1
            return items
        result: dict[Any, Any] = {}
        while type(event := self.next()) is yaml.ScalarEvent:
            key = self.scalar(event, self.keys, _KEY_TAGS)
            if key in result:
                raise Unusual
            if type(event := self.next()) is yaml.ScalarEvent:  # most values: read here, a call saved
                self.left -= 1
                if self.left < 0:
                    raise Unusual
                result[key] = self.scalar(event, self.values, _PLAIN_TAGS)
            else:
                result[key] = self.value(event)
        if type(event) is not yaml.MappingEndEvent:
            raise Unusual  # a list or a mapping as a key
        self.depth += 1
        return result

    def scalar(self, event: Any, known: dict[tuple[str, Any], Any], tags: frozenset[str]) -> Any:
        """A scalar's value where its tag is one of ``tags``, as read so far into ``known``."""
        if event.tag is not None or event.anchor is not None:
            raise Unusual
        value = known.get(key := (event.value, event.implicit), known)
        if value is not known:
            return value
        text, tag = event.value, _STR_TAG
        for candidate, regexp in self.resolvers.get(text[:1], ()) if event.implicit[0] else ():
            if regexp.match(text):
                tag = candidate
                break
        value = text
        if tag not in tags:
            raise Unusual
        if tag == _INT_TAG:  # a plain decimal reads as int() reads it; 0x1, 010, 1_000, 1:30 are issues
            if len(text) > MAX_NUMBER_TEXT or not _PLAIN_DECIMAL.match(text):
                raise Unusual
            value = int(text)
        elif tag != _STR_TAG:
            value = _scalar(yaml.ScalarNode(tag, text, event.start_mark, event.end_mark), self.loader, {})
        known[key] = value
        return value


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
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
)
_KEY_TAGS = frozenset({_STR_TAG, _INT_TAG})


def _foreign(tag: str, loc: Loc, line: int) -> FieldIssue:
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    return FieldIssue(loc, f"YAML tag {shown} is not allowed here: write plain values", line)
