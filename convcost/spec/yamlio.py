"""Loading YAML safely, with the line of every value, duplicate keys rejected and YAML 1.1 traps named.

PyYAML implements YAML 1.1, where a plain ``off`` is a boolean, ``0x1`` is the hexadecimal integer 1, ``010``
is octal 8, ``1_000`` is 1000 and ``1:30`` is 90, while ``1e6`` stays a string. A layer file that says
``padding: 0x1`` almost certainly means "0 by 1", so such integers are reported instead of silently accepted;
booleans and ``1e6`` strings are explained by the spec validators where a number or a word is expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from convcost.errors import FieldIssue, SpecError
from convcost.errors import Loc as Loc  # the place in a file of a value: ('layers', 0, 'cout')
from convcost.spec.compare import issues_from_validation
from convcost.spec.yamlvalues import NodeBuilder, PlainBuilder, Unusual

# libyaml's parser is 20× faster than the pure-Python one and gives the same nodes and marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A loaded YAML file: its data and the line (1-based) where each value starts."""

    data: Any
    source: str
    # problems found while loading (duplicate keys, YAML 1.1 numbers), kept only by ``keep_issues=True``
    issues: list[FieldIssue] = field(default_factory=list)
    text: str = ""  # a plain file's, for its lines: read again when first asked for
    known: tuple[dict[Loc, int], dict[Loc, int]] | None = None  # the lines of values and of keys, once read

    @property
    def lines(self) -> dict[Loc, int]:
        """The line of each value, by its place."""
        return self._known()[0]

    @property
    def key_lines(self) -> dict[Loc, int]:
        """The line of each mapping key, by the place of its value."""
        return self._known()[1]

    def _known(self) -> tuple[dict[Loc, int], dict[Loc, int]]:
        if self.known is None:
            self.known = _full(self.text, self.source, []).known
        assert self.known is not None
        return self.known

    def line(self, loc: Loc) -> int | None:
        """The line of the value at ``loc``, or of its closest enclosing value."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def key_line(self, loc: Loc) -> int | None:
        """The line of the key at ``loc`` (for an unknown key), falling back to :meth:`line`."""
        return self.key_lines.get(loc) or self.line(loc)

    def error(self, issues: Iterable[FieldIssue]) -> SpecError:
        """A SpecError naming this file, with a line for each issue."""
        placed = [
            FieldIssue(issue.loc, issue.message, issue.line or self.key_line(issue.loc) if issue.loc else issue.line)
            for issue in issues
        ]
        return SpecError(sorted(placed, key=lambda issue: issue.line or 0), source=self.source)


def load(path: Path | str, *, display: str | None = None, keep_issues: bool = False, lines: bool = False) -> Document:
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
    return loads(text, source, keep_issues=keep_issues, lines=lines)


def loads(text: str, source: str = "<string>", *, keep_issues: bool = False, lines: bool = False) -> Document:
    """Parse YAML text; see :func:`load`.

    With ``keep_issues``, problems of single values (duplicate keys, YAML 1.1 numbers) are kept in
    ``document.issues`` instead of raised, so that a caller can report them together with its own. ``lines``: the
    caller reads the lines of a valid file too (else they are read again from the text when first asked for).
    """
    if not lines:  # a plain file (most files) is read straight from its events, without lines
        try:
            return Document(PlainBuilder(text, _Loader, MAX_VALUES, MAX_DEPTH).read(), source, text=text)
        except Unusual:
            pass
    issues: list[FieldIssue] = []
    document = _full(text, source, issues)
    if issues and not keep_issues:
        raise document.error(issues)
    document.issues = issues
    return document


def _full(text: str, source: str, issues: list[FieldIssue]) -> Document:
    """The file read from composed nodes under the caps, with the line of every value and its issues."""
    _scan(text, source)
    document = Document(None, source, known=({}, {}))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as error:
        raise _yaml_error(error, source, text) from None
    finally:
        loader.dispose()
    if node is not None:
        try:
            builder = NodeBuilder(loader, document.lines, document.key_lines, issues, MAX_VALUES, MAX_DEPTH)
            document.data = builder.value(node, ())
        except SpecError as error:
            raise SpecError(error.issues, source=source) from None
    return document


def _yaml_error(error: yaml.YAMLError, source: str, text: str) -> SpecError:
    line: int | None = None
    problem = str(error)
    if isinstance(error, yaml.reader.ReaderError) and isinstance(error.character, int):  # its line, not "position"
        line = text.count("\n", 0, error.position) + 1
        problem = f"unacceptable character #x{error.character:04x}: {error.reason}"
    elif isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = error.problem or error.context or "invalid YAML"
    return SpecError([FieldIssue((), f"invalid YAML: {problem}", line)], source=source)


# The most values (scalars, lists and mappings, keys not counted) one file may hold, written out or once aliases
# are expanded: about 33,000 batch entries of five keys. Aliases are expanded into copies, so ten lines of nested
# aliases can stand for billions of values ("billion laughs"); past the cap, loading stops instead of eating the
# memory. The written-out values are counted while libyaml streams the file, before anything is built from it.
MAX_VALUES = 200_000
# Lists and mappings nested deeper than this are refused (no convcost file nests beyond 5 levels); below
# libyaml's own limit of 1,000, deeper nesting would otherwise end in a RecursionError.
MAX_DEPTH = 50

COLLECTION_START = frozenset({yaml.MappingStartEvent, yaml.SequenceStartEvent})
COLLECTION_END = frozenset({yaml.MappingEndEvent, yaml.SequenceEndEvent})


def _scan(text: str, source: str) -> None:
    """Stream the file's events once: refuse too many values, too deep a nesting and an alias inside its own
    anchor (a recursive structure) before any node is composed, with the line where the limit is crossed."""
    loader = _Loader(text)
    get_event = loader.get_event  # None after the stream's end, with libyaml and without
    values = 0
    # per open collection: [its anchor, for a mapping whether the next child is a key (None for a sequence)]
    stack: list[list[Any]] = []
    open_anchors: dict[str, int] = {}
    try:
        while (event := get_event()) is not None:
            kind = type(event)
            if kind in COLLECTION_END:
                anchor = stack.pop()[0]
                if anchor is not None:
                    open_anchors[anchor] -= 1
            elif kind is yaml.ScalarEvent or kind is yaml.AliasEvent or kind in COLLECTION_START:
                if not stack or stack[-1][1] is not True:  # a mapping's keys are not counted
                    values += 1
                    if values > MAX_VALUES:
                        raise _refused(f"more than {MAX_VALUES:,} values (about {MAX_VALUES // 6:,} batch entries): "
                                       "convcost reads at most that many from one file", event, source)  # fmt: skip
                if kind is yaml.AliasEvent:
                    if open_anchors.get(str(event.anchor), 0) > 0:
                        raise _refused(f"the alias *{event.anchor} is inside its own anchor &{event.anchor}: "
                                       "a recursive structure cannot be read", event, source)  # fmt: skip
                elif kind is not yaml.ScalarEvent:
                    if len(stack) >= MAX_DEPTH:
                        raise _refused(f"lists and mappings nested more than {MAX_DEPTH} levels deep", event, source)
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
        raise _yaml_error(error, source, text) from None
    finally:
        loader.dispose()


def _refused(message: str, event: yaml.Event, source: str) -> SpecError:
    """A file refused at ``event`` (a limit crossed there), with its line."""
    return SpecError([FieldIssue((), message, event.start_mark.line + 1 if event.start_mark else None)], source=source)


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
