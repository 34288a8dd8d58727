"""The statistics of a latency measurement, in pure Python (no torch): intervals, stopping rule, contention.

Everything here works on *round* figures: one round times each case once, in a rotating order, plus the
reference probe (see :mod:`convcost.run.latency`). Round ``i`` of every case was taken within the same few
milliseconds, so the rounds are resampled as matched tuples: a bootstrap draws round indices with replacement and
applies the same draw to every case, which keeps a dense layer and its alternative paired.

* **best** is a low quantile (:data:`BEST_QUANTILE`) of the rounds, **typical** the median.
* The **interval** is a seeded percentile bootstrap over *stretches* of about √rounds consecutive rounds (a
  circular block bootstrap): on a shared host a neighbour slows a few hundred milliseconds of rounds at a time,
  and resampling single rounds would give an interval too narrow to cover the next window. It covers this run's
  window only; the **host term** (:func:`host_spread`, measured by ``calibrate``) adds, in quadrature
  (:func:`widen`), how far one window's figure may be off from the next's on this machine.
* **Stopping rule** (:func:`sample`): stop when every watched interval lies within ±target, else when
  ``max_time`` is spent; fewer than :data:`MIN_ROUNDS` rounds never count as converged.
* **Contention** (:func:`classify`) takes only evidence that a quiet machine does not produce: the share of the
  time spent *waiting for a CPU*, or the probe's rates below a calibration's (thresholds in the constants).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

BEST_QUANTILE = 0.1
CONFIDENCE = 0.95
RESAMPLES = 300
SEED = 0
MIN_ROUNDS = 30  # a 10 % quantile of fewer rounds sits on the two or three fastest: its bootstrap is too narrow
MAX_ROUNDS = 2000  # a guard against a clock that does not advance; ~250 rounds fill 2 s of real layers
CHECK_GROWTH = 1.3  # each stopping check comes after 30 % more rounds than the previous one
# the probe's median below half the calibration's: on a quiet 2-vCPU VM the copy ran at 62–86 % of it (the
# host's memory is shared with other VMs) and the matmul at 98–119 %, so a line at 80 % fired on 2 runs in 5
BUSY_FRACTION = 0.5
# waiting for a CPU: quiet runs waited 0–4 % of their time (the shell, the kernel's own threads), runs beside a
# process on the same core about 50 %: the line sits well clear of both
BUSY_CPU_WAIT = 0.15
OWN_BEST_QUANTILE = 0.9  # "this run's best" probe rate: a high quantile, not the single luckiest round
COPY = "probe.copy"
MATMUL = "probe.matmul"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation between order statistics (numpy's default)."""
    return _sorted_quantile(sorted(values), q)


def _sorted_quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Estimate:
    """A best (low quantile) and a typical (median) figure, each with its bootstrap interval: a case's seconds, or
    a pair's speedup (reference ÷ other) from best figures and from typical figures."""

    best: float
    typical: float
    best_interval: tuple[float, float]
    typical_interval: tuple[float, float]


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom > 0 else math.inf


def block_length(count: int) -> int:
    """Consecutive rounds resampled together: about √count (1 for a handful), so both the blocks and their
    number grow with the run."""
    return max(1, math.isqrt(count))


def block_picks(generator: random.Random, count: int, block: int) -> list[int]:
    """One circular block resample of ``count`` round indices: blocks of ``block`` consecutive rounds, each
    starting anywhere (wrapping round the end, so the last rounds are drawn as often as the middle ones)."""
    picks: list[int] = []
    while len(picks) < count:
        start = generator.randrange(count)
        picks.extend((start + offset) % count for offset in range(block))
    return picks[:count]


def summarize(
    rounds: Mapping[str, Sequence[float]],
    pairs: Sequence[tuple[str, str]] = (),
    cases: Sequence[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    block: int | None = None,
) -> tuple[dict[str, Estimate], dict[tuple[str, str], Estimate]]:
    """Estimates of ``cases`` (default: all) and of each ``(reference, other)`` pair, by a matched block bootstrap.

    Every series must hold the same number of rounds, in the order taken; round ``i`` of each is resampled
    together, in stretches of ``block`` consecutive rounds (default :func:`block_length`; 1: single rounds).
    """
    names = list(cases) if cases is not None else list(rounds)
    for reference, other in pairs:
        for name in (reference, other):
            if name not in names:
                names.append(name)
    lengths = {len(rounds[name]) for name in names}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every case needs the same, non-zero number of rounds, got {sorted(lengths)}")
    count = lengths.pop()
    block = block_length(count) if block is None else max(1, min(block, count))
    points = {name: (quantile(rounds[name], BEST_QUANTILE), quantile(rounds[name], 0.5)) for name in names}
    draws: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    generator = random.Random(seed)
    for _ in range(resamples):
        picks = block_picks(generator, count, block)
        for name in names:
            series = rounds[name]
            ordered = sorted(series[index] for index in picks)
            draws[name].append((_sorted_quantile(ordered, BEST_QUANTILE), _sorted_quantile(ordered, 0.5)))
    estimates = {
        name: Estimate(
            points[name][0],
            points[name][1],
            _percentiles([draw[0] for draw in draws[name]]),
            _percentiles([draw[1] for draw in draws[name]]),
        )
        for name in names
    }
    ratios = {}
    for reference, other in pairs:
        matched = list(zip(draws[reference], draws[other], strict=True))
        ratios[(reference, other)] = Estimate(
            _ratio(points[reference][0], points[other][0]),
            _ratio(points[reference][1], points[other][1]),
            _percentiles([_ratio(top[0], bottom[0]) for top, bottom in matched]),
            _percentiles([_ratio(top[1], bottom[1]) for top, bottom in matched]),
        )
    return estimates, ratios


def _percentiles(values: list[float]) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2
    ordered = sorted(values)
    return _sorted_quantile(ordered, tail), _sorted_quantile(ordered, 1 - tail)


# Student's t, 97.5 % quantile, by degrees of freedom: the host term's prediction half-width over a few windows
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def host_spread(window_figures: Sequence[float]) -> float | None:
    """The relative 95 % half-width within which the next window's figure falls, from ``window_figures``
    (one figure per short window, e.g. the median of the probe's copy ÷ matmul ratio): Student's t prediction
    interval on their logarithms, ``t · s · √(1 + 1/k)``, as a fraction. None from fewer than two windows."""
    logs = [math.log(value) for value in window_figures if value > 0 and math.isfinite(value)]
    count = len(logs)
    if count < 2:
        return None
    mean = sum(logs) / count
    deviation = math.sqrt(sum((value - mean) ** 2 for value in logs) / (count - 1))
    return math.expm1(T_975[min(count - 1, max(T_975))] * deviation * math.sqrt(1 + 1 / count))


def _widened(point: float, interval: tuple[float, float], spread: float) -> tuple[float, float]:
    low, high = interval
    extra = spread * point
    # a time or a ratio is never negative, however wide the host term makes its interval
    return max(0.0, point - math.hypot(point - low, extra)), point + math.hypot(high - point, extra)


def widen(estimate: Estimate, spread: float | None) -> Estimate:
    """``estimate`` with each interval's half-widths combined in quadrature with ``spread`` × its point (the host
    term, a fraction); unchanged when ``spread`` is None or not positive."""
    if spread is None or not spread > 0 or not math.isfinite(spread):
        return estimate
    return Estimate(
        estimate.best,
        estimate.typical,
        _widened(estimate.best, estimate.best_interval, spread),
        _widened(estimate.typical, estimate.typical_interval, spread),
    )


def within(interval: tuple[float, float], point: float, target: float) -> bool:
    """Whether ``interval`` lies inside point × (1 ± target): both ends, so a lopsided interval must also fit."""
    low, high = interval
    return point * (1 - target) <= low and high <= point * (1 + target)


@dataclass(frozen=True)
class SamplingPlan:
    """When to stop: ±``target`` (a fraction), ``max_time`` seconds, or exactly ``rounds`` rounds when given."""

    target: float = 0.03
    max_time: float = 2.0
    rounds: int | None = None  # fixed: exactly this many rounds, no stopping rule
    min_rounds: int = MIN_ROUNDS


@dataclass
class Sampling:
    """The rounds taken and why sampling stopped."""

    rounds: dict[str, list[float]]
    sampled_s: float
    converged: bool
    stopped_by: str  # "target", "time", "rounds" or "limit"
    checks: int = 0  # stopping checks made (each one a bootstrap)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(next(iter(self.rounds.values()), []))


def is_converged(
    rounds: Mapping[str, Sequence[float]],
    pairs: Sequence[tuple[str, str]],
    watched: Sequence[str],
    target: float,
    resamples: int = RESAMPLES,
) -> bool:
    """The stopping rule: every pair's best speedup (or, without pairs, every watched best) within ±target."""
    estimates, ratios = summarize(rounds, pairs, cases=[] if pairs else watched, resamples=resamples)
    if pairs:
        return all(within(item.best_interval, item.best, target) for item in ratios.values())
    return all(within(estimates[name].best_interval, estimates[name].best, target) for name in watched)


def sample(
    take_round: Callable[[int], Mapping[str, float]],
    plan: SamplingPlan,
    pairs: Sequence[tuple[str, str]],
    watched: Sequence[str],
    clock: Callable[[], float],
    started: float | None = None,
) -> Sampling:
    """Take rounds (``take_round(i)`` → seconds per case) until the plan says stop; ``clock`` reads seconds.

    ``max_time`` bounds the whole measurement: from ``started`` (a reading of ``clock`` taken before the warm-up;
    default now) to the end, the stopping checks and the closing judgement included. Sampling stops while the
    time left still covers one more round and three times the last check: the judgement after it and the
    caller's summary, each a bootstrap over up to 30 % more rounds than that check.
    """
    rounds: dict[str, list[float]] = {}
    first = clock()
    start = first if started is None else started
    next_check = plan.min_rounds
    checks = 0
    stopped_by = "limit"
    converged = False
    index = 0
    reserve = 0.0  # seconds the closing bootstraps will take: three times the last check
    while index < MAX_ROUNDS:
        before_round = clock()
        for name, seconds in take_round(index).items():
            rounds.setdefault(name, []).append(seconds)
        index += 1
        last_round = clock() - before_round
        if plan.rounds is not None:
            if index >= plan.rounds:
                stopped_by = "rounds"
                break
            continue
        if index >= next_check:
            checks += 1
            before = clock()
            if is_converged(rounds, pairs, watched, plan.target):
                converged, stopped_by = True, "target"
                break
            reserve = 3 * (clock() - before)
            next_check = max(index + 1, math.ceil(index * CHECK_GROWTH))
        if clock() - start + last_round + reserve >= plan.max_time:
            stopped_by = "time"
            break
    if not converged and index >= plan.min_rounds:
        # judged the same way at the end: the rounds since the last check may have brought it within target; fewer
        # than min_rounds never count as converged (a low quantile of a handful of rounds bootstraps too narrow)
        checks += 1
        converged = is_converged(rounds, pairs, watched, plan.target)
    sampled = clock() - first  # the sampling itself, as reported; the budget also counted the warm-up
    return Sampling(rounds, sampled, converged, stopped_by, checks)


@dataclass(frozen=True)
class Contention:
    """How busy the machine was while it measured: the time spent waiting for a CPU, and the reference probe."""

    busy: bool
    memory_fraction: float | None  # the probe copy's median rate ÷ the reference rate
    compute_fraction: float | None  # the probe matmul's median rate ÷ the reference rate
    note: str
    reference: str  # "calibration" or "this run's best"
    slowdown: float | None = None  # the largest typical ÷ best of the timed layers (reported, not evidence)
    cpu_wait_fraction: float | None = None  # share of the time the measuring threads waited for a CPU
    host_spread: float | None = None  # the host term the intervals were widened by (None: this window only)

    @property
    def interval_covers(self) -> str:
        if self.host_spread is None:
            return "this window's sampling noise only"
        return (
            f"this window's sampling noise plus the window-to-window variation calibrate measured on this machine "
            f"(±{self.host_spread:.1%})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval_covers": self.interval_covers}


def classify(
    copy_rates: Sequence[float],
    matmul_rates: Sequence[float],
    reference_copy: float | None = None,
    reference_matmul: float | None = None,
    slowdowns: Mapping[str, float] | None = None,
    during: str = "the measurement",
    cpu_wait: float | None = None,
) -> Contention:
    """Busy or quiet, from the time spent waiting for a CPU and the probe's rates (per round) against the
    calibration's (else this run's best, which is reported but is no evidence on its own).

    ``cpu_wait``: the share of the time the measuring threads were runnable but not running (None: unknown).
    ``slowdowns`` (case → typical ÷ best) names the layers that suffered most when the machine was busy.
    """
    calibrated = reference_copy is not None and reference_matmul is not None
    fractions: list[float | None] = []
    for rates, reference in ((copy_rates, reference_copy), (matmul_rates, reference_matmul)):
        if not rates:
            fractions.append(None)
            continue
        base = reference if calibrated and reference is not None else quantile(rates, OWN_BEST_QUANTILE)
        fractions.append(quantile(rates, 0.5) / base if base > 0 else None)
    memory, compute = fractions
    source = "calibrated" if calibrated else "this run's best"
    worst_slowdown = max((slowdowns or {}).values(), default=None)
    waited = cpu_wait is not None and cpu_wait >= BUSY_CPU_WAIT
    # this run's own best is no evidence: a quiet machine's probe already strays to 70 % of it
    slow_probe = calibrated and any(value is not None and value < BUSY_FRACTION for value in fractions)
    busy = waited or slow_probe
    levels = []
    if cpu_wait is not None:
        levels.append(f"waited for a CPU {cpu_wait:.0%} of the time")
    if memory is not None:
        levels.append(f"memory bandwidth at {memory:.0%} of {source}")
    if compute is not None:
        levels.append(f"compute at {compute:.0%}")
    measured = ", ".join(levels) if levels else "no probe"
    if busy:
        worst = sorted((slowdowns or {}).items(), key=lambda item: -item[1])[:2]
        suffer = "; ".join(f"{name} typical {value:.2f}× its best" for name, value in worst)
        note = f"The machine was busy during {during} ({measured})"
        if waited:
            note += ": another process shared the CPU"
        if during == "the measurement":
            note += "; the typical figures include its neighbours"
        note += f"; slowed most: {suffer}." if suffer else "."
    else:
        note = f"The machine looked quiet during {during} ({measured})."
    if not calibrated and during == "the measurement" and not busy:
        note += (
            " (No calibration of this machine: the probe is compared with its own best, so load on other cores "
            "that slows the run steadily does not show; run calibrate on a quiet machine.)"
        )
    against = "calibration" if calibrated else "this run's best"
    return Contention(busy, memory, compute, note, against, worst_slowdown, cpu_wait)
