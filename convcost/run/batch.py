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
run. Nothing here prints, and torch is imported only when entries are evaluated.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from convcost.errors import ConvcostError, FieldIssue, SpecError, UsageError
from convcost.results.comparison import Comparison
from convcost.spec import bounds, kinds, yamlio
from convcost.spec.compare import STAGE_NAMES, CompareSpec

if TYPE_CHECKING:
    from convcost.cost.roofline import Calibration
    from convcost.run.latency import LatencySettings

BATCH_VERSION = 1
# 2: rows gained speedup_low, speedup_high, speedup_typical, converged, busy; latency figures are best figures
RESULT_SCHEMA_VERSION = 2

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


def _optional_fields(exclude: set[str]) -> dict[str, Any]:
    """CompareSpec's fields, each optional (it may come from defaults) and keeping its validators."""
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
    return fields


def _or_none(model: Any) -> Any:
    return model | None


_STRICT = ConfigDict(extra="forbid", frozen=True)

# Built from CompareSpec's own fields, so that a new compare option is a batch key without touching this file.
# Here every field is optional (it may come from defaults); the merged entry is then validated as a CompareSpec.
LayerDefaults: type[BaseModel] = create_model(
    "LayerDefaults",
    __config__=_STRICT,
    __doc__="Compare options applied to every entry; an entry's own value wins.",
    **_optional_fields(exclude={"name"}),
)
LayerEntry: type[BaseModel] = create_model(
    "LayerEntry",
    __config__=_STRICT,
    __doc__="One comparison: the options of `convcost compare` (cin, cout and kernel here or in defaults).",
    **_optional_fields(exclude=set()),
)
BatchFile: type[BaseModel] = create_model(
    "BatchFile",
    __config__=ConfigDict(extra="forbid", frozen=True, title="convcost batch file"),
    __doc__="Layer configs for `convcost batch`: one entry per comparison.",
    version=(
        Annotated[Literal[1], BeforeValidator(_version)],
        Field(default=BATCH_VERSION, description="Version of this file's format."),
    ),
    defaults=(_or_none(LayerDefaults), Field(default=None, description=LayerDefaults.__doc__)),
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
    return parse_batch(yamlio.load(path, display=display, keep_issues=True))


def loads_batch(text: str, source: str = "<string>") -> Batch:
    """:func:`load_batch` for YAML text."""
    return parse_batch(yamlio.loads(text, source, keep_issues=True))


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
    first_given = document.lines.get(("key", "layers", first.index, "name")) is not None
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
    if len(loc) >= 2 and loc[0] == "layers" and isinstance(loc[1], int):
        return loc[1]
    return None


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
        return None, [
            FieldIssue(issue.loc, "required (in this entry or in defaults)", issue.line)
            if issue.message == "required"
            else issue
            for issue in issues
        ]
    assert isinstance(spec, CompareSpec)
    try:
        kinds.plan(spec)
    except SpecError as error:
        return None, [_place(issue, document, loc, defaults) for issue in error.issues]
    return spec, []


def _place(issue: FieldIssue, document: yamlio.Document, loc: yamlio.Loc, defaults: dict[str, Any]) -> FieldIssue:
    """An issue about an entry's field, on the line that sets it (the defaults line when it comes from there)."""
    full = (*loc, *issue.loc)
    line = document.lines.get(("key", *full))
    if line is not None or not issue.loc:
        return FieldIssue(full, issue.message, line or document.line(loc))
    head = issue.loc[0]
    if head in defaults:
        defaults_line = document.lines.get(("key", "defaults", *issue.loc)) or document.lines.get(
            ("key", "defaults", head)
        )
        return FieldIssue(full, f"{issue.message} ({head} set in defaults)", defaults_line)
    return FieldIssue(full, issue.message, document.line(loc))


class Status(str, Enum):
    """What became of one entry."""

    OK = "ok"
    FAILED = "failed"  # measured, but a shape mismatch or a counter disagreement
    INVALID = "invalid"  # not run: the entry is wrong
    ERROR = "error"  # the measurement itself failed
    NOT_RUN = "not run"  # interrupted before its turn

    def __str__(self) -> str:
        return self.value


@dataclass
class EntryResult:
    """One entry's outcome: its comparison, or why there is none."""

    index: int
    name: str
    line: int | None
    status: Status
    comparison: Comparison | None = None
    issues: list[FieldIssue] = field(default_factory=list)  # INVALID: what is wrong, with lines
    error: str | None = None  # ERROR: what went wrong
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def problems(self, source: str) -> list[str]:
        """One line per problem: ``file:line: field: message`` or ``file:line: name: what failed``."""
        if self.status is Status.INVALID:
            return SpecError(self.issues, source).lines()
        where = f"{source}:{self.line}" if self.line else source
        if self.status is Status.ERROR:
            return [f"{where}: {self.name}: {self.error}"]
        if self.comparison is not None:
            return [f"{where}: {self.name}: {failure}" for failure in self.comparison.failures]
        return []

    def rows(self) -> list[dict[str, Any]]:
        """Summary rows: one per alternative (or one empty row when there is no comparison)."""
        base: dict[str, Any] = {"index": self.index, "name": self.name, "line": self.line,
                                "status": str(self.status)}  # fmt: skip
        if self.comparison is None:
            return [base]
        comparison, dense = self.comparison, self.comparison.dense
        rows = []
        for layer, ratio in zip(comparison.alternatives, comparison.ratios, strict=True):
            rows.append({
                **base,
                "vs": layer.kind,
                "input_shape": list(dense.input_shape),
                "dense_output_shape": list(dense.output_shape),
                "output_shape": list(layer.output_shape),
                "shapes_match": ratio.shape_match,
                "checks_ok": dense.ok and layer.ok,
                "dense_params": dense.params,
                "params": layer.params,
                "dense_macs": dense.macs,
                "macs": layer.macs,
                "dense_other_ops": dense.other_ops,
                "other_ops": layer.other_ops,
                "ratio_params": ratio.params,
                "ratio_macs": ratio.macs,
                "dense_latency_ms": dense.latency.shown_ms if dense.latency else None,
                "latency_ms": layer.latency.shown_ms if layer.latency else None,
                "speedup": ratio.latency,
                "speedup_low": ratio.latency_interval[0] if ratio.latency_interval else None,
                "speedup_high": ratio.latency_interval[1] if ratio.latency_interval else None,
                "speedup_typical": ratio.latency_typical,
                "converged": ratio.latency_converged,
                "busy": None if comparison.environment.contention is None else comparison.environment.contention.busy,
            })  # fmt: skip
        return rows

    def to_dict(self, source: str, detail: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "line": self.line,
            "status": str(self.status),
            "spec": None if self.comparison is None else self.comparison.spec,
            "rows": [row for row in self.rows() if "vs" in row],
            "problems": self.problems(source),
        }
        if detail:
            data["comparison"] = None if self.comparison is None else self.comparison.to_dict()
        return data


@dataclass(frozen=True)
class Totals:
    """Sums over the entries that passed, for one alternative kind."""

    vs: str
    entries: int
    dense_params: int
    params: int
    dense_macs: int
    macs: int
    dense_other_ops: int
    other_ops: int
    dense_latency_ms: float | None  # None unless every entry has latency
    latency_ms: float | None

    @property
    def ratio_params(self) -> float:
        return self.dense_params / self.params if self.params else float("inf")

    @property
    def ratio_macs(self) -> float:
        return self.dense_macs / self.macs if self.macs else float("inf")

    @property
    def speedup(self) -> float | None:
        if self.dense_latency_ms is None or not self.latency_ms:
            return None
        return self.dense_latency_ms / self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "vs": self.vs, "entries": self.entries, "dense_params": self.dense_params, "params": self.params,
            "dense_macs": self.dense_macs, "macs": self.macs, "dense_other_ops": self.dense_other_ops,
            "other_ops": self.other_ops, "ratio_params": self.ratio_params, "ratio_macs": self.ratio_macs,
            "dense_latency_ms": self.dense_latency_ms, "latency_ms": self.latency_ms, "speedup": self.speedup,
        }  # fmt: skip


@dataclass
class BatchResult:
    """Every entry's outcome, in file order; ``interrupted`` when Ctrl-C stopped the run part-way."""

    source: str
    version: int
    entries: list[EntryResult]
    interrupted: bool = False

    def count(self, status: Status | str) -> int:
        wanted = Status(status)
        return sum(entry.status is wanted for entry in self.entries)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(entry.status is Status.OK for entry in self.entries)

    @property
    def problems(self) -> list[str]:
        return [line for entry in self.entries for line in entry.problems(self.source)]

    @property
    def totals(self) -> list[Totals]:
        """Per alternative kind, sums over the entries with status ok (a failed entry is not a replacement)."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries:
            if entry.status is Status.OK:
                for row in entry.rows():
                    rows.setdefault(row["vs"], []).append(row)
        totals = []
        for vs, items in rows.items():
            timed = all(item["latency_ms"] is not None for item in items)
            totals.append(
                Totals(
                    vs=vs,
                    entries=len(items),
                    **{key: sum(item[key] for item in items) for key in
                       ("dense_params", "params", "dense_macs", "macs", "dense_other_ops", "other_ops")},
                    dense_latency_ms=sum(item["dense_latency_ms"] for item in items) if timed else None,
                    latency_ms=sum(item["latency_ms"] for item in items) if timed else None,
                )
            )  # fmt: skip
        return totals

    def summary(self) -> str:
        """``4 entries: 3 ok, 1 failed`` (statuses with no entry left out)."""
        counts = [f"{self.count(status)} {status}" for status in Status if self.count(status)]
        total = len(self.entries)
        text = f"{total} entr{'y' if total == 1 else 'ies'}: {', '.join(counts)}"
        return text + (" (interrupted)" if self.interrupted else "")

    def to_dict(self, detail: bool = False) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "source": self.source,
            "version": self.version,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "counts": {str(status): self.count(status) for status in Status},
            "totals": [totals.to_dict() for totals in self.totals],
            "entries": [entry.to_dict(self.source, detail) for entry in self.entries],
            "problems": self.problems,
        }


def run(
    batch: Batch,
    latency_settings: LatencySettings | None = None,
    *,
    measure: bool = True,
    calibration: Callable[[CompareSpec], Calibration | None] | None = None,
) -> Iterator[EntryResult]:
    """Evaluate the entries in order, yielding each outcome as soon as it is known.

    ``measure=False`` evaluates by formula alone (no forward pass, no counters, no latency). ``calibration``
    gives the machine's peaks for an entry's device and dtype, for its roofline verdicts.
    A failing entry never stops the others; KeyboardInterrupt does propagate, and whatever was yielded before it
    can still be reported with :func:`collect`.
    """
    from convcost.run.estimate import estimate

    for entry in batch.entries:
        if entry.spec is None:
            yield EntryResult(entry.index, entry.name, entry.line, Status.INVALID, issues=entry.issues)
            continue
        index, name, line = entry.index, entry.name, entry.line
        try:
            if measure:
                from convcost.run.comparison import compare  # torch: only when something is measured

                peaks = calibration(entry.spec) if calibration is not None else None
                comparison = compare(entry.spec, latency_settings, peaks)
            else:
                comparison = estimate(entry.spec)
        except SpecError as error:
            issues = [FieldIssue(("layers", index, *issue.loc), issue.message, line) for issue in error.issues]
            yield EntryResult(index, name, line, Status.INVALID, issues=issues)
        except UsageError as error:
            issue = FieldIssue(("layers", index), str(error), line)
            yield EntryResult(index, name, line, Status.INVALID, issues=[issue])
        except ConvcostError as error:
            yield EntryResult(index, name, line, Status.ERROR, error=str(error))
        except Exception as error:  # one entry's crash must not lose the others
            message = f"internal error: {type(error).__name__}: {error}"
            yield EntryResult(index, name, line, Status.ERROR, error=message, exception=error)
        else:
            status = Status.OK if comparison.ok else Status.FAILED
            yield EntryResult(index, name, line, status, comparison=comparison)


def collect(batch: Batch, done: Iterable[EntryResult], interrupted: bool = False) -> BatchResult:
    """A BatchResult from the outcomes so far; entries without one are marked 'not run'."""
    finished = {result.index: result for result in done}
    entries = [
        finished.get(entry.index) or EntryResult(entry.index, entry.name, entry.line, Status.NOT_RUN)
        for entry in batch.entries
    ]
    return BatchResult(batch.source, batch.version, entries, interrupted)


def evaluate(batch: Batch, latency_settings: LatencySettings | None = None, *, measure: bool = True) -> BatchResult:
    """Evaluate every entry (no latency when ``latency_settings`` is None; formula only when not ``measure``)."""
    return collect(batch, run(batch, latency_settings, measure=measure))
