"""Result dataclasses: plain data with ``to_dict()``; no rendering here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from convcost.cost.roofline import Calibration, Roofline, record
from convcost.cost.stats import Contention

# 2: latency objects gained best_ms, interval_ms, samples, sampled_s, converged; ratios gained latency_interval,
# latency_best, latency_typical; environment gained contention (the latency figure tables show is now best_ms)
# 3: environment.contention gained cpu_wait_fraction (the share of the time spent waiting for a CPU)
# 4: environment.contention gained host_spread and interval_covers (the intervals widened by calibrate's host term)
SCHEMA_VERSION = 4

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Check:
    """One number checked two ways; ``ok`` is derived: the formula's figure equals the measured one."""

    subject: str  # e.g. "separable.pointwise"
    quantity: str  # "output shape", "params", "MACs (FlopCounterMode)", ...
    expected: Any  # by formula
    found: Any  # by measurement
    explanation: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.found)

    def message(self) -> str:
        return f"{self.subject}: {self.quantity}: formula {_show(self.expected)}, measured {_show(self.found)}"

    def to_dict(self) -> dict[str, Any]:
        return record(self, "subject quantity expected found ok explanation")


def checks(
    subject: str,
    figures: list[tuple[str, Any, Any]],
    counters: tuple[int, int, int, int] | None = None,
    note: str = "",
    macs_ptflops: int | None = None,
) -> list[Check]:
    """The one checks builder: each (quantity, formula, measured) figure, then with ``counters`` = (MACs by
    formula, FlopCounterMode's, ptflops' raw figure, bias adds) the MACs against both counters; ptflops folds the
    bias adds into its figure, so it is compared less them. ``macs_ptflops``: our MACs for ptflops when they differ
    from FlopCounterMode's (each is ours over the ops that counter saw). ``note`` explains a FlopCounterMode
    difference."""
    found = [Check(subject, quantity, expected, measured) for quantity, expected, measured in figures]
    if counters is not None:
        macs, flop_counter, ptflops_raw, bias_adds = counters
        folded = f"ptflops folds {bias_adds:,} bias adds into its figure ({ptflops_raw:,})" if bias_adds else ""
        found += [Check(subject, "MACs (FlopCounterMode)", macs, flop_counter, note),
                  Check(subject, "MACs (ptflops)", macs if macs_ptflops is None else macs_ptflops,
                        ptflops_raw - bias_adds, folded)]  # fmt: skip
    return found


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "×".join(str(v) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class StageResult:
    """One conv stage: formula figures, measured figures and counter figures side by side."""

    name: str
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    bias: bool
    shared: bool
    norm: str
    act: str
    notes: list[str]
    input_shape: Shape
    weight_shape: Shape  # the weight the conv applies
    stored_weight_shape: Shape  # the trainable tensor (differs for a shared kernel)
    output_shape: Shape  # formula
    output_shape_measured: Shape | None
    params: int  # formula
    params_measured: int | None  # sum of numel over the stage's parameters
    macs: int  # formula
    macs_flop_counter: int | None  # FlopCounterMode's FLOPs ÷ 2
    macs_ptflops: int | None  # ptflops (aten backend) with its bias adds removed
    ptflops_raw: int | None  # ptflops' own figure (it folds bias adds in)
    bias_adds: int
    other_ops: int
    min_bytes: int
    # group g: output channels [g·out_per_group, (g+1)·out_per_group) read inputs [g·in_per_group, ...)
    channel_map: dict[str, int]  # {"groups", "out_per_group", "in_per_group"}
    latency: LatencyStats | None = None  # this stage timed on its own (multi-stage layers)
    roofline: Roofline | None = None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return record(self, "* flops")


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one module over interleaved rounds: best (low quantile) and typical (median), with intervals.

    The tables show ``best_ms`` (see :mod:`convcost.latency_stats`); ``interval_ms`` is its 95 % bootstrap interval.
    """

    median_ms: float  # typical: the median of the rounds
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    rounds: int
    calls: int  # timed calls in all rounds together
    best_ms: float | None = None  # the low quantile of the rounds (None: made by hand, without one)
    interval_ms: tuple[float, float] | None = None  # for best_ms, the figure the tables show
    typical_interval_ms: tuple[float, float] | None = None
    sampled_s: float = 0.0  # seconds of sampling for the whole measurement this case was part of
    converged: bool = False  # the stopping rule's intervals reached ±target_pct
    target_pct: float = 3.0
    stopped_by: str = ""  # "target", "time", "rounds" or "limit"

    @property
    def shown_ms(self) -> float:
        """The figure tables, ratios, rooflines and budgets use: best, else the median."""
        return self.median_ms if self.best_ms is None else self.best_ms

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @property
    def spread_pct(self) -> float:
        """Interquartile range of the round figures as a percentage of the median."""
        return 100.0 * self.iqr_ms / self.median_ms if self.median_ms else 0.0

    def to_dict(self) -> dict[str, Any]:
        shown = "best" if self.best_ms is not None else "median"
        return {**record(self), "samples": self.rounds, "shown": shown, **record(self, "iqr_ms spread_pct")}


@dataclass
class LayerResult:
    """The dense reference or one alternative: its stages, totals and checks."""

    kind: str
    stages: list[StageResult]
    input_shape: Shape
    output_shape: Shape
    output_shape_measured: Shape | None
    checks: list[Check] = field(default_factory=list)
    latency: LatencyStats | None = None
    roofline: Roofline | None = None  # the sum of its stages' (see convcost.cost.roofline)

    @property
    def params(self) -> int:
        return sum(stage.params for stage in self.stages)

    @property
    def params_measured(self) -> int | None:
        return _sum_or_none(stage.params_measured for stage in self.stages)

    @property
    def macs(self) -> int:
        return sum(stage.macs for stage in self.stages)

    @property
    def macs_flop_counter(self) -> int | None:
        return _sum_or_none(stage.macs_flop_counter for stage in self.stages)

    @property
    def macs_ptflops(self) -> int | None:
        return _sum_or_none(stage.macs_ptflops for stage in self.stages)

    @property
    def ptflops_raw(self) -> int | None:
        return _sum_or_none(stage.ptflops_raw for stage in self.stages)

    @property
    def bias_adds(self) -> int:
        return sum(stage.bias_adds for stage in self.stages)

    @property
    def other_ops(self) -> int:
        return sum(stage.other_ops for stage in self.stages)

    @property
    def min_bytes(self) -> int:
        return sum(stage.min_bytes for stage in self.stages)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            **record(self, _LAYER_KEYS),
            "checks": [check.to_dict() for check in self.checks if not check.ok],
            "stages": [stage.to_dict() for stage in self.stages],
        }


_LAYER_KEYS = (
    "kind input_shape output_shape output_shape_measured params params_measured macs macs_flop_counter macs_ptflops "
    "ptflops_raw flops bias_adds other_ops min_bytes latency roofline ok"
)


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    items = list(values)
    return None if None in items else sum(item or 0 for item in items)


@dataclass(frozen=True)
class Ratios:
    """Dense ÷ alternative, for one alternative."""

    vs: str
    params: float
    macs: float
    latency: float | None  # measured speedup; None without latency
    shape_match: bool
    textbook: float | None = None  # separable only: 1/(m/K + m/(R·S))
    bound: float | None = None  # separable only: R·S / m
    multiplier: int = 1
    roofline: float | None = None  # the speedup the roofline predicts: dense bound ÷ alternative bound
    latency_interval: tuple[float, float] | None = None  # for ``latency`` (the best figures' speedup)
    latency_best: float | None = None  # dense best ÷ alternative best (= latency)
    latency_typical: float | None = None  # dense median ÷ alternative median
    latency_typical_interval: tuple[float, float] | None = None
    latency_converged: bool | None = None  # the interval reached ±target

    def to_dict(self) -> dict[str, Any]:
        return record(self)


@dataclass
class Environment:
    torch: str
    convcost: str
    python: str
    platform: str
    device: str
    device_name: str
    threads: int
    dtype: str
    channels_last: bool = False
    allocator: str = "not tuned"
    calibration: Calibration | None = None  # the peaks the rooflines use (convcost calibrate)
    contention: Contention | None = None  # how busy the machine was while timing (None: no latency)

    def to_dict(self) -> dict[str, Any]:
        return record(self)


@dataclass
class Comparison:
    """The dense layer against each alternative: what ``convcost compare`` computes."""

    name: str | None
    spec: dict[str, Any]
    environment: Environment
    dense: LayerResult
    alternatives: list[LayerResult]
    ratios: list[Ratios]
    notes: list[str] = field(default_factory=list)
    measured: bool = True  # False: figures by formula only, nothing ran (convcost.run.comparison.estimate)

    @property
    def layers(self) -> list[LayerResult]:
        return [self.dense, *self.alternatives]

    @property
    def failures(self) -> list[str]:
        """Plain sentences for every shape mismatch and unexplained disagreement."""
        lines = [check.message() for layer in self.layers for check in layer.checks if not check.ok]
        for ratio, layer in zip(self.ratios, self.alternatives, strict=True):
            if not ratio.shape_match:
                lines.append(
                    f"{layer.kind}: output shape {_show(layer.output_shape)} differs from dense "
                    f"{_show(self.dense.output_shape)}"
                )
        return lines

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        names = "name spec measured environment ok failures dense alternatives ratios notes"
        return {"schema_version": SCHEMA_VERSION, **record(self, names)}


@dataclass(frozen=True)
class SweepPoint:
    """One grid point and one alternative of ``convcost sweep``: MAC ratio against measured speedup."""

    cin: int
    cout: int
    kernel: tuple[int, int]
    size: tuple[int, int]
    vs: str
    params_ratio: float
    macs_ratio: float
    speedup: float | None  # measured: dense latency ÷ alternative latency
    roofline_speedup: float | None  # predicted: dense bound ÷ alternative bound (with a calibration)
    dense_ms: float | None
    alternative_ms: float | None
    dense_spread_pct: float | None
    alternative_spread_pct: float | None
    dense_verdict: str | None
    alternative_verdict: str | None
    ok: bool
    speedup_low: float | None = None  # the speedup's 95 % interval (best figures)
    speedup_high: float | None = None
    speedup_typical: float | None = None  # dense median ÷ alternative median
    converged: bool | None = None  # the speedup's interval reached ±target
    busy: bool | None = None  # the probe saw a busy machine while this point was timed

    @property
    def efficiency(self) -> float | None:
        """Measured speedup as a fraction of the MAC ratio."""
        return None if self.speedup is None or not self.macs_ratio else self.speedup / self.macs_ratio

    def to_dict(self) -> dict[str, Any]:
        return record(self, "* efficiency")


@dataclass
class Sweep:
    """What ``convcost sweep`` computes: every grid point against every alternative, in one environment."""

    axes: dict[str, list[str]]  # flag → the values swept, as given
    fixed: dict[str, Any]  # the settings every point shares
    environment: Environment
    points: list[SweepPoint]
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C stopped the sweep: the points are those measured before it
    planned: int = 0  # grid points asked for
    # each grid point's comparison, in order (its full roofline, for --roofline; not in the JSON)
    comparisons: list[Comparison] = field(default_factory=list, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            **record(self, "axes fixed environment ok interrupted failures points"),
        }
