"""Budgets → verdicts: the CI gate behind ``convcost check``. No printing, no exits.

Every check of a validated budget (:mod:`convcost.spec.budget`) is prepared before anything is measured, then
measured and held to its limits and to the baseline, into :mod:`convcost.results.budget`'s verdicts.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcost.cost.conventions import Convention
from convcost.errors import FieldIssue, SpecError, UsageError
from convcost.results.budget import METRICS, NOT_RUN, BudgetResult, Figures, Level, LimitVerdict, Measured
from convcost.run import network
from convcost.run.context import LatencySettings, RunContext, threads_for
from convcost.run.usercode import UserCodeError
from convcost.spec import yamlio
from convcost.spec.budget import (
    BASELINE_VERSION,
    Budget,
    Limit,
    PlannedCheck,
    Tolerance,
    load_baseline,
    refuse_empty_checks,
    refuse_unmeasurable,
)

if TYPE_CHECKING:
    from torch import nn

    from convcost.cost.stats import Contention
    from convcost.results.comparison import Environment, LatencyStats
    from convcost.spec.batch import Batch
    from convcost.spec.inputs import Inputs
    from convcost.spec.layers import ModelPlan

# the environment fields that change a latency (counts do not depend on any of them); the OS kernel's version in
# ``platform`` is not one of them: CI runners update it every few weeks
ENVIRONMENT_KEYS = ("cpu", "torch", "device", "device_name", "threads", "dtype", "channels_last", "allocator")
DEFAULT_LEVELS = {"params": Level.ERROR, "macs": Level.ERROR, "latency_ms": Level.WARN}


def _level(limit: Limit | None, metric: str) -> Level:
    """A limit's level as the file gives it, else the metric's default (latency is noisy: a warning)."""
    return Level(limit.level) if limit is not None and limit.level else DEFAULT_LEVELS[metric]


@dataclass
class PreparedCheck:
    """What a check evaluates, loaded and validated by :func:`prepare_checks` before anything is measured."""

    plan: ModelPlan | None = None  # a model file
    module: nn.Module | None = None  # an import path's model
    inputs: Inputs | None = None  # and its inputs
    batch: Batch | None = None  # a batch file


def prepare_checks(budget: Budget) -> list[PreparedCheck]:
    """Validate every model, import path and batch file the checks name, before anything is measured.

    Model and batch files raise their own SpecError (with their lines); every import-path problem (an input that
    is not SHAPE[:DTYPE], a module that does not import, a factory that fails with its ``args``) is raised at
    once, on the budget's lines.
    """
    from convcost.spec.batch import load_batch
    from convcost.spec.inputs import Inputs, parse_input_spec
    from convcost.spec.model import load_model

    issues: list[FieldIssue] = []
    targets: list[PreparedCheck] = []
    for check in budget.checks:
        spec = check.spec
        target = PreparedCheck()
        targets.append(target)
        if check.model_path is not None:
            try:
                target.plan = load_model(
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
            target.batch = load_batch(check.batch_path)
            # an invalid entry (a duplicate name, a bad value) is bad input: refused before anything is measured
            if target.batch.issues:
                raise SpecError(target.batch.issues, target.batch.source)
        else:
            assert check.import_path is not None and spec.input is not None
            loc: yamlio.Loc = ("checks", check.index)
            given = spec.input
            specs = []
            for number, text in enumerate([given] if isinstance(given, str) else given):
                where = ("input",) if isinstance(given, str) else ("input", number)
                try:
                    specs.append(parse_input_spec(text))
                except ValueError as error:
                    issues.append(FieldIssue((*loc, *where), str(error), check.line_of(*where)))
            target.inputs = Inputs(tuple(specs))
            from convcost.run.model import load_factory

            try:
                target.module = load_factory(check.import_path, arguments=dict(spec.args or {}))
            except UsageError as error:
                issues.append(FieldIssue((*loc, "model"), str(error), check.line_of("model")))
    if issues:
        raise SpecError(issues, budget.source)
    return targets


def measure_check(
    check: PlannedCheck,
    target: PreparedCheck,
    settings: LatencySettings | None,
    threads: int = 1,
    formula_only: bool = False,
    convention: Convention | str = Convention.CONVCOST,
) -> Measured:
    """Evaluate what a check names, as :func:`prepare_checks` loaded it.

    ``threads``: the run context's thread count (recorded, and timed on);
    ``formula_only``: by formula alone, without torch (``refuse_unmeasurable`` has refused what needs a run);
    ``convention``: the MAC convention of a model's figures (a batch file's comparisons have ours).
    """
    if target.batch is not None:
        return _measure_batch(check, target.batch, settings, threads, measure=not formula_only)
    context = RunContext(threads=threads, latency=settings)
    if target.plan is not None and formula_only:
        result = network.estimate_plan(target.plan, str(check.model_path), context.environment(measured=False),
                                       convention)  # fmt: skip
    else:
        from convcost.run.model import evaluate_import, evaluate_plan

        with context.applied():  # the process's threads and allocator as they were, after
            if target.plan is not None:
                result = evaluate_plan(target.plan, str(check.model_path), context, convention=convention)
            else:
                assert check.import_path is not None and target.inputs is not None and target.module is not None
                result = evaluate_import(check.import_path, context=context, model=target.module,
                                         convention=convention, inputs=target.inputs)  # fmt: skip
    contention, uncounted = result.environment.contention, network.uncounted_note
    parts = {layer.name: _figures(layer.params, layer.macs, layer.latency, contention, uncounted(layer.ops))
             for layer in result.layers}  # fmt: skip
    total = _figures(result.total.params, result.total.macs, result.latency, contention, uncounted(result.ops))
    return Measured(total, parts, result.environment, list(result.failures), model=result)


def _measure_batch(
    check: PlannedCheck, batch: Batch, settings: LatencySettings | None, threads: int, measure: bool = True
) -> Measured:
    from convcost.results.batch import Status
    from convcost.run.batch import evaluate

    result = evaluate(batch, settings, measure=measure, threads=threads)
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
        parts[entry.name] = _figures(layer.params, layer.macs, layer.latency, comparison.environment.contention)
    if failed:
        # a sum without the failed entries would pass a limit it should not: the total is not measured
        incomplete = f"{failed} of {len(result.entries)} entries failed"
        return Measured(Figures(None, None, None), parts, environment, problems, batch=result, incomplete=incomplete)
    timed = [part.latency_ms for part in parts.values()]
    doubts = [f"{name}: {part.latency_doubt}" for name, part in parts.items() if part.latency_doubt]
    total = Figures(
        sum(part.params or 0 for part in parts.values()),
        sum(part.macs or 0 for part in parts.values()),
        sum(value for value in timed if value is not None) if timed and None not in timed else None,
        "; ".join(doubts[:2]) + (f" (and {len(doubts) - 2} more)" if len(doubts) > 2 else ""),
    )
    return Measured(total, parts, environment, problems, batch=result)


def _figures(params: float, macs: float, latency: LatencyStats | None, contention: Contention | None,
             uncounted: str = "") -> Figures:  # fmt: skip
    return Figures(params, macs, latency.shown_ms if latency else None, latency_doubt(latency, contention),
                   latency.interval_ms if latency and latency.rounds > 1 else None, uncounted)  # fmt: skip


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
        fractions = (("memory bandwidth", contention.memory_fraction), ("compute", contention.compute_fraction))
        levels = ", ".join(f"{what} at {fraction:.0%}" for what, fraction in fractions if fraction is not None)
        reasons.append(f"the machine was busy ({levels} of {contention.reference})")
    return " and ".join(reasons)


def limit_verdicts(check: PlannedCheck, measured: Measured, strict_latency: bool = False) -> list[LimitVerdict]:
    """The check's own limits and its layer limits against what was measured."""
    verdicts: list[LimitVerdict] = []
    spec = check.spec
    for problem in measured.problems:
        verdicts.append(LimitVerdict(check.name, "model", "checks", "failed", Level.ERROR, False, check.line,
                                     message=problem))  # fmt: skip
    whole, part = ("batch total", "entry") if check.batch_path is not None else ("model", "layer")
    for metric in METRICS:
        limit: Limit | None = getattr(spec, metric)
        if limit is not None:
            verdict = _limit(check, whole, metric, limit, measured.total.get(metric), (metric,), measured.incomplete)
            verdicts.append(_doubted(verdict, measured.total, strict_latency))
    for number, layer in enumerate(spec.layers):
        names = [name for name in measured.parts if fnmatch.fnmatchcase(name, layer.match)]
        if not names:
            known = ", ".join(list(measured.parts)[:6]) + (" …" if len(measured.parts) > 6 else "")
            verdicts.append(
                LimitVerdict(check.name, f"{part}s {layer.match}", "match", "no match", Level.ERROR, False,
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
    check: PlannedCheck, subject: str, metric: str, limit: Limit, found: float | None, loc: yamlio.Loc, why: str = ""
) -> LimitVerdict:
    level = _level(limit, metric)
    line = check.line_of(*loc)
    if found is None:
        # a figure that could not be measured fails its limit at the error level: it cannot be shown to hold
        message = f"{metric} not measured" + (f": {why}" if why else "")
        return LimitVerdict(check.name, subject, metric, "max", Level.ERROR if why else level, False, line, limit.max,
                            None, message=message)  # fmt: skip
    return LimitVerdict(check.name, subject, metric, "max", level, found <= limit.max, line, limit.max, found)


def _doubted(verdict: LimitVerdict, figures: Figures, strict: bool) -> LimitVerdict:
    """A verdict its figure cannot decide: MACs missing ops fail; a latency is *inconclusive* (an error when strict).

    An unconverged or contended measurement decides a limit only when its 95% interval lies wholly on one side of
    it; straddling it, it says nothing reliable about the limit: neither a silent pass nor a spurious failure.
    """
    against = "max" if verdict.rule == "max" else "baseline + tolerance"
    if verdict.metric == "macs" and figures.uncounted and verdict.found is not None:
        return replace(verdict, rule="incomplete", passed=False,
                       message=f"macs {verdict.found:,.0f} counted against {against} {verdict.expected:,.0f} is "
                       f"incomplete: {figures.uncounted}: their cost is not in the totals")  # fmt: skip
    if verdict.metric != "latency_ms" or verdict.found is None or not figures.latency_doubt:
        return verdict
    low, high = figures.latency_interval or (-float("inf"), float("inf"))  # no interval: it straddles any limit
    if verdict.expected is not None and (high <= verdict.expected if verdict.passed else low > verdict.expected):
        sign = "≤" if verdict.passed else ">"  # decided, and it says how and what doubted the figure
        return replace(
            verdict,
            message=f"latency_ms {verdict.found:.3g} ms {sign} {against} {verdict.expected:.3g} "
            f"ms, decided by its whole 95% interval {low:.3g}–{high:.3g} ms, though {figures.latency_doubt}",
        )
    seen = "would pass" if verdict.passed else "would fail"
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
    strict_latency: bool = False,
) -> list[LimitVerdict]:
    """Growth over the baseline beyond the tolerance; latency only in the environment it was recorded in."""
    recorded = baseline.get("checks", {}).get(check.name)
    if not isinstance(recorded, dict):
        return [LimitVerdict(check.name, "model", "baseline", "growth", Level.WARN, False, check.line,
                             message="not in the baseline: run with --update-baseline to add it")]  # fmt: skip
    verdicts = []
    for metric in METRICS:
        before = recorded.get(metric)
        now = measured.total.get(metric)
        if before is not None and now is None and metric == "latency_ms":  # --formula-only measured none
            verdicts.append(
                LimitVerdict(check.name, "model", metric, "growth", Level.WARN, False, check.line,
                             baseline=before, message="latency not compared with the baseline: nothing was measured")
            )  # fmt: skip
        if before is None or now is None:
            continue
        level = _level(getattr(check.spec, metric), metric)
        allowed_pct = getattr(tolerance, metric)
        if metric == "latency_ms":
            own = recorded.get("environment")  # the check's own, else the baseline's (older files)
            then = own if isinstance(own, dict) else baseline.get("environment") or {}
            changed = differences(then, measured.environment)
            if changed:
                verdicts.append(
                    LimitVerdict(check.name, "model", metric, "environment", Level.WARN, False, check.line_of(metric),
                                 baseline=before, found=now,
                                 message="latency not compared: the baseline was measured in another environment ("
                                 + "; ".join(changed) + ")")
                )  # fmt: skip
                continue
        expected = before * (1 + allowed_pct / 100)
        verdict = LimitVerdict(check.name, "model", metric, "growth", level, now <= expected + 1e-9,
                               check.line_of(metric), expected, now, before, allowed_pct)  # fmt: skip
        verdicts.append(_doubted(verdict, measured.total, strict_latency))
    return verdicts


def environment_record(environment: Environment | None) -> dict[str, Any] | None:
    """What a baseline keeps of an environment: every field (but the calibration) and the CPU model."""
    if environment is None:
        return None
    from convcost.run.cache import cpu_model

    data = environment.to_dict()
    data.pop("calibration", None)
    data["cpu"] = cpu_model() if environment.device == "cpu" else None
    return data


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


def baseline_text(result: BudgetResult) -> str:
    """The baseline file for what was just measured, each check with the environment it was measured in."""
    for name, item in result.measured.items():  # a baseline that misses ops would hold the model to that miss
        if item.total.uncounted:
            raise UsageError(f"--update-baseline: {name}: macs incomplete: {item.total.uncounted}: not written")
    data = {
        "version": BASELINE_VERSION,
        "convention": result.convention,  # the MAC convention of its figures
        "environment": environment_record(result.environment),
        "checks": {
            name: {**item.total.to_dict(), "environment": environment_record(item.environment)}
            for name, item in result.measured.items()
        },
    }
    return json.dumps(data, indent=2) + "\n"


def run_checks(
    budget: Budget,
    baseline_path: Path | None = None,
    update_baseline: bool = False,
    latency_settings: LatencySettings | None = None,
    strict_latency: bool = False,
    formula_only: bool = False,
    convention: Convention | str | None = None,
) -> BudgetResult:
    """Measure every check and hold it to its limits (and to the baseline, when there is one and not updating).

    Every model file, import path and batch file is validated before anything is measured, so an invalid one
    fails fast. Runs without latency record the budget's thread count too. ``formula_only``: params and MACs by
    formula, without torch; what needs a run (a latency limit, an import path, a baseline to write) is refused.
    ``convention``: the MAC convention of the models' figures (default: the budget file's ``convention``).
    """
    chosen = Convention(convention) if convention is not None else budget.spec.convention
    if formula_only:
        refuse_unmeasurable(budget, update_baseline)
    targets = prepare_checks(budget)
    path = baseline_path or budget.baseline_path
    # a baseline named on the command line must exist; the budget file's may not have been written yet
    missing = path is not None and not update_baseline and baseline_path is None and not path.exists()
    baseline = load_baseline(path) if path is not None and not update_baseline and not missing else None
    if baseline is not None and path is not None:
        # a baseline's MACs are in the convention it was written in (before conventions: ours); figures in two
        # conventions never compare
        recorded = baseline.get("convention", Convention.CONVCOST.value)
        if recorded != chosen.value:
            message = (f"its MACs are by {recorded}'s convention, this run's by {chosen.value}'s: run with "
                       f"--convention {recorded}, or write a new baseline with --update-baseline")  # fmt: skip
            raise SpecError([FieldIssue(("convention",), message)], str(path))
    refuse_empty_checks(budget, path, baseline, update_baseline)
    options = budget.spec.latency
    settings = latency_settings
    if settings is None and not formula_only:
        settings = LatencySettings(rounds=options.rounds, min_time=options.min_time, target=options.target / 100,
                                   max_time=options.max_time)  # fmt: skip
    threads = threads_for(None, settings, options.threads)
    verdicts: list[LimitVerdict] = []
    measured: dict[str, Measured] = {}
    ran = []
    for check, target in zip(budget.checks, targets, strict=True):
        wants_latency = check.needs_latency or bool(
            baseline and (baseline.get("checks", {}).get(check.name) or {}).get("latency_ms") is not None
        )
        try:
            figures = measure_check(check, target, settings if wants_latency else None, threads, formula_only, chosen)
        except UserCodeError as error:  # the model's own code raised: this check's error, the others still run
            measured[check.name] = Measured(Figures(None, None, None), {}, None, [str(error)])
            said = str(error).removeprefix(f"{check.name}: ")  # a check named by its import path: said once
            verdicts.append(LimitVerdict(check.name, "model", "model", NOT_RUN, Level.ERROR, False,
                                         check.line_of("model"), message=said))  # fmt: skip
            continue
        measured[check.name] = figures
        ran.append(check)
        verdicts += limit_verdicts(check, figures, strict_latency)
    # the run's environment is that of the checks that measured latency (counts do not depend on it)
    timed = [item.environment for item in measured.values() if item.measured_latency and item.environment]
    known = [item.environment for item in measured.values() if item.environment]  # not a check that did not run
    environment = next(iter(timed + known), None)
    if baseline is not None:
        for check in ran:
            tolerance = check.spec.tolerance or budget.spec.tolerance
            verdicts += growth_verdicts(check, measured[check.name], baseline, tolerance, strict_latency)
    if missing:
        verdicts.append(
            LimitVerdict("baseline", "baseline", "baseline", "missing", Level.WARN, False, None,
                         message=f"no baseline at {path} yet: growth not checked (write it with --update-baseline)")
        )  # fmt: skip
    return BudgetResult(
        budget.source,
        verdicts,
        measured,
        environment,
        str(path) if path else None,
        formula_only=formula_only,
        convention=chosen.value,
    )
