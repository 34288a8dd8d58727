"""Loading YAML safely, with the line of every value, duplicate keys rejected and YAML 1.1 traps named.

PyYAML implements YAML 1.1, where a plain ``off`` is a boolean, ``0x1`` is the hexadecimal integer 1, ``010``
is octal 8, ``1_000`` is 1000 and ``1:30`` is 90, while ``1e6`` stays a string. A layer file that says
``padding: 0x1`` almost certainly means "0 by 1", so such integers are reported instead of silently accepted;
booleans and ``1e6`` strings are explained by the spec validators where a number or a word is expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from convcost.errors import FieldIssue, SpecError
from convcost.spec.bounds import MAX_NUMBER_TEXT
from convcost.spec.compare import issues_from_validation

Loc = tuple[str | int, ...]

# libyaml's parser is 20× faster than the pure-Python one and gives the same nodes and marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_PLAIN_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


@dataclass
class Document:
    """A loaded YAML file: its data and the line (1-based) where each value starts."""

    data: Any
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)
    # problems found while loading (duplicate keys, YAML 1.1 numbers), kept only by ``keep_issues=True``
    issues: list[FieldIssue] = field(default_factory=list)

    def line(self, loc: Loc) -> int | None:
        """The line of the value at ``loc``, or of its closest enclosing value."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def key_line(self, loc: Loc) -> int | None:
        """The line of the key at ``loc`` (for an unknown key), falling back to :meth:`line`."""
        return self.lines.get(("key", *loc)) or self.line(loc)

    def error(self, issues: Iterable[FieldIssue]) -> SpecError:
        """A SpecError naming this file, with a line for each issue."""
        placed = [
            FieldIssue(issue.loc, issue.message, issue.line or self.key_line(issue.loc) if issue.loc else issue.line)
            for issue in issues
        ]
        return SpecError(sorted(placed, key=lambda issue: issue.line or 0), source=self.source)


def load(path: Path | str, *, display: str | None = None, keep_issues: bool = False) -> Document:
    """Read and parse ``path`` with the safe loader; raises SpecError (with a line) for anything unreadable.

    Only a regular file under the input size limit is read (see convcost.spec.input_files): a FIFO, a device or a
    directory is refused before it is opened.
    """
    from convcost.spec.input_files import UnreadableFile, read_text

    source = display or str(path)
    try:  # read_text refuses (UsageError) a file this command is to write
        text = read_text(path)
    except UnreadableFile as error:
        message = str(error)
        if message.startswith("is a directory"):
            message = "is a directory, not a YAML file"
        raise SpecError([FieldIssue((), message)], source=source) from None
    return loads(text, source, keep_issues=keep_issues)


def loads(text: str, source: str = "<string>", *, keep_issues: bool = False) -> Document:
    """Parse YAML text; see :func:`load`.

    With ``keep_issues``, problems of single values (duplicate keys, YAML 1.1 numbers) are kept in
    ``document.issues`` instead of raised, so that a caller can report them together with its own.
    """
    events = _scan(text, source)
    document = Document(data=None, source=source)
    issues: list[FieldIssue] = []
    if events is not None:
        try:
            document.data = _EventBuilder(events, _Loader(""), document.lines, issues).value(()) if events else None
        except _NeedNodes:
            events = None
            document.lines.clear()
            issues.clear()
    if events is None:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as error:
            raise _yaml_error(error, source) from None
        finally:
            loader.dispose()
        if node is not None:
            try:
                document.data = _Builder(loader, document.lines, issues).value(node, ())
            except SpecError as error:
                raise SpecError(error.issues, source=source) from None
    if issues and not keep_issues:
        raise document.error(issues)
    document.issues = issues
    return document


def _yaml_error(error: yaml.YAMLError, source: str) -> SpecError:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = error.problem or error.context or "invalid YAML"
        return SpecError([FieldIssue((), f"invalid YAML: {problem}", line)], source=source)
    return SpecError([FieldIssue((), f"invalid YAML: {error}")], source=source)


# The most values (scalars, lists and mappings, keys not counted) one file may hold, written out or once aliases
# are expanded: about 33,000 batch entries of five keys. Aliases are expanded into copies, so ten lines of nested
# aliases can stand for billions of values ("billion laughs"); past the cap, loading stops instead of eating the
# memory. The written-out values are counted while libyaml streams the file, before anything is built from it.
MAX_VALUES = 200_000
# Lists and mappings nested deeper than this are refused (no convcost file nests beyond 5 levels); below
# libyaml's own limit of 1,000, deeper nesting would otherwise end in a RecursionError.
MAX_DEPTH = 50

_COLLECTION_START = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
_COLLECTION_END = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})
_NODE_EVENTS = _COLLECTION_START | _COLLECTION_END | {yaml.ScalarEvent}


def _scan(text: str, source: str) -> list[yaml.Event] | None:
    """Stream the file's events once: refuse too many values, too deep a nesting and an alias inside its own
    anchor (a recursive structure) before any node is composed, with the line where the limit is crossed.

    Returns the events of the file's one document when it has no anchor and no alias (then nothing needs
    composing: see _EventBuilder), else None.
    """
    loader = _Loader(text)
    events: list[yaml.Event] | None = []
    documents = 0
    get_event = loader.get_event  # None after the stream's end, with libyaml and without
    values = 0
    # per open collection: [its anchor, for a mapping whether the next child is a key (None for a sequence)]
    stack: list[list[Any]] = []
    open_anchors: dict[str, int] = {}
    try:
        while (event := get_event()) is not None:
            kind = type(event)
            if events is not None:
                if kind is yaml.AliasEvent or getattr(event, "anchor", None) is not None:
                    events = None
                elif kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        events = None
                elif kind in _NODE_EVENTS:
                    events.append(event)
            if kind in _COLLECTION_END:
                anchor = stack.pop()[0]
                if anchor is not None:
                    open_anchors[anchor] -= 1
            elif kind is yaml.ScalarEvent or kind is yaml.AliasEvent or kind in _COLLECTION_START:
                if not stack or stack[-1][1] is not True:  # a mapping's keys are not counted
                    values += 1
                    if values > MAX_VALUES:
                        raise SpecError(
                            [FieldIssue((), f"more than {MAX_VALUES:,} values (about {MAX_VALUES // 6:,} batch "
                                            "entries): convcost reads at most that many from one file",
                                        _event_line(event))], source=source
                        )  # fmt: skip
                if kind is yaml.AliasEvent:
                    if open_anchors.get(str(event.anchor), 0) > 0:
                        raise SpecError(
                            [FieldIssue((), f"the alias *{event.anchor} is inside its own anchor &{event.anchor}: "
                                            "a recursive structure cannot be read", _event_line(event))],
                            source=source,
                        )  # fmt: skip
                elif kind is not yaml.ScalarEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise SpecError(
                            [FieldIssue((), f"lists and mappings nested more than {MAX_DEPTH} levels deep",
                                        _event_line(event))], source=source,
                        )  # fmt: skip
                    anchor = event.anchor
                    if anchor is not None:
                        open_anchors[anchor] = open_anchors.get(anchor, 0) + 1
                    stack.append([anchor, True if kind is yaml.MappingStartEvent else None])
                    continue
            else:
                continue
            # a child of the innermost collection is complete: in a mapping, keys and values alternate
            if stack and (top := stack[-1])[1] is not None:
                top[1] = not top[1]
    except yaml.YAMLError as error:
        raise _yaml_error(error, source) from None
    finally:
        loader.dispose()
    return events


def _event_line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


_MERGE_TAG = "tag:yaml.org,2002:merge"
# the keys flatten_mapping rewrites: merge keys (<<) and value keys (=)
_FLATTENED = frozenset({_MERGE_TAG, "tag:yaml.org,2002:value"})
_STR_TAG = "tag:yaml.org,2002:str"


class _Builder:
    """Python values from composed nodes, with the line of each value, the YAML 1.1 traps and the alias cap."""

    def __init__(self, loader: Any, lines: dict[Loc, int], issues: list[FieldIssue]) -> None:
        self.loader = loader
        self.lines = lines
        self.issues = issues
        self.left = MAX_VALUES
        # (tag, text) → the value: the same text under the same tag constructs to the same immutable value
        self.scalars: dict[tuple[str, str], Any] = {}

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        self.left -= 1
        if self.left < 0:
            # the file as written was counted by _scan: only aliases can take it past the cap here
            raise SpecError(
                [FieldIssue((), f"more than {MAX_VALUES:,} values once aliases are expanded: refusing to load "
                                "(nested aliases can make a short file enormous)", node.start_mark.line + 1)]
            )  # fmt: skip
        if len(loc) > MAX_DEPTH:  # aliases inside aliases nest deeper than the file as written
            raise SpecError(
                [FieldIssue((), f"lists and mappings nested more than {MAX_DEPTH} levels deep once aliases are "
                                "expanded", node.start_mark.line + 1)]
            )  # fmt: skip
        self.lines[loc] = node.start_mark.line + 1
        if node.tag not in _PLAIN_TAGS and _foreign_tag(node, loc, self.issues):
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*loc, index)) for index, item in enumerate(node.value)]
        value = self.scalar(node)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and isinstance(node, yaml.ScalarNode)
            and not node.style  # None (pure-Python parser) or "" (libyaml) for a plain scalar
            and not _PLAIN_DECIMAL.match(node.value)
        ):
            self.issues.append(_yaml11_number(loc, node.value, value, node.start_mark.line + 1))
        return value

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        issues = self.issues
        explicit: set[int] | None = None  # the mapping's own keys, when it merges others
        if any(key_node.tag in _FLATTENED for key_node, _ in node.value):
            explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
            self.loader.flatten_mapping(node)  # merge keys (<<): merged pairs first, then the mapping's own
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merged: set[Any] = set()  # keys whose value came from a merge: the mapping's own key may override them
        for key_node, value_node in node.value:
            if key_node.tag not in _PLAIN_TAGS and _foreign_tag(key_node, loc, issues):
                continue
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int)) or key is None or _long_number(key_node):
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

    def scalar(self, node: yaml.Node) -> Any:
        return _scalar(node, self.loader, self.scalars)


class _NeedNodes(Exception):
    """The file needs composed nodes: a merge key, or a value its constructor refuses other than by ValueError."""


class _EventBuilder:
    """What _Builder builds, straight from the events of a file without anchors and aliases (most files): the
    same values, lines and issues in the same order, without composing nodes first."""

    def __init__(self, events: list[Any], loader: Any, lines: dict[Loc, int], issues: list[FieldIssue]) -> None:
        self.events = events
        self.at = 0  # the next event
        self.loader = loader
        self.lines = lines
        self.issues = issues
        self.scalars: dict[tuple[str, str], Any] = {}
        self.tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def value(self, loc: Loc) -> Any:
        event = self.events[self.at]
        self.at += 1
        kind = type(event)
        line = event.start_mark.line + 1
        self.lines[loc] = line
        tag = self.tag(event, kind)
        if tag not in _PLAIN_TAGS:
            self.issues.append(_foreign(tag, loc, line))
            self.skip(kind)
            return None
        if kind is yaml.MappingStartEvent:
            return self.mapping(loc)
        if kind is yaml.SequenceStartEvent:
            items: list[Any] = []
            while type(self.events[self.at]) is not yaml.SequenceEndEvent:
                items.append(self.value((*loc, len(items))))
            self.at += 1
            return items
        value = self.scalar(event, tag)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not event.style
            and not _PLAIN_DECIMAL.match(event.value)
        ):
            self.issues.append(_yaml11_number(loc, event.value, value, line))
        return value

    def mapping(self, loc: Loc) -> dict[Any, Any]:
        events, issues = self.events, self.issues
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        while type(key_event := events[self.at]) is not yaml.MappingEndEvent:
            self.at += 1
            kind = type(key_event)
            tag = self.tag(key_event, kind)
            if tag in _FLATTENED:
                raise _NeedNodes
            line = key_event.start_mark.line + 1
            if tag not in _PLAIN_TAGS:
                issues.append(_foreign(tag, loc, line))
                self.skip(kind)
                self.skip_value()
                continue
            key = None
            if kind is yaml.ScalarEvent:
                key = self.scalar(key_event, tag)
            else:
                self.skip(kind)
            if (
                not isinstance(key, (str, int))
                or key is None
                or (tag == _INT_TAG and len(key_event.value) > MAX_NUMBER_TEXT)
            ):
                issues.append(FieldIssue(loc, "mapping keys must be plain words", line))
                self.skip_value()
                continue
            if isinstance(key, bool):
                issues.append(_boolean_key(loc, key_event.value, line))
                self.skip_value()
                continue
            if key in result:
                issues.append(FieldIssue((*loc, key), f"duplicate key (first given on line {first_line[key]})", line))
                self.skip_value()
                continue
            first_line[key] = line
            self.lines[("key", *loc, key)] = line
            result[key] = self.value((*loc, key))
        self.at += 1
        return result

    def tag(self, event: Any, kind: type) -> str:
        """The event's tag, resolved as the composer resolves it."""
        tag: str | None = event.tag
        if tag is not None and tag != "!":
            return tag
        if kind is yaml.ScalarEvent:
            key = (event.value, event.implicit)
            resolved = self.tags.get(key)
            if resolved is None:  # the safe loader resolves by the text alone (it has no path resolvers)
                resolved = self.tags[key] = str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))
            return resolved
        node_class = yaml.MappingNode if kind is yaml.MappingStartEvent else yaml.SequenceNode
        return str(self.loader.resolve(node_class, None, event.implicit))

    def scalar(self, event: Any, tag: str) -> Any:
        if tag == _STR_TAG:
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return _scalar(node, self.loader, self.scalars)
        except Exception:  # e.g. !!bool maybe: where composed nodes meet it too, and it has always been raised
            raise _NeedNodes from None

    def skip(self, kind: type) -> None:
        """Past the rest of a value whose first event was of ``kind``."""
        depth = 1 if kind in _COLLECTION_START else 0
        while depth:
            kind = type(self.events[self.at])
            self.at += 1
            depth += 1 if kind in _COLLECTION_START else -1 if kind in _COLLECTION_END else 0

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
    except (ValueError, OverflowError):  # e.g. a timestamp 2001-13-45 (month 13): its text, for the validators
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


def _foreign_tag(node: yaml.Node, loc: Loc, issues: list[FieldIssue]) -> bool:
    if node.tag in _PLAIN_TAGS:
        return False
    issues.append(_foreign(node.tag, loc, node.start_mark.line + 1))
    return True


def _foreign(tag: str, loc: Loc, line: int) -> FieldIssue:
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    return FieldIssue(loc, f"YAML tag {shown} is not allowed here: write plain values", line)


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest known key to a misspelt one (``kernal`` → ``kernel``)."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def validate(model: type[BaseModel], data: Any, document: Document, prefix: Loc = ()) -> tuple[Any, list[FieldIssue]]:
    """Validate ``data`` (found at ``prefix`` in ``document``) into ``model``; issues carry lines and typo hints."""
    try:
        return model.model_validate(data, context={"yaml": True}), []
    except ValidationError as error:
        issues = []
        for issue in issues_from_validation(error, prefix):
            message = issue.message
            if message == "unknown key" and issue.loc and isinstance(issue.loc[-1], str):
                parent = _model_at(model, issue.loc[len(prefix) : -1])
                hint = suggest(issue.loc[-1], parent.model_fields) if parent else None
                if hint:
                    message = f"unknown key; did you mean '{hint}'?"
            issues.append(FieldIssue(issue.loc, message, document.key_line(issue.loc)))
        return None, issues


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` inside ``model`` (for typo suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The BaseModel inside Optional[...]/list[...]/Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None
