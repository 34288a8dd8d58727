"""A stand-in for the latency harness: every case "takes" the same stats, so fractions are known arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from convcost.cost.stats import Sampling
from convcost.results.comparison import LatencyStats
from convcost.run.latency import LatencyRun


def fixed_run(stats: LatencyStats) -> Callable[..., LatencyRun]:
    """A ``latency.measure_run`` replacement returning ``stats`` for every case, no pairs, no contention."""

    def measure_run(cases: dict[str, Any], settings: Any, *args: Any, **kwargs: Any) -> LatencyRun:
        return LatencyRun({name: stats for name in cases}, {}, None, Sampling({}, 0.0, True, "target"))

    return measure_run
