"""Budgets → verdicts: the CI gate behind ``convcost check``. No printing, no exits.

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
compared only in the same environment, and a different one is a warning instead.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds, yamlio
from convcost.spec.compare import LayerKind, SizeField, bounded_int, bounded_number
from convcost.spec.model import PositiveNumber

if TYPE_CHECKING:
    from torch import nn

    from convcost.cost.stats import Contention
    from convcost.results.comparison import Environment, LatencyStats
    from convcost.results.model import ModelResult
    from convcost.run.batch import Batch, BatchResult
    from convcost.run.latency import LatencySettings
    from convcost.spec.model import ModelPlan

BASELINE_VERSION = 1
SUPPORTED_VERSIONS = (1,)  # of budget files
METRICS = ("params", "macs", "latency_ms")
# the environment fields that change a latency (counts do not depend on any of them); the OS kernel's version in
# ``platform`` is not one of them: CI runners update it every few weeks
ENVIRONMENT_KEYS = ("cpu", "torch", "device", "device_name", "threads", "dtype", "channels_last", "allocator")


class Level(str, Enum):
    ERROR = "error"
    WARN = "warn"

    def __str__(self) -> str:
        return self.value


DEFAULT_LEVELS = {"params": Level.ERROR, "macs": Level.ERROR, "latency_ms": Level.WARN}

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
    level: Level | None = None


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
    input: str | None = None  # an import path's input CxHxW
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
    evaluate: Callable[[LatencySettings | None], Measured] | None = None
    # filled by prepare_checks() before anything is measured
    plan: ModelPlan | None = None
    module: nn.Module | None = None
    input_shape: tuple[int, ...] | None = None
    batch_plan: Batch | None = None

    @property
    def has_limits(self) -> bool:
        """Whether the check holds anything to a limit of its own (else only a baseline can judge it)."""
        return any((self.spec.params, self.spec.macs, self.spec.latency_ms, self.spec.layers))

    @property
    def needs_latency(self) -> bool:
        return self.spec.latency_ms is not None or any(layer.latency_ms for layer in self.spec.layers)

    def line_of(self, *loc: str | int) -> int | None:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return self.line


@dataclass
class Budget:
    source: str
    spec: BudgetFile
    checks: list[PlannedCheck]
    baseline_path: Path | None


def load_budget(path: Path | str, *, display: str | None = None) -> Budget:
    """Read and validate a budget file; every problem raised at once (SpecError with lines)."""
    path = Path(path)
    document = yamlio.load(path, display=display)
    if not isinstance(document.data, dict):
        raise document.error([FieldIssue((), "a budget file is a mapping with a 'checks' list", 1)])
    spec, issues = yamlio.validate(BudgetFile, document.data, document)
    if issues:
        raise document.error(issues)
    from convcost.run.model import is_import_path

    base = path.parent
    checks: list[PlannedCheck] = []
    names: dict[str, int] = {}  # each check's name → its index (names key the baseline and the results)
    for index, check in enumerate(spec.checks):
        loc: yamlio.Loc = ("checks", index)
        lines = {key[len(loc) :]: line for key, line in document.lines.items() if key[: len(loc)] == loc}
        lines.update(
            {key[len(loc) + 1 :]: line for key, line in document.lines.items() if key[: len(loc) + 1] == ("key", *loc)}
        )
        where = [("model", check.model), ("batch", check.batch)]
        given = [key for key, value in where if value is not None]
        if len(given) != 1:
            issues.append(FieldIssue(loc, "give exactly one of 'model' (a model file or import path) or 'batch'"))
            continue
        name = check.name or Path(check.model or check.batch or "").stem or f"check{index + 1}"
        if name in names:
            first: yamlio.Loc = ("checks", names[name])
            first_line = document.key_line((*first, "name")) if document.lines.get(("key", *first, "name")) else None
            first_line = first_line or document.line(first)
            how = "" if check.name else " (from the file name)"
            issues.append(
                FieldIssue(
                    (*loc, "name") if check.name else loc,
                    f"check name {name!r}{how} is also the name of checks[{names[name]}] "
                    f"({document.source}:{first_line}): names must be unique (give each check a 'name')",
                    document.key_line((*loc, "name")) if check.name else document.line(loc),
                )
            )
        names.setdefault(name, index)
        planned = PlannedCheck(index, name, check, document.line(loc), lines)
        if check.batch is not None:
            planned.batch_path = base / check.batch
            for key in ("input", "width_multiplier", "size"):
                if getattr(check, key) is not None:
                    issues.append(FieldIssue((*loc, key), "applies to a model, not to a batch file"))
        elif check.model is not None and is_import_path(check.model) and not (base / check.model).exists():
            planned.import_path = check.model
            if check.input is None:
                issues.append(FieldIssue((*loc, "input"), "required for an import path: CxHxW, e.g. 3x224x224"))
            for key in ("width_multiplier", "size"):
                if getattr(check, key) is not None:
                    issues.append(FieldIssue((*loc, key), "applies to model files; an import path takes 'input'"))
        else:
            assert check.model is not None
            planned.model_path = base / check.model
            if check.input is not None:
                issues.append(FieldIssue((*loc, "input"), "applies to import paths; a model file has its own"))
            if check.vs is not None:
                issues.append(FieldIssue((*loc, "vs"), "applies to batch files"))
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


# ---- measuring ----------------------------------------------------------------------------------------


@dataclass
class Figures:
    params: float | None
    macs: float | None
    latency_ms: float | None
    latency_doubt: str = ""  # why the latency cannot decide a limit (unconverged, busy machine); "" when it can

    def get(self, metric: str) -> float | None:
        value: float | None = getattr(self, metric)
        return value


@dataclass
class Measured:
    """A check's figures: the whole and each named part (layers of a model, entries of a batch)."""

    total: Figures
    parts: dict[str, Figures]
    environment: Environment | None
    problems: list[str] = field(default_factory=list)  # e.g. batch entries that failed
    model: ModelResult | None = None
    batch: BatchResult | None = None
    incomplete: str = ""  # why the total is not measured (a batch whose entries failed)

    @property
    def measured_latency(self) -> bool:
        return self.total.latency_ms is not None or any(part.latency_ms is not None for part in self.parts.values())


def prepare_checks(budget: Budget) -> None:
    """Validate every model, import path and batch file the checks name, before anything is measured.

    Model and batch files raise their own SpecError (with their lines); every import-path problem (an input that
    is not CxHxW, a module that does not import, a factory that fails) is raised at once, on the budget's lines.
    """
    from convcost.errors import UsageError
    from convcost.run.model import load_factory, parse_input
    from convcost.spec.model import load_model

    issues: list[FieldIssue] = []
    for check in budget.checks:
        spec = check.spec
        if check.model_path is not None:
            try:
                check.plan = load_model(
                    str(check.model_path),
                    width_multiplier=None if spec.width_multiplier is None else str(spec.width_multiplier),
                    size=None if spec.size is None else "x".join(map(str, spec.size)),
                )
            except SpecError as error:
                if error.source is not None:  # the model file's own problem, on its own lines
                    raise
                # the check's width_multiplier or size, which replace the model file's: on the budget's lines
                issues.extend(
                    FieldIssue(("checks", check.index, *issue.loc), issue.message, check.line_of(*issue.loc))
                    for issue in error.issues
                )
        elif check.batch_path is not None:
            from convcost.run.batch import load_batch

            check.batch_plan = load_batch(check.batch_path)
            # an invalid entry (a duplicate name, a bad value) is bad input: refused before anything is measured
            if check.batch_plan.issues:
                raise SpecError(check.batch_plan.issues, check.batch_plan.source)
        else:
            assert check.import_path is not None and spec.input is not None
            loc: yamlio.Loc = ("checks", check.index)
            try:
                check.input_shape = parse_input(spec.input)
            except ValueError as error:
                issues.append(FieldIssue((*loc, "input"), str(error), check.line_of("input")))
            try:
                check.module = load_factory(check.import_path)
            except UsageError as error:
                issues.append(FieldIssue((*loc, "model"), str(error), check.line_of("model")))
    if issues:
        raise SpecError(issues, budget.source)


def measure_check(check: PlannedCheck, settings: LatencySettings | None, threads: int = 1) -> Measured:
    """Evaluate what a check names; raises SpecError/UsageError for an invalid model or batch file.

    ``threads`` is the thread count recorded when no latency is measured (``settings`` has its own).
    """
    if check.batch_path is not None:
        return _measure_batch(check, settings)
    from convcost.run.model import evaluate_import, evaluate_plan, load_factory, parse_input
    from convcost.spec.model import load_model

    if check.model_path is not None:
        plan = check.plan or load_model(
            str(check.model_path),
            width_multiplier=None if check.spec.width_multiplier is None else str(check.spec.width_multiplier),
            size=None if check.spec.size is None else "x".join(map(str, check.spec.size)),
        )
        result = evaluate_plan(plan, str(check.model_path), settings, threads=threads)
    else:
        assert check.import_path is not None and check.spec.input is not None
        try:
            shape = check.input_shape or parse_input(check.spec.input)
        except ValueError as error:
            raise SpecError(
                [FieldIssue(("checks", check.index, "input"), str(error), check.line_of("input"))]
            ) from None
        module = check.module if check.module is not None else load_factory(check.import_path)
        result = evaluate_import(check.import_path, shape, latency_settings=settings, model=module, threads=threads)
    contention = result.environment.contention
    parts = {
        layer.name: Figures(layer.params, layer.macs, layer.latency.shown_ms if layer.latency else None,
                            latency_doubt(layer.latency, contention))
        for layer in result.layers
    }  # fmt: skip
    total = Figures(result.total.params, result.total.macs, result.latency.shown_ms if result.latency else None,
                    latency_doubt(result.latency, contention))  # fmt: skip
    return Measured(total, parts, result.environment, list(result.failures), model=result)


def _measure_batch(check: PlannedCheck, settings: LatencySettings | None) -> Measured:
    from convcost.run.batch import Status, evaluate, load_batch

    assert check.batch_path is not None
    batch = check.batch_plan or load_batch(check.batch_path)
    result = evaluate(batch, settings)
    parts: dict[str, Figures] = {}
    environment = None
    problems = list(result.problems)
    failed = 0
    for entry in result.entries:
        if entry.status is not Status.OK or entry.comparison is None:
            failed += 1
            continue
        comparison = entry.comparison
        environment = comparison.environment
        wanted = str(check.spec.vs) if check.spec.vs is not None else None
        layer = next((item for item in comparison.alternatives if wanted is None or item.kind == wanted), None)
        if layer is None:
            problems.append(f"{entry.name}: no '{wanted}' alternative in this entry")
            failed += 1
            continue
        parts[entry.name] = Figures(layer.params, layer.macs, layer.latency.shown_ms if layer.latency else None,
                                    latency_doubt(layer.latency, comparison.environment.contention))  # fmt: skip
    if failed:
        # a sum without the failed entries would pass a limit it should not: the total is not measured
        total = Figures(None, None, None)
        incomplete = f"{failed} of {len(result.entries)} entries failed"
        return Measured(total, parts, environment, problems, batch=result, incomplete=incomplete)
    timed = [part.latency_ms for part in parts.values()]
    doubts = [f"{name}: {part.latency_doubt}" for name, part in parts.items() if part.latency_doubt]
    total = Figures(
        sum(part.params or 0 for part in parts.values()),
        sum(part.macs or 0 for part in parts.values()),
        sum(value for value in timed if value is not None) if timed and None not in timed else None,
        "; ".join(doubts[:2]) + (f" (and {len(doubts) - 2} more)" if len(doubts) > 2 else ""),
    )
    return Measured(total, parts, environment, problems, batch=result)


def latency_doubt(stats: LatencyStats | None, contention: Contention | None) -> str:
    """Why a latency cannot decide a limit: its sampling did not converge, or the machine was busy; "" if it can."""
    if stats is None:
        return ""
    reasons = []
    if not stats.converged:
        low, high = stats.interval_ms or (stats.shown_ms, stats.shown_ms)
        reasons.append(
            f"its sampling did not converge to ±{stats.target_pct:g}% in {stats.sampled_s:.1f} s "
            f"(95% interval {low:.3g}–{high:.3g} ms)"
        )
    if contention is not None and contention.busy:
        reasons.append(_busy_reason(contention))
    return " and ".join(reasons)


def _busy_reason(contention: Contention) -> str:
    levels = []
    if contention.memory_fraction is not None:
        levels.append(f"memory bandwidth at {contention.memory_fraction:.0%}")
    if contention.compute_fraction is not None:
        levels.append(f"compute at {contention.compute_fraction:.0%}")
    return f"the machine was busy ({', '.join(levels)} of {contention.reference})"


# ---- verdicts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One limit held against one figure."""

    check: str
    subject: str  # "model", "layer sep7.1", "entry block3"
    metric: str  # params | macs | latency_ms | "match" | "model" | "baseline"
    rule: str  # "max", "growth", "no match", "failed", "environment"
    level: Level
    passed: bool
    line: int | None
    expected: float | None = None  # the limit (max, or baseline × (1 + tolerance))
    found: float | None = None
    baseline: float | None = None
    tolerance_pct: float | None = None
    message: str = ""

    @property
    def excess(self) -> float | None:
        if self.expected is None or self.found is None:
            return None
        return self.found - self.expected

    @property
    def excess_pct(self) -> float | None:
        if self.excess is None or not self.expected:
            return None
        return 100.0 * self.excess / self.expected

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "metric": self.metric,
            "rule": self.rule,
            "level": str(self.level),
            "passed": self.passed,
            "line": self.line,
            "expected": self.expected,
            "found": self.found,
            "excess": self.excess,
            "excess_pct": self.excess_pct,
            "baseline": self.baseline,
            "tolerance_pct": self.tolerance_pct,
            "message": self.message,
        }


@dataclass
class BudgetResult:
    source: str
    verdicts: list[Verdict]
    measured: dict[str, Measured]
    environment: Environment | None
    baseline_path: str | None = None
    baseline_written: bool = False

    @property
    def errors(self) -> list[Verdict]:
        return [item for item in self.verdicts if not item.passed and item.level is Level.ERROR]

    @property
    def warnings(self) -> list[Verdict]:
        return [item for item in self.verdicts if not item.passed and item.level is Level.WARN]

    @property
    def ok(self) -> bool:
        """Every error-level limit holds (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        checks = len(self.measured)
        passed = sum(item.passed for item in self.verdicts)
        limits = len(self.verdicts)
        return (
            f"{checks} check{'s' if checks != 1 else ''}, {limits} limit{'s' if limits != 1 else ''}: {passed} passed, "
            f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}, "
            f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": BASELINE_VERSION,
            "source": self.source,
            "ok": self.ok,
            "summary": self.summary(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "baseline": self.baseline_path,
            "baseline_written": self.baseline_written,
            "environment": None if self.environment is None else self.environment.to_dict(),
            "verdicts": [item.to_dict() for item in self.verdicts],
            "measured": {
                name: {
                    "params": item.total.params,
                    "macs": item.total.macs,
                    "latency_ms": item.total.latency_ms,
                    "problems": item.problems,
                }
                for name, item in self.measured.items()
            },
        }


def limit_verdicts(check: PlannedCheck, measured: Measured, strict_latency: bool = False) -> list[Verdict]:
    """The check's own limits and its layer limits against what was measured."""
    verdicts: list[Verdict] = []
    spec = check.spec
    for problem in measured.problems:
        verdicts.append(Verdict(check.name, "model", "checks", "failed", Level.ERROR, False, check.line,
                                message=problem))  # fmt: skip
    whole = "batch total" if check.batch_path is not None else "model"
    for metric in METRICS:
        limit: Limit | None = getattr(spec, metric)
        if limit is not None:
            found = measured.total.get(metric)
            verdict = _limit(check, whole, metric, limit, found, (metric,), measured.incomplete)
            verdicts.append(_doubted(verdict, measured.total, strict_latency))
    part = "entry" if check.batch_path is not None else "layer"
    for number, layer in enumerate(spec.layers):
        names = [name for name in measured.parts if fnmatch.fnmatchcase(name, layer.match)]
        if not names:
            known = ", ".join(list(measured.parts)[:6]) + (" …" if len(measured.parts) > 6 else "")
            verdicts.append(
                Verdict(check.name, f"{part}s {layer.match}", "match", "no match", Level.ERROR, False,
                        check.line_of("layers", number, "match"),
                        message=f"no {part} matches {layer.match!r} (there are: {known})")
            )  # fmt: skip
            continue
        for metric in METRICS:
            limit = getattr(layer, metric)
            if limit is None:
                continue
            for name in names:
                loc = ("layers", number, metric)
                figures = measured.parts[name]
                verdict = _limit(check, f"{part} {name}", metric, limit, figures.get(metric), loc)
                verdicts.append(_doubted(verdict, figures, strict_latency))
    return verdicts


def _limit(
    check: PlannedCheck,
    subject: str,
    metric: str,
    limit: Limit,
    found: float | None,
    loc: tuple[str | int, ...],
    why: str = "",
) -> Verdict:
    level = limit.level or DEFAULT_LEVELS[metric]
    line = check.line_of(*loc)
    if found is None:
        # a figure that could not be measured fails its limit at the error level: it cannot be shown to hold
        message = f"{metric} not measured" + (f": {why}" if why else "")
        return Verdict(check.name, subject, metric, "max", Level.ERROR if why else level, False, line, limit.max,
                       None, message=message)  # fmt: skip
    return Verdict(check.name, subject, metric, "max", level, found <= limit.max, line, limit.max, found)


def _doubted(verdict: Verdict, figures: Figures, strict: bool) -> Verdict:
    """A latency verdict made *inconclusive* when its figure cannot decide it (a warning; an error when strict).

    Pass or fail, an unconverged or contended measurement says nothing reliable about the limit: it is neither
    a silent pass nor a spurious failure.
    """
    if verdict.metric != "latency_ms" or verdict.found is None or not figures.latency_doubt:
        return verdict
    seen = "would pass" if verdict.passed else "would fail"
    against = "max" if verdict.rule == "max" else "baseline + tolerance"
    return replace(
        verdict,
        rule="inconclusive",
        level=Level.ERROR if strict else Level.WARN,
        passed=False,
        message=f"latency_ms {verdict.found:.3g} ms against {against} {verdict.expected:.3g} ms ({seen}) is "
        f"inconclusive: {figures.latency_doubt}" + ("" if strict else " (--strict-latency makes this an error)"),
    )


def growth_verdicts(
    check: PlannedCheck,
    measured: Measured,
    baseline: dict[str, Any],
    tolerance: Tolerance,
    baseline_line: int | None = None,
    strict_latency: bool = False,
) -> list[Verdict]:
    """Growth over the baseline beyond the tolerance; latency only in the environment it was recorded in."""
    recorded = baseline.get("checks", {}).get(check.name)
    if not isinstance(recorded, dict):
        return [Verdict(check.name, "model", "baseline", "growth", Level.WARN, False, check.line,
                        message="not in the baseline: run with --update-baseline to add it")]  # fmt: skip
    verdicts = []
    for metric in METRICS:
        before = recorded.get(metric)
        now = measured.total.get(metric)
        if before is None or now is None:
            continue
        limit: Limit | None = getattr(check.spec, metric)
        level = (limit.level if limit and limit.level else None) or DEFAULT_LEVELS[metric]
        allowed_pct = getattr(tolerance, metric)
        if metric == "latency_ms":
            changed = differences(recorded_environment(baseline, check.name), measured.environment)
            if changed:
                verdicts.append(
                    Verdict(check.name, "model", metric, "environment", Level.WARN, False, check.line_of(metric),
                            baseline=before, found=now,
                            message="latency not compared: the baseline was measured in another environment ("
                            + "; ".join(changed) + ")")
                )  # fmt: skip
                continue
        expected = before * (1 + allowed_pct / 100)
        verdict = Verdict(check.name, "model", metric, "growth", level, now <= expected + 1e-9, check.line_of(metric),
                          expected, now, before, allowed_pct)  # fmt: skip
        verdicts.append(_doubted(verdict, measured.total, strict_latency))
    return verdicts


def environment_record(environment: Environment | None) -> dict[str, Any] | None:
    """What a baseline keeps of an environment: every field (but the calibration) and the CPU model."""
    if environment is None:
        return None
    from convcost.run.calibrate import cpu_model

    data = environment.to_dict()
    data.pop("calibration", None)
    data["cpu"] = cpu_model() if environment.device == "cpu" else None
    return data


def recorded_environment(baseline: dict[str, Any], name: str) -> dict[str, Any]:
    """The environment a check's latency was recorded in: its own, else the baseline's (older files)."""
    recorded = baseline.get("checks", {}).get(name)
    own = recorded.get("environment") if isinstance(recorded, dict) else None
    return own if isinstance(own, dict) else baseline.get("environment") or {}


def differences(recorded: dict[str, Any], environment: Environment | None) -> list[str]:
    """The latency-relevant environment fields that differ between a baseline and now: ``threads: 1 → 2``.

    A field the baseline did not record (an older file) is not a difference.
    """
    now = environment_record(environment)
    if now is None:
        return []
    return [
        f"{key}: {recorded.get(key)} → {now.get(key)}"
        for key in ENVIRONMENT_KEYS
        if key in recorded and recorded.get(key) != now.get(key)
    ]


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
                issues.append(
                    FieldIssue(("checks", name, metric), f"must be a non-negative number or null, got {value!r}")
                )
            elif value > bounds.FIGURE.high:
                issues.append(
                    FieldIssue(("checks", name, metric), f"must be a number {bounds.FIGURE.describe()} or null, "
                               f"got {bounds.shown(value)}")
                )  # fmt: skip
        own = recorded.get("environment")
        if own is not None and not isinstance(own, dict):
            issues.append(FieldIssue(("checks", name, "environment"), f"must be a mapping or null, got {own!r}"))
    if issues:
        raise SpecError(issues, str(path))
    return data


def baseline_text(result: BudgetResult) -> str:
    """The baseline file for what was just measured, each check with the environment it was measured in."""
    data = {
        "version": BASELINE_VERSION,
        "environment": environment_record(result.environment),
        "checks": {
            name: {
                "params": item.total.params,
                "macs": item.total.macs,
                "latency_ms": item.total.latency_ms,
                "environment": environment_record(item.environment),
            }
            for name, item in result.measured.items()
        },
    }
    return json.dumps(data, indent=2) + "\n"


def _refuse_empty_checks(
    budget: Budget, path: Path | None, baseline: dict[str, Any] | None, update_baseline: bool
) -> None:
    """SpecError, before anything is measured, for every check that would compare nothing.

    A gate that compares nothing passes whatever the model does. A check without limits of its own is judged by
    the baseline alone, so it needs a baseline that has figures for it; ``--update-baseline`` records them (that
    run compares nothing on purpose).
    """
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


def run_checks(
    budget: Budget,
    baseline_path: Path | None = None,
    update_baseline: bool = False,
    latency_settings: LatencySettings | None = None,
    strict_latency: bool = False,
) -> BudgetResult:
    """Measure every check and hold it to its limits (and to the baseline, when there is one and not updating).

    Every model file, import path and batch file is validated before anything is measured, so an invalid one
    fails fast. Runs without latency record the budget's thread count too.
    """
    from convcost.run.latency import LatencySettings

    prepare_checks(budget)
    path = baseline_path or budget.baseline_path
    baseline = None
    missing = False
    if path is not None and not update_baseline:
        # a baseline named on the command line must exist; the budget file's may not have been written yet
        missing = baseline_path is None and not path.exists()
        baseline = None if missing else load_baseline(path)
    _refuse_empty_checks(budget, path, baseline, update_baseline)
    options = budget.spec.latency
    settings = latency_settings or LatencySettings(threads=options.threads, rounds=options.rounds,
                                                   min_time=options.min_time, target=options.target / 100,
                                                   max_time=options.max_time)  # fmt: skip
    verdicts: list[Verdict] = []
    measured: dict[str, Measured] = {}
    for check in budget.checks:
        wants_latency = check.needs_latency or bool(
            baseline and (baseline.get("checks", {}).get(check.name) or {}).get("latency_ms") is not None
        )
        figures = measure_check(check, settings if wants_latency else None, threads=settings.threads)
        measured[check.name] = figures
        verdicts += limit_verdicts(check, figures, strict_latency)
    # the run's environment is that of the checks that measured latency (counts do not depend on it)
    timed = [item.environment for item in measured.values() if item.measured_latency and item.environment]
    environment = next(iter(timed), None) or next((item.environment for item in measured.values()), None)
    if baseline is not None:
        for check in budget.checks:
            tolerance = check.spec.tolerance or budget.spec.tolerance
            verdicts += growth_verdicts(check, measured[check.name], baseline, tolerance, check.line, strict_latency)
    if missing:
        verdicts.append(
            Verdict("baseline", "baseline", "baseline", "missing", Level.WARN, False, None,
                    message=f"no baseline at {path} yet: growth not checked (write it with --update-baseline)")
        )  # fmt: skip
    return BudgetResult(budget.source, verdicts, measured, environment, str(path) if path else None)
