"""Batch files: many comparisons from one YAML file, validated up front, then evaluated one entry at a time.

The file (version 1)::

    version: 1
    defaults: {kernel: 3, padding: 1, bias: false}     # any compare option, applied to every entry
    layers:
      - {name: block1, cin: 32, cout: 64, size: 112}
      - {name: block2, cin: 64, cout: 128, stride: 2, pointwise: {padding: 1}}

Every key of an entry is a ``convcost compare`` option with the same name and meaning, plus ``name``. An entry's
own value wins over ``defaults``; a stage override (``pointwise: {...}``) is merged key by key, so defaults can set
``pointwise: {bias: false}`` and an entry add ``pointwise: {padding: 1}``.

Validation reports every problem in the file at once, each with its line. A problem of the file itself (its YAML,
``version``, ``defaults``, the ``layers`` list) stops everything: :func:`parse_batch` raises SpecError. A problem of
one entry (a bad value, a missing ``cin``, an impossible combination) marks that entry invalid; the others still
run. Nothing here prints or imports torch: the entries are evaluated by :mod:`convcost.run.batch`, into
:mod:`convcost.results.batch`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from convcost.errors import FieldIssue, SpecError, UsageError
from convcost.spec import bounds, kinds, yamlio
from convcost.spec.compare import STAGE_NAMES, CompareSpec

BATCH_VERSION = 1

# Shown by editors through `convcost schema`; a test checks that every compare option has one.
DESCRIPTIONS = {
    "name": "Name of this entry, shown in the report and matched by --select.",
    "cin": "Input channels C.",
    "cout": "Output channels K.",
    "kernel": "Kernel R×S: 3, '3x5' or [3, 5].",
    "stride": "Stride: 1, '2x1' or [2, 1].",
    "padding": "Padding: 0, '1x2', [1, 2] or 'same'.",
    "dilation": "Dilation: 1, '2x1' or [2, 1].",
    "groups": "Groups of the 'grouped' alternative.",
    "multiplier": "Depth multiplier m of depthwise stages (they output m·cin channels).",
    "bias": "Conv bias on every stage.",
    "mid": "spatial: channels between the R×1 and 1×S convs (default cin).",
    "norm": "After each conv: none or batch (BatchNorm2d).",
    "act": "After each conv (and norm): none, relu or relu6.",
    "size": "Input H=W, or HxW.",
    "batch": "Batch size.",
    "vs": "Alternatives compared with the dense conv: a list, or words separated by commas.",
    "dtype": "float32, bfloat16 or float16.",
    "device": "cpu or cuda.",
    **{stage: f"Settings of the {stage} stage that differ from the layer's." for stage in STAGE_NAMES},
}


def _name(value: Any) -> Any:
    # YAML turns `name: off` into False and `name: 12` into 12; neither is a name unless quoted.
    if isinstance(value, bool):
        raise ValueError(
            f"must be text, got boolean {str(value).lower()} (YAML reads yes/no/on/off as booleans): quote it"
        )
    if isinstance(value, (int, float)):
        raise ValueError(f"must be text, got the number {value}: quote it (name: '{value}')")
    return value


def _version(value: Any) -> Any:
    if isinstance(value, bool) or value != BATCH_VERSION:
        raise ValueError(f"this convcost reads version {BATCH_VERSION} files, got {bounds.shown(value)}")
    return value


def _optional_model(title: str, doc: str, exclude: set[str]) -> type[BaseModel]:
    """A model of CompareSpec's fields, each optional (it may come from defaults) and keeping its validators."""
    fields: dict[str, Any] = {}
    # the layer's own keys first, the per-stage overrides last, as an editor should offer them
    ordered = sorted(CompareSpec.model_fields.items(), key=lambda item: item[0] in STAGE_NAMES)
    for name, info in ordered:
        if name in exclude:
            continue
        annotation: Any = info.annotation
        annotation = annotation | None
        if name == "name":
            annotation = Annotated[str | None, BeforeValidator(_name)]
        elif info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        fields[name] = (annotation, Field(default=None, description=DESCRIPTIONS.get(name)))
    return create_model(title, __config__=_STRICT, __doc__=doc, **fields)


def _or_none(model: Any) -> Any:
    return model | None


_STRICT = ConfigDict(extra="forbid", frozen=True)

# Built from CompareSpec's own fields, so that a new compare option is a batch key without touching this file.
# Here every field is optional (it may come from defaults); the merged entry is then validated as a CompareSpec.
# BatchDefaults is "LayerDefaults" in the JSON Schema, as editors and configs/batch.schema.json know it.
BatchDefaults = _optional_model(
    "LayerDefaults", "Compare options applied to every entry; an entry's own value wins.", {"name"}
)
LayerEntry = _optional_model(
    "LayerEntry", "One comparison: the options of `convcost compare` (cin, cout and kernel here or in defaults).", set()
)
BatchFile: type[BaseModel] = create_model(
    "BatchFile",
    __config__=ConfigDict(extra="forbid", frozen=True, title="convcost batch file"),
    __doc__="Layer configs for `convcost batch`: one entry per comparison.",
    version=(
        Annotated[Literal[1], BeforeValidator(_version)],
        Field(default=BATCH_VERSION, description="Version of this file's format."),
    ),
    defaults=(_or_none(BatchDefaults), Field(default=None, description=BatchDefaults.__doc__)),
    layers=(list[LayerEntry], Field(min_length=1, description="The comparisons, evaluated in order.")),  # type: ignore[valid-type]
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a batch file, for editors (``# yaml-language-server: $schema=...``)."""
    schema = _tidy(BatchFile.model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _tidy(node: Any) -> Any:
    """Drop what only clutters an editor's view: ``null`` branches of optional keys and generated titles."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _tidy(value) for key, value in node.items()}
    options = result.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del result["anyOf"]
        if len(rest) == 1:
            result = {**rest[0], **result}
        else:
            result["anyOf"] = rest
    if "default" in result and result["default"] is None:
        del result["default"]  # "not given" is not a value a file could write
    if isinstance(result.get("properties"), dict):
        for value in result["properties"].values():
            value.pop("title", None)
    return result


@dataclass
class BatchEntry:
    """One entry of a batch file: its spec when valid, else what is wrong with it (with lines)."""

    index: int
    name: str  # as given, or layers[i]
    line: int | None
    spec: CompareSpec | None
    issues: list[FieldIssue] = field(default_factory=list)


@dataclass
class Batch:
    """A parsed batch file: entries with defaults merged in, each valid or carrying its issues."""

    source: str
    version: int
    entries: list[BatchEntry]

    @property
    def issues(self) -> list[FieldIssue]:
        return [issue for entry in self.entries for issue in entry.issues]

    def select(self, pattern: str) -> Batch:
        """The entries whose name matches a shell-style glob (``block*``); raises UsageError if none does."""
        chosen = [entry for entry in self.entries if fnmatch.fnmatchcase(entry.name, pattern)]
        if not chosen:
            names = ", ".join(entry.name for entry in self.entries)
            raise UsageError(f"--select: no entry of {self.source} matches {pattern!r} (entries: {names})")
        return Batch(self.source, self.version, chosen)


def load_batch(path: Path | str, *, display: str | None = None) -> Batch:
    """Read, validate and merge a batch file; raises SpecError when the file as a whole is unusable."""
    return parse_batch(yamlio.load(path, display=display, keep_issues=True, lines=True))


def loads_batch(text: str, source: str = "<string>") -> Batch:
    """:func:`load_batch` for YAML text."""
    return parse_batch(yamlio.loads(text, source, keep_issues=True, lines=True))


def parse_batch(document: yamlio.Document) -> Batch:
    """Validate a loaded batch file; file-level problems raise SpecError listing every problem in the file."""
    data = document.data
    if not isinstance(data, dict):
        got = "an empty file" if data is None else _kind_of(data)
        raise document.error([FieldIssue((), f"expected a mapping with a 'layers' list, got {got}")])
    layers = data.get("layers")
    if "input" in data or (
        isinstance(layers, list) and any(isinstance(item, dict) and "kind" in item for item in layers)
    ):
        # a model file has `input:` and layers with `kind:`; one line beats a screenful of unknown keys
        raise document.error([FieldIssue((), "this is a model file (it has input/kind keys): use convcost model")])
    _, found = yamlio.validate(BatchFile, data, document)
    found = [_plain_words(issue, data) for issue in found]
    issues = [*document.issues, *(issue for issue in found if issue not in document.issues)]
    if any(_entry_of(issue) is None for issue in issues):
        raise document.error(issues)
    defaults = data.get("defaults") or {}
    entries: list[BatchEntry] = []
    named: dict[str, BatchEntry] = {}
    for index, raw in enumerate(data["layers"]):
        loc: yamlio.Loc = ("layers", index)
        given = raw.get("name") if isinstance(raw, dict) else None
        name = given if isinstance(given, str) else f"layers[{index}]"
        entry = BatchEntry(index, name, document.line(loc), None)
        entry.issues = [issue for issue in issues if _entry_of(issue) == index]
        if not entry.issues:
            entry.spec, entry.issues = _entry_spec(_merge(defaults, raw), document, loc, defaults)
        # names key the results (a check's per-entry figures, --select): a given name equal to another entry's
        # automatic one (layers[1]) would make one of them vanish, so every name, given or not, is unique
        if name in named:
            entry.issues.append(_duplicate_name(name, entry, named[name], isinstance(given, str), document))
        named.setdefault(name, entry)
        if entry.issues:
            entry.spec = None
            entry.issues.sort(key=lambda issue: issue.line or 0)
        entries.append(entry)
    return Batch(document.source, int(data.get("version", BATCH_VERSION)), entries)


def _duplicate_name(
    name: str, entry: BatchEntry, first: BatchEntry, given: bool, document: yamlio.Document
) -> FieldIssue:
    """The issue of an entry whose name another entry already has, naming both entries' lines."""
    loc: yamlio.Loc = ("layers", entry.index)
    first_given = document.key_lines.get(("layers", first.index, "name")) is not None
    first_line = document.key_line(("layers", first.index, "name")) if first_given else first.line
    whose = "the name" if first_given else "the automatic name"
    message = (
        f"duplicate name {name!r}: it is also {whose} of layers[{first.index}] ({document.source}:{first_line}); "
        "names must be unique"
    )
    if given:
        return FieldIssue((*loc, "name"), message, document.key_line((*loc, "name")))
    return FieldIssue(loc, f"{message} (this entry has no name: give it one)", entry.line)


def _plain_words(issue: FieldIssue, data: Any) -> FieldIssue:
    """Pydantic's words for a wrong kind of YAML value, in the file's terms."""
    value: Any = data
    for part in issue.loc:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            value = None
    if issue.message.startswith("Input should be a valid dictionary"):
        return FieldIssue(issue.loc, f"must be a mapping of keys and values, got {_kind_of(value)}", issue.line)
    if issue.message.startswith("Input should be a valid list"):
        return FieldIssue(issue.loc, f"must be a list (lines starting with '- '), got {_kind_of(value)}", issue.line)
    if issue.loc == ("layers",) and issue.message.startswith("List should have at least 1 item"):
        return FieldIssue(issue.loc, "must list at least one entry", issue.line)
    return issue


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"text {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _entry_of(issue: FieldIssue) -> int | None:
    """The index of the entry an issue belongs to, or None for a problem of the file itself."""
    loc = issue.loc
    return loc[1] if len(loc) >= 2 and loc[0] == "layers" and isinstance(loc[1], int) else None


def _merge(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in entry.items():
        if key in STAGE_NAMES and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _entry_spec(
    data: dict[str, Any], document: yamlio.Document, loc: yamlio.Loc, defaults: dict[str, Any]
) -> tuple[CompareSpec | None, list[FieldIssue]]:
    """The entry's CompareSpec, or the issues that prevent it (missing keys, impossible combinations)."""
    spec, issues = yamlio.validate(CompareSpec, data, document, loc)
    if issues:
        required = "required (in this entry or in defaults)"
        return None, [replace(issue, message=required) if issue.message == "required" else issue for issue in issues]
    assert isinstance(spec, CompareSpec)
    try:
        kinds.plan(spec)
    except SpecError as error:
        return None, [_place(issue, document, loc, defaults) for issue in error.issues]
    return spec, []


def _place(issue: FieldIssue, document: yamlio.Document, loc: yamlio.Loc, defaults: dict[str, Any]) -> FieldIssue:
    """An issue about an entry's field, on the line that sets it (the defaults line when it comes from there)."""
    full = (*loc, *issue.loc)
    line = document.key_lines.get(full)
    if line is not None or not issue.loc:
        return FieldIssue(full, issue.message, line or document.line(loc))
    head = issue.loc[0]
    if head in defaults:
        line = document.key_lines.get(("defaults", *issue.loc)) or document.key_lines.get(("defaults", head))
        return FieldIssue(full, f"{issue.message} ({head} set in defaults)", line)
    return FieldIssue(full, issue.message, document.line(loc))
