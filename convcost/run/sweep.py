"""``convcost sweep``: compare over a grid of cin × cout × kernel × size; MAC ratio against measured speedup.

Every grid point is validated before anything runs, then compared in turn (counters checked as for
``compare``); within a point the dense layer and its alternatives are timed in interleaved rounds, so a
speedup is never a ratio of two timings taken far apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from convcost.cost.roofline import Calibration, Roofline
from convcost.errors import FieldIssue, SpecError
from convcost.results.comparison import Comparison, Environment, Sweep, SweepPoint
from convcost.run.latency import LatencySettings
from convcost.spec import bounds, kinds
from convcost.spec.compare import CompareSpec, parse_compare, positive_int, positive_pair, size_value

# The swept axes: spec field → (how one value is validated, what it must be).
AXES: dict[str, Callable[[Any], Any]] = {
    "cin": positive_int,
    "cout": positive_int,
    "kernel": positive_pair,
    "size": size_value,
}

Progress = Callable[[int, int, CompareSpec], None]


def split_axis(text: str) -> list[str]:
    """'8, 32,128' → ['8', '32', '128'] (order kept, repeats dropped)."""
    return list(dict.fromkeys(part.strip() for part in text.split(",")))


def plan(axes: dict[str, str], fixed: dict[str, Any]) -> list[CompareSpec]:
    """Every grid point as a validated spec; all problems raised at once, each naming its point."""
    issues: list[FieldIssue] = []
    values: dict[str, list[str]] = {}
    for field, text in axes.items():
        values[field] = split_axis(text)
    # the grid's size is bounded before any point is validated or planned
    size = math.prod(len(axis) for axis in values.values())
    if size > bounds.MAX_SWEEP_POINTS:
        counts = " × ".join(f"{len(axis):,} {field}" for field, axis in values.items())
        loc = (max(values, key=lambda field: len(values[field])),)
        raise SpecError(
            [FieldIssue(loc, f"the grid has {counts} = {size:,} points, more than the {bounds.MAX_SWEEP_POINTS:,} "
                             "a sweep runs")]
        )  # fmt: skip
    for field in axes:
        for value in values[field]:
            try:
                AXES[field](value)
            except ValueError as error:
                issues.append(FieldIssue((field,), f"{value!r} {error}" if value else "empty value in the list"))
    if issues:
        raise SpecError(issues)
    fields = list(values)
    specs: list[CompareSpec] = []
    for combination in itertools.product(*(values[field] for field in fields)):
        point = dict(zip(fields, combination, strict=True))
        where = ", ".join(f"{field} {value}" for field, value in point.items())
        try:
            spec = parse_compare({**fixed, **point})
            kinds.plan(spec)
        except SpecError as error:
            for issue in error.issues:
                # a problem with a fixed option is the same at every point: say it once, without a point
                on_axis = bool(issue.loc) and issue.loc[0] in values
                located = replace(issue, message=f"at {where}: {issue.message}") if on_axis else issue
                if located not in issues:
                    issues.append(located)
            continue
        specs.append(spec)
    if issues:
        raise SpecError(issues)
    return specs


def points(comparison: Comparison) -> list[SweepPoint]:
    """One point per alternative of a comparison."""
    spec = comparison.spec
    dense = comparison.dense
    found = []
    for ratio, layer in zip(comparison.ratios, comparison.alternatives, strict=True):
        found.append(
            SweepPoint(
                cin=int(spec["cin"]),
                cout=int(spec["cout"]),
                kernel=dense.stages[0].kernel,
                size=(int(dense.input_shape[2]), int(dense.input_shape[3])),
                vs=layer.kind,
                params_ratio=ratio.params,
                macs_ratio=ratio.macs,
                speedup=ratio.latency,
                roofline_speedup=ratio.roofline,
                dense_ms=None if dense.latency is None else dense.latency.shown_ms,
                alternative_ms=None if layer.latency is None else layer.latency.shown_ms,
                dense_spread_pct=None if dense.latency is None else dense.latency.spread_pct,
                alternative_spread_pct=None if layer.latency is None else layer.latency.spread_pct,
                dense_verdict=_verdict(dense.roofline),
                alternative_verdict=_verdict(layer.roofline),
                ok=comparison.ok,
                speedup_low=ratio.latency_interval[0] if ratio.latency_interval else None,
                speedup_high=ratio.latency_interval[1] if ratio.latency_interval else None,
                speedup_typical=ratio.latency_typical,
                converged=ratio.latency_converged,
                busy=None if comparison.environment.contention is None else comparison.environment.contention.busy,
            )
        )
    return found


def _verdict(line: Roofline | None) -> str | None:
    return None if line is None or line.verdict is None else str(line.verdict)


def run(
    specs: Sequence[CompareSpec],
    axes: dict[str, str],
    fixed: dict[str, Any],
    settings: LatencySettings | None,
    calibration: Calibration | None = None,
    progress: Progress | None = None,
) -> Sweep:
    """Compare every spec (layers timed whole: stage timing is off for speed); returns the collected points."""
    from convcost.run.comparison import compare

    if settings is not None:
        settings = replace(settings, stages=False)
    found: list[SweepPoint] = []
    failures: list[str] = []
    environment: Environment | None = None
    interrupted = False
    try:
        for index, spec in enumerate(specs):
            if progress is not None:
                progress(index, len(specs), spec)
            comparison = compare(spec, settings, calibration)
            environment = comparison.environment
            found.extend(points(comparison))
            failures.extend(f"{describe(spec)}: {failure}" for failure in comparison.failures)
    except KeyboardInterrupt:
        if environment is None:  # nothing finished: nothing to report
            raise
        interrupted = True  # keep what was measured
    if environment is None:
        raise SpecError([FieldIssue(("cin",), "the grid is empty")])
    return Sweep(
        axes={field: split_axis(text) for field, text in axes.items()},
        fixed={key: value for key, value in fixed.items() if value is not None},
        environment=environment,
        points=found,
        failures=failures,
        interrupted=interrupted,
        planned=len(specs),
    )


def describe(spec: CompareSpec) -> str:
    """'8→64 3×3 @56×56' for a grid point."""
    (r, s), (h, w) = spec.kernel, spec.size
    return f"{spec.cin}→{spec.cout} {r}×{s} @{h}×{w}"
