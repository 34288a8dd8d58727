"""Budget files and baselines, read and validated: the input of ``convcost check``. No torch, no printing.

A budget file lists checks; each names a model (a model file or ``package.module:factory`` with ``input``) or a
batch file, and its limits::

    tolerance: {params: 0%, macs: 0%, latency_ms: 10%}   # growth allowed over the baseline
    baseline: budgets.baseline.json                      # optional; --baseline overrides it
    checks:
      - name: mobilenet_v1
        model: mobilenet_v1.yaml                         # relative to this file
        params: {max: 4.3M}                              # level: error unless told
        macs: {max: 600M, level: error}
        latency_ms: {max: 40}                            # level: warn unless told: latency is noisy
        layers:
          - {match: "sep7.*", macs: {max: 60M}}          # every layer matching the glob

Limits accept SI strings (``4.3M``, ``600M``, ``1.2G``). A layer glob that matches nothing is an error. For a
batch file, ``layers`` match entry names and the figures are those of the alternative ``vs`` (default: each
entry's first alternative); the check's own limits apply to the sum over entries.

The baseline (written with ``--update-baseline``) records each check's params, MACs and latency with the
environment they were measured in. Counts do not depend on the environment and are always compared; latency is
compared only in the same environment, and a different one is a warning instead. The checks are evaluated by
:mod:`convcost.run.budget`, into the verdicts of :mod:`convcost.results.budget`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from convcost.cost.conventions import Convention
from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds, yamlio
from convcost.spec.compare import LayerKind, SizeField, bounded_int, bounded_number
from convcost.spec.layers import PositiveNumber
from convcost.spec.source import is_import_path

BASELINE_VERSION = 1
SUPPORTED_VERSIONS = (1,)  # of budget files
METRICS = ("params", "macs", "latency_ms")  # what a budget limits; the same as results.budget.METRICS

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# the whole part is plain digits, or digits in groups of three split by one kind of separator (4,300,000 or
# 4_300_000); "4,3M" is refused rather than read as 43M
_SI_NUMBER = re.compile(
    r"^\s*(?P<sign>[+-]?)(?P<whole>[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,3}(?:_[0-9]{3})+)?"
    r"(?P<fraction>\.[0-9]*)?(?:[eE](?P<exponent>[+-]?[0-9]+))?\s*(?P<suffix>[kKMGT]?)\s*$"
)


def _si(value: Any, bound: bounds.Bound, example: str, noun: str) -> float:
    """``4.3M`` → 4300000.0 within ``bound``, never building a giant integer (``1e999999999`` is refused at once)."""
    if isinstance(value, bool):
        raise ValueError(f"must be {example}, got boolean {str(value).lower()}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must be a non-negative {noun}, got {bounds.shown(value)}")
        return bounds.real(value, bound, f"a {noun}")
    if (
        not isinstance(value, str)
        or not (match := _SI_NUMBER.match(value))
        or not (match["whole"] or match["fraction"])
    ):
        raise ValueError(f"must be {example}, got {bounds.shown(value)}")
    if match["fraction"] == "." and not match["whole"]:
        raise ValueError(f"must be {example}, got {value!r}")
    digits = (match["whole"] or "0").replace(",", "").replace("_", "") + (match["fraction"] or "")
    exponent = match["exponent"] or "0"
    if len(digits) > bounds.MAX_NUMBER_TEXT or len(exponent.lstrip("+-").lstrip("0")) > 4:
        number = math.inf  # far outside any bound: not worth converting (10 ** 999999999 would take minutes)
    else:
        number = float(f"{digits}e{int(exponent)}") * _SI[match["suffix"]]  # float(): 1e999 is inf, not an int
    if match["sign"] == "-" and number != 0:
        raise ValueError(f"must be a non-negative {noun}, got {value!r}")
    if not bound.contains(number):  # inf included
        raise ValueError(f"must be a {noun} {bound.describe()}, got {bounds.shown(value)}")
    return number


def si_number(value: Any) -> float:
    """``4.3M`` → 4300000.0; plain numbers pass through; negative, boolean, other text and values past
    bounds.LIMIT are refused."""
    return _si(value, bounds.LIMIT, "a number such as 4.3M, 600M or 1.2G", "number")


def percent(value: Any) -> float:
    """``10%`` or 10 → 10.0 (per cent), within bounds.TOLERANCE."""
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    return _si(value, bounds.TOLERANCE, "a percentage such as 0% or 10%", "percentage")


def _budget_version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(version) for version in SUPPORTED_VERSIONS)
        raise ValueError(f"this convcost reads budget files of version {supported}, got {bounds.shown(value)}")
    return value


SINumber = Annotated[float, BeforeValidator(si_number)]
Percent = Annotated[float, BeforeValidator(percent)]


class Limit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max: SINumber
    level: Literal["error", "warn"] | None = None  # the file's words; a verdict's is results.budget.Level


class LayerBudget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str
    params: Limit | None = None
    macs: Limit | None = None
    latency_ms: Limit | None = None


class Tolerance(BaseModel):
    """Growth allowed over the baseline, per cent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: Percent = 0.0
    macs: Percent = 0.0
    latency_ms: Percent = 10.0


class LatencyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: bounded_int(bounds.threads_bound()) = 1  # type: ignore[valid-type]
    rounds: bounded_int(bounds.ROUNDS) | None = None  # type: ignore[valid-type]  # None: adaptive (target, max_time)
    min_time: bounded_number(bounds.MIN_TIME, "a number of seconds") = 0.004  # type: ignore[valid-type]
    target: bounded_number(bounds.TARGET, "a percentage") = 3.0  # type: ignore[valid-type]
    max_time: bounded_number(bounds.MAX_TIME, "a number of seconds") = 2.0  # type: ignore[valid-type]


class CheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    model: str | None = None
    # an import path's inputs: one SHAPE[:DTYPE] or a list of them (the forward's positional arguments, in order)
    input: str | list[str] | None = None
    args: dict[str, str | int | float | bool | None] | None = None  # an import path's factory keyword arguments
    batch: str | None = None  # a batch file
    vs: LayerKind | None = None  # batch: the alternative whose figures are checked
    width_multiplier: PositiveNumber | None = None  # replace the model file's, validated as there
    size: SizeField | None = None
    params: Limit | None = None
    macs: Limit | None = None
    latency_ms: Limit | None = None
    layers: list[LayerBudget] = Field(default_factory=list)
    tolerance: Tolerance | None = None


class BudgetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[int, BeforeValidator(_budget_version)] = 1
    baseline: str | None = None
    tolerance: Tolerance = Tolerance()
    latency: LatencyOptions = LatencyOptions()
    convention: Convention = Convention.CONVCOST  # the MAC convention the macs limits are in (--convention overrides)
    checks: list[CheckSpec] = Field(min_length=1)


@dataclass
class PlannedCheck:
    """A validated check: what to evaluate and the limits to hold it to, with the budget's lines."""

    index: int
    name: str
    spec: CheckSpec
    line: int | None
    lines: dict[yamlio.Loc, int]  # the line of every limit, by its location under this check
    model_path: Path | None = None  # a model file
    import_path: str | None = None
    batch_path: Path | None = None

    @property
    def has_limits(self) -> bool:
        """Whether the check holds anything to a limit of its own (else only a baseline can judge it)."""
        return any((self.spec.params, self.spec.macs, self.spec.latency_ms, self.spec.layers))

    @property
    def needs_latency(self) -> bool:
        return self.spec.latency_ms is not None or any(layer.latency_ms for layer in self.spec.layers)

    def line_of(self, *loc: str | int) -> int | None:
        return next((self.lines[loc[:end]] for end in range(len(loc), -1, -1) if loc[:end] in self.lines), self.line)


@dataclass
class Budget:
    source: str
    spec: BudgetFile
    checks: list[PlannedCheck]
    baseline_path: Path | None


def load_budget(path: Path | str, *, display: str | None = None) -> Budget:
    """Read and validate a budget file; every problem raised at once (SpecError with lines)."""
    path = Path(path)
    document = yamlio.load(path, display=display, lines=True)
    if not isinstance(document.data, dict):
        raise document.error([FieldIssue((), "a budget file is a mapping with a 'checks' list", 1)])
    spec, issues = yamlio.validate(BudgetFile, document.data, document)
    if issues:
        raise document.error(issues)
    base = path.parent
    checks: list[PlannedCheck] = []
    names: dict[str, int] = {}  # each check's name → its index (names key the baseline and the results)
    for index, check in enumerate(spec.checks):
        loc: yamlio.Loc = ("checks", index)
        lines = {key[len(loc) :]: line for key, line in document.lines.items() if key[: len(loc)] == loc}
        lines.update({key[len(loc) :]: line for key, line in document.key_lines.items() if key[: len(loc)] == loc})
        if (check.model is None) == (check.batch is None):
            issues.append(FieldIssue(loc, "give exactly one of 'model' (a model file or import path) or 'batch'"))
            continue
        name = check.name or Path(check.model or check.batch or "").stem or f"check{index + 1}"
        if name in names:
            first: yamlio.Loc = ("checks", names[name])
            first_line = document.key_line((*first, "name")) if document.key_lines.get((*first, "name")) else None
            how = "" if check.name else " (from the file name)"
            other = f"checks[{names[name]}] ({document.source}:{first_line or document.line(first)})"
            message = f"check name {name!r}{how} is also the name of {other}: names must be unique"
            at, line = ((*loc, "name"), document.key_line((*loc, "name"))) if check.name else (loc, document.line(loc))
            issues.append(FieldIssue(at, f"{message} (give each check a 'name')", line))
        names.setdefault(name, index)
        planned = PlannedCheck(index, name, check, document.line(loc), lines)
        if check.batch is not None:
            planned.batch_path = base / check.batch
            refused = dict.fromkeys(
                ("input", "args", "width_multiplier", "size"), "applies to a model, not to a batch file"
            )
        elif check.model is not None and is_import_path(check.model) and not (base / check.model).exists():
            planned.import_path = check.model
            if check.input is None:
                issues.append(FieldIssue((*loc, "input"), "required for an import path: CxHxW, e.g. 3x224x224"))
            refused = dict.fromkeys(
                ("width_multiplier", "size"), "applies to model files; an import path takes 'input'"
            )
        else:
            assert check.model is not None
            planned.model_path = base / check.model
            refused = dict.fromkeys(("input", "args"), "applies to import paths; a model file has its own")
            refused["vs"] = "applies to batch files"
        issues.extend(FieldIssue((*loc, key), why) for key, why in refused.items() if getattr(check, key) is not None)
        for kind, path_value in (("model", planned.model_path), ("batch", planned.batch_path)):
            if path_value is not None and not path_value.exists():
                issues.append(FieldIssue((*loc, kind), f"no such file: {path_value}"))
        for number, layer in enumerate(check.layers):
            if not any((layer.params, layer.macs, layer.latency_ms)):
                issues.append(FieldIssue((*loc, "layers", number), "gives no limit: add params, macs or latency_ms"))
        checks.append(planned)
    if issues:
        raise document.error(issues)
    baseline = base / spec.baseline if spec.baseline else None
    return Budget(document.source, spec, checks, baseline)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: json keeps the last of two, which would hide a check's figures."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(repr(key))
        seen[key] = value
    return seen


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline file, or SpecError naming the file and the field that is wrong."""
    from convcost.spec.input_files import UnreadableFile, parse_json, read_text

    try:
        data = parse_json(read_text(path), object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        raise SpecError([FieldIssue((), f"key {error} is given twice (checks are keyed by name)")], str(path)) from None
    except UnreadableFile as error:
        if error.missing:
            raise SpecError(
                [FieldIssue((), "no such baseline file: write one with --update-baseline")], str(path)
            ) from None
        raise SpecError([FieldIssue((), str(error))], str(path)) from None
    except ValueError as error:
        raise SpecError([FieldIssue((), f"not a baseline file: {error}")], str(path)) from None
    if (
        not isinstance(data, dict)
        or data.get("version") != BASELINE_VERSION
        or not isinstance(data.get("checks"), dict)
    ):
        raise SpecError([FieldIssue((), f"not a convcost baseline (version {BASELINE_VERSION})")], str(path))
    issues: list[FieldIssue] = []
    conventions = [item.value for item in Convention]
    if data.get("convention", Convention.CONVCOST.value) not in conventions:
        issues.append(FieldIssue(("convention",), f"must be one of {', '.join(conventions)}, got "
                                                  f"{data['convention']!r}"))  # fmt: skip
    if data.get("environment") is not None and not isinstance(data["environment"], dict):
        issues.append(FieldIssue(("environment",), f"must be a mapping or null, got {data['environment']!r}"))
    for name, recorded in data["checks"].items():
        if not isinstance(recorded, dict):
            issues.append(FieldIssue(("checks", name), f"must be a mapping of figures, got {recorded!r}"))
            continue
        for metric in METRICS:
            value = recorded.get(metric)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                why = f"must be a non-negative number or null, got {value!r}"
            elif value > bounds.FIGURE.high:
                why = f"must be a number {bounds.FIGURE.describe()} or null, got {bounds.shown(value)}"
            else:
                continue
            issues.append(FieldIssue(("checks", name, metric), why))
        own = recorded.get("environment")
        if own is not None and not isinstance(own, dict):
            issues.append(FieldIssue(("checks", name, "environment"), f"must be a mapping or null, got {own!r}"))
    if issues:
        raise SpecError(issues, str(path))
    return data


def refuse_unmeasurable(budget: Budget, update_baseline: bool) -> None:
    """SpecError, before anything is evaluated, for what ``--formula-only`` cannot judge: a gate that skipped a
    latency limit would pass whatever the model's speed, so a latency limit is refused, not reported as unmeasured;
    so are an import path (counted by running it) and a baseline to write (it records measured figures)."""
    from convcost.errors import UsageError

    if update_baseline:
        raise UsageError("--update-baseline: a baseline records measured figures: run it without --formula-only")
    issues: list[FieldIssue] = []
    why = "--formula-only measures no latency: drop the limit or run without --formula-only"
    for check in budget.checks:
        loc: yamlio.Loc = ("checks", check.index)
        if check.import_path is not None:
            message = "--formula-only needs a model or batch file: an import path is counted by running it"
            issues.append(FieldIssue((*loc, "model"), message, check.line_of("model")))
        if check.spec.latency_ms is not None:
            issues.append(FieldIssue((*loc, "latency_ms"), why, check.line_of("latency_ms")))
        for number, layer in enumerate(check.spec.layers):
            if layer.latency_ms is not None:
                where = ("layers", number, "latency_ms")
                issues.append(FieldIssue((*loc, *where), why, check.line_of(*where)))
    if issues:
        raise SpecError(issues, budget.source)


def refuse_empty_checks(
    budget: Budget, path: Path | None, baseline: dict[str, Any] | None, update_baseline: bool
) -> None:
    """SpecError, before anything is measured, for every check that would compare nothing: such a gate passes
    whatever the model does. A check without limits of its own is judged by the baseline alone, so it needs a
    baseline that has figures for it; ``--update-baseline`` records them (that run compares nothing on purpose)."""
    if update_baseline:
        return
    issues: list[FieldIssue] = []
    for check in budget.checks:
        if check.has_limits:
            continue
        loc: yamlio.Loc = ("checks", check.index)
        if path is None:
            why = "add params, macs, latency_ms or layers (or a baseline)"
            issues.append(FieldIssue(loc, f"check {check.name!r} gives no limit: {why}", check.line))
            continue
        recorded = (baseline or {}).get("checks", {}).get(check.name)
        if baseline is None:
            why = f"the baseline {path} does not exist yet (write it with --update-baseline)"
        elif not isinstance(recorded, dict) or all(recorded.get(metric) is None for metric in METRICS):
            why = f"the baseline {path} has no figures for it (record them with --update-baseline)"
        else:
            continue
        message = f"check {check.name!r} compares nothing: it gives no limit of its own and {why}"
        issues.append(FieldIssue(loc, message, check.line))
    if issues:
        raise SpecError(issues, budget.source)
