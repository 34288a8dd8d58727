"""``convcost sweep``: compare over a grid of cin × cout × kernel × size; MAC ratio against measured speedup.

The grid (validated by :mod:`convcost.spec.sweep`) is compared point by point (counters checked as for
``compare``); within a point the dense layer and its alternatives are timed in interleaved rounds, so a
speedup is never a ratio of two timings taken far apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from convcost.cost.roofline import Calibration, Roofline
from convcost.errors import FieldIssue, SpecError
from convcost.results.comparison import Comparison, Sweep, SweepPoint
from convcost.spec.compare import CompareSpec
from convcost.spec.sweep import describe, split_axis

if TYPE_CHECKING:
    from convcost.run.latency import LatencySettings

Progress = Callable[[int, int, CompareSpec], None]


def points(comparison: Comparison) -> list[SweepPoint]:
    """One point per alternative of a comparison."""
    spec = comparison.spec
    dense = comparison.dense
    return [
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
        for ratio, layer in zip(comparison.ratios, comparison.alternatives, strict=True)
    ]


def _verdict(line: Roofline | None) -> str | None:
    return None if line is None or line.verdict is None else str(line.verdict)


def run(
    specs: Sequence[CompareSpec],
    axes: dict[str, str],
    fixed: dict[str, Any],
    settings: LatencySettings | None,
    calibration: Calibration | None = None,
    progress: Progress | None = None,
    *,
    measure: bool = True,
    threads: int | None = None,
) -> Sweep:
    """Compare every spec (layers timed whole: stage timing is off for speed); returns the collected points.

    Without ``measure``, by formula alone (torch is never imported; ``threads`` is only recorded).
    """
    from convcost.run.context import RunContext
    from convcost.run.estimate import estimate

    RunContext(threads=1 if threads is None else threads)  # a bad count: SpecError, by formula alone too
    if measure:
        from convcost.run.comparison import compare
    if settings is not None:
        settings = replace(settings, stages=False)
    comparisons: list[Comparison] = []
    failures: list[str] = []
    interrupted = False
    try:
        for index, spec in enumerate(specs):
            if progress is not None:
                progress(index, len(specs), spec)
            comparison = compare(spec, settings, calibration, threads) if measure else estimate(spec, threads or 1)
            comparisons.append(comparison)
            failures.extend(f"{describe(spec)}: {failure}" for failure in comparison.failures)
    except KeyboardInterrupt:
        if not comparisons:  # nothing finished: nothing to report
            raise
        interrupted = True  # keep what was measured
    if not comparisons:
        raise SpecError([FieldIssue(("cin",), "the grid is empty")])
    return Sweep(
        axes={field: split_axis(text) for field, text in axes.items()},
        fixed={key: value for key, value in fixed.items() if value is not None},
        environment=comparisons[-1].environment,
        points=[point for comparison in comparisons for point in points(comparison)],
        failures=failures,
        interrupted=interrupted,
        planned=len(specs),
        comparisons=comparisons,
    )
