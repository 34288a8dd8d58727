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
    _scan(text, source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as error:
        raise _yaml_error(error, source) from None
    finally:
        loader.dispose()
    document = Document(data=None, source=source)
    issues: list[FieldIssue] = []
    if node is not None:
        try:
            document.data = _construct(node, (), loader, document.lines, issues, [MAX_VALUES])
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

_COLLECTION_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_COLLECTION_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _scan(text: str, source: str) -> None:
    """Stream the file's events once: refuse too many values, too deep a nesting and an alias inside its own
    anchor (a recursive structure) before any node is composed, with the line where the limit is crossed."""
    loader = _Loader(text)
    values = 0
    # per open collection: its anchor and, for a mapping, whether the next child is a key
    stack: list[tuple[str | None, bool | None]] = []
    open_anchors: dict[str, int] = {}
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, _COLLECTION_END):
                anchor, _ = stack.pop()
                if anchor is not None:
                    open_anchors[anchor] -= 1
                _after_child(stack)
                continue
            if not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, *_COLLECTION_START)):
                continue
            line = event.start_mark.line + 1 if event.start_mark else None
            is_key = bool(stack) and stack[-1][1] is True
            if not is_key:
                values += 1
                if values > MAX_VALUES:
                    raise SpecError(
                        [FieldIssue((), f"more than {MAX_VALUES:,} values (about {MAX_VALUES // 6:,} batch entries): "
                                        "convcost reads at most that many from one file", line)], source=source
                    )  # fmt: skip
            if isinstance(event, yaml.AliasEvent):
                if open_anchors.get(str(event.anchor), 0) > 0:
                    raise SpecError(
                        [FieldIssue((), f"the alias *{event.anchor} is inside its own anchor &{event.anchor}: a "
                                        "recursive structure cannot be read", line)], source=source
                    )  # fmt: skip
                _after_child(stack)
            elif isinstance(event, yaml.ScalarEvent):
                _after_child(stack)
            else:
                if len(stack) >= MAX_DEPTH:
                    raise SpecError(
                        [FieldIssue((), f"lists and mappings nested more than {MAX_DEPTH} levels deep", line)],
                        source=source,
                    )
                anchor = event.anchor
                if anchor is not None:
                    open_anchors[anchor] = open_anchors.get(anchor, 0) + 1
                stack.append((anchor, True if isinstance(event, yaml.MappingStartEvent) else None))
    except yaml.YAMLError as error:
        raise _yaml_error(error, source) from None
    finally:
        loader.dispose()


def _after_child(stack: list[tuple[str | None, bool | None]]) -> None:
    """A child of the innermost collection is complete: in a mapping, keys and values alternate."""
    if stack and stack[-1][1] is not None:
        anchor, is_key = stack[-1]
        stack[-1] = (anchor, not is_key)


def _construct(
    node: yaml.Node, loc: Loc, loader: Any, lines: dict[Loc, int], issues: list[FieldIssue], budget: list[int]
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
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
    lines[loc] = node.start_mark.line + 1
    if _foreign_tag(node, loc, issues):
        return None
    if isinstance(node, yaml.MappingNode):
        explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
        loader.flatten_mapping(node)  # merge keys (<<): merged pairs first, then the mapping's own
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merged: set[Any] = set()  # keys whose value came from a merge: the mapping's own key may override them
        for key_node, value_node in node.value:
            if _foreign_tag(key_node, loc, issues):
                continue
            key = _scalar(key_node, loader) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int)) or key is None or _long_number(key_node):
                issues.append(FieldIssue(loc, "mapping keys must be plain words", key_node.start_mark.line + 1))
                continue
            if isinstance(key, bool):
                # `on:`/`off:`/`yes:` as keys: YAML 1.1 turns them into booleans
                issues.append(
                    FieldIssue(loc, f"key {key_node.value!r} reads as a boolean in YAML 1.1: quote it",
                               key_node.start_mark.line + 1)
                )  # fmt: skip
                continue
            key_line = key_node.start_mark.line + 1
            if key in result and key not in merged:
                issues.append(
                    FieldIssue((*loc, key), f"duplicate key (first given on line {first_line[key]})", key_line)
                )
                continue
            merged.discard(key)
            if id(key_node) not in explicit:
                merged.add(key)
            first_line[key] = key_line
            lines[("key", *loc, key)] = key_line
            result[key] = _construct(value_node, (*loc, key), loader, lines, issues, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, index), loader, lines, issues, budget) for index, item in enumerate(node.value)]
    value = _scalar(node, loader)
    if (
        isinstance(node, yaml.ScalarNode)
        and not node.style  # None (pure-Python parser) or "" (libyaml) for a plain scalar
        and isinstance(value, int)
        and not isinstance(value, bool)
        and not _PLAIN_DECIMAL.match(node.value)
    ):
        issues.append(
            FieldIssue(
                loc,
                f"YAML 1.1 reads {node.value} as the number {value}: write it as a decimal number, "
                f'or quote it if you mean something else ("{node.value}")',
                node.start_mark.line + 1,
            )
        )
    return value


_INT_TAG = "tag:yaml.org,2002:int"


def _long_number(node: yaml.Node) -> bool:
    """An integer too long to convert safely (int() of 5,000 digits raises): kept as its text, which the
    validators then refuse with the field's range (see convcost.spec.bounds)."""
    return node.tag == _INT_TAG and len(str(node.value)) > MAX_NUMBER_TEXT


def _scalar(node: yaml.Node, loader: Any) -> Any:
    if _long_number(node):
        return str(node.value)
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError):  # e.g. a timestamp 2001-13-45 (month 13): its text, for the validators
        return str(node.value)


# What the safe loader resolves plain YAML to; anything else (!!python/..., !!set, custom tags) is refused with a
# line rather than silently read as a list or a mapping, or crashing the constructor.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
}


def _foreign_tag(node: yaml.Node, loc: Loc, issues: list[FieldIssue]) -> bool:
    if node.tag in _PLAIN_TAGS:
        return False
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    issues.append(FieldIssue(loc, f"YAML tag {tag} is not allowed here: write plain values", node.start_mark.line + 1))
    return True


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
