"""A roofline per stage: why a layer with R·S times fewer MACs is not R·S times faster. Pure Python, no torch.

The model, stated once:

* A stage or layer moves at least ``min_bytes``: every operation in it that really reads and writes memory (conv,
  norm, activation, pool, add, linear) reads its input(s) and parameters once and writes its output once, at the
  dtype's size; views (flatten, identity) move nothing: :func:`convcost.cost.ops.moved_elements`, the one rule of
  ``compare``'s stages (their conv, norm and activation ops) and ``model``'s layers. A stage does
  ``FLOPs = 2 × MACs``; its **arithmetic intensity** is FLOPs per byte.
* With a :class:`Calibration` of this machine (``convcost calibrate``: a large matmul's FLOP/s, a large copy's
  bytes/s and the cost of one tiny module call), the stage cannot run faster than its **roofline bound**
  ``max(FLOPs / peak FLOP/s, bytes / peak bytes/s)``. The fraction achieved is ``bound ÷ measured latency``.
* The **verdict**: *overhead-bound* when the per-call cost of its operations (:func:`overhead_s`: each operation
  is one eager call at the dense call's cost, except a grouped or depthwise conv with a spatial kernel, which
  costs a grouped call, measured apart because its fixed cost is several times a dense conv's) is at least the
  bound: the work is too small to matter.
  Otherwise *compute-bound* when compute time ≥ memory time, else *memory-bound*.
* A layer of several stages runs them one after the other, so its compute, memory, overhead and bound times are
  the sums of its stages'; its verdict compares those sums the same way.
* A fraction above 100 % means the data stayed in cache between timed calls: the copy peak is measured on
  buffers far larger than any cache, so a small layer can beat it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import Enum, StrEnum
from typing import Any


def record(obj: Any, names: str = "*") -> dict[str, Any]:
    """A result's JSON record: its attributes ``names`` (space-separated; ``*``: every dataclass field, in order), with
    tuples as lists, enums as their values, results by their ``to_dict()`` and lists item by item."""
    keys = [key for name in names.split() for key in ([f.name for f in fields(obj)] if name == "*" else [name])]
    return {key: _plain(getattr(obj, key)) for key in keys}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value.to_dict() if hasattr(value, "to_dict") else value


class RooflineBound(StrEnum):
    """What limits a stage or layer by the roofline model (a roofline's ``verdict``; not a budget's verdict)."""

    COMPUTE = "compute-bound"
    MEMORY = "memory-bound"
    OVERHEAD = "overhead-bound"

    @property
    def short(self) -> str:
        return self.value.split("-")[0]


@dataclass(frozen=True)
class Calibration:
    """This machine's peaks for one (device, dtype, threads), as ``convcost calibrate`` measured them."""

    machine: str
    torch: str
    device: str
    dtype: str
    threads: int
    peak_flops: float  # FLOP/s of a large matmul
    peak_bandwidth: float  # bytes/s of a large copy (bytes read + bytes written)
    call_overhead_s: float  # one call of a 1×1 conv module on a 1×1×1×1 tensor
    matmul_size: int  # n of the n×n matmul that gave the peak
    copy_bytes: int  # bytes of the buffer copied
    measured_at: str  # ISO 8601, UTC
    allocator: str
    # one call of a 3×3 depthwise conv on a 1×2×3×3 tensor: grouped convs take another code path whose fixed cost
    # is several times a dense conv's on CPUs (about 90 µs against 13 µs with torch 2.13 on x86)
    grouped_call_overhead_s: float | None = None
    # CUDA: whether the matmul ran with TF32 (as cuDNN convs do by default: torch.backends.cudnn.allow_tf32)
    matmul_tf32: bool | None = None
    # the latency harness's reference probe (convcost.run.latency.Probe) on this machine when calibrated: what quiet is
    probe_bandwidth: float | None = None  # bytes/s of the probe copy (median of its rounds)
    probe_flops: float | None = None  # FLOP/s of the probe matmul (median of its rounds)
    # 95 % intervals of the peaks, from the spread of their timed blocks
    peak_flops_interval: tuple[float, float] | None = None
    peak_bandwidth_interval: tuple[float, float] | None = None
    call_overhead_interval: tuple[float, float] | None = None  # seconds, of call_overhead_s
    grouped_call_overhead_interval: tuple[float, float] | None = None  # seconds, of grouped_call_overhead_s
    # the host term (convcost.cost.stats.host_spread): relative 95 % half-width of the probe's copy ÷ matmul ratio
    # between host_windows short windows spread over the calibration; latency intervals are widened by it
    host_spread: float | None = None
    host_windows: int | None = None
    busy: bool = False  # the machine looked busy while calibrating (see contention_note)
    contention_note: str = ""

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) at which compute time equals memory time."""
        return self.peak_flops / self.peak_bandwidth

    @property
    def key(self) -> str:
        return cache_key(self.machine, self.torch, self.device, self.dtype, self.threads)

    def to_dict(self) -> dict[str, Any]:
        return record(self, "* ridge")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """The inverse of :meth:`to_dict`; raises KeyError, TypeError or ValueError on a malformed entry.

        Every peak and cost must be a positive, finite number: a zero peak would divide by zero in every bound.
        And a physically plausible one (:data:`PLAUSIBLE`): a peak of 1e-300 FLOP/s would give 150-digit bounds.
        """
        if not isinstance(data, dict):
            raise TypeError(f"an entry is a mapping, got {type(data).__name__}")
        return cls(
            machine=str(data["machine"]),
            torch=str(data["torch"]),
            device=str(data["device"]),
            dtype=str(data["dtype"]),
            threads=_positive_int(data, "threads"),
            peak_flops=_plausible(data, "peak_flops"),
            peak_bandwidth=_plausible(data, "peak_bandwidth"),
            call_overhead_s=_plausible(data, "call_overhead_s"),
            matmul_size=_positive_int(data, "matmul_size"),
            copy_bytes=_positive_int(data, "copy_bytes"),
            measured_at=str(data["measured_at"]),
            allocator=str(data["allocator"]),
            grouped_call_overhead_s=None
            if data.get("grouped_call_overhead_s") is None
            else _plausible(data, "grouped_call_overhead_s"),
            matmul_tf32=_optional_bool(data.get("matmul_tf32")),
            probe_bandwidth=None if data.get("probe_bandwidth") is None else _positive(data, "probe_bandwidth"),
            probe_flops=None if data.get("probe_flops") is None else _positive(data, "probe_flops"),
            peak_flops_interval=_optional_interval(data.get("peak_flops_interval")),
            peak_bandwidth_interval=_optional_interval(data.get("peak_bandwidth_interval")),
            call_overhead_interval=_optional_interval(data.get("call_overhead_interval")),
            grouped_call_overhead_interval=_optional_interval(data.get("grouped_call_overhead_interval")),
            host_spread=None if data.get("host_spread") is None else _positive(data, "host_spread", zero=True),
            host_windows=None if data.get("host_windows") is None else _positive_int(data, "host_windows"),
            busy=bool(_optional_bool(data.get("busy"))),
            contention_note=str(data.get("contention_note") or ""),
        )

    def conv_call_s(self, grouped: bool) -> float:
        """The fixed cost of one conv call: a grouped (spatial) conv's where measured, else a dense conv's."""
        if grouped and self.grouped_call_overhead_s is not None:
            return self.grouped_call_overhead_s
        return self.call_overhead_s


def _positive(data: dict[str, Any], key: str, zero: bool = False) -> float:
    """A positive finite number; ``zero``: a relative spread, a finite fraction of at least 0. No upper limit: on a
    busy machine two windows can differ by several times (a spread of 13 was measured here under load), and what
    calibrate measured it must read back."""
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        what = "a finite fraction of at least 0" if zero else "a positive finite number"
        raise ValueError(f"{key} must be {what}, got {value!r}")
    return float(value)


# What a real machine can measure, with orders of magnitude to spare either way: from a slow embedded CPU
# (a MFLOP/s, a MB/s) to well past today's largest GPU (about 1e15 FLOP/s and 5e12 B/s on an H200), and a call
# cost from 10 ns to a second. A cached figure outside is a broken cache, not a machine.
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "peak_flops": (1e6, 1e18, "FLOP/s"),
    "peak_bandwidth": (1e6, 1e15, "bytes/s"),
    "call_overhead_s": (1e-8, 1.0, "s"),
    "grouped_call_overhead_s": (1e-8, 1.0, "s"),
}


def _plausible(data: dict[str, Any], key: str) -> float:
    value = _positive(data, key)
    low, high, unit = PLAUSIBLE[key]
    if not low <= value <= high:
        raise ValueError(f"{key} {value:g} {unit} is not plausible (a real machine measures {low:g} to {high:g})")
    return value


def _positive_int(data: dict[str, Any], key: str) -> int:
    value = _positive(data, key)
    if value != int(value):
        raise ValueError(f"{key} must be a whole number, got {data[key]!r}")
    return int(value)


def _optional_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"matmul_tf32 must be true, false or null, got {value!r}")


def _optional_interval(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
    ):
        raise TypeError(f"an interval is [low, high], got {value!r}")
    return float(value[0]), float(value[1])


def overhead_s(calibration: Calibration, grouped_convs: int, other_calls: int) -> float:
    """The per-call cost of a stage or layer: a grouped conv call per grouped (spatial) conv, a dense call per other op.

    A grouped conv is one with groups > 1 and a kernel larger than 1×1 (depthwise 3×3, grouped 3×3): torch runs
    those through a code path whose fixed cost is several times a dense conv's.
    """
    return grouped_convs * calibration.conv_call_s(True) + other_calls * calibration.call_overhead_s


def is_grouped_call(groups: int, kernel: tuple[int, ...]) -> bool:
    """Whether a conv pays the grouped call cost (see :func:`overhead_s`)."""
    return groups > 1 and any(extent != 1 for extent in kernel)


def cache_key(machine: str, torch: str, device: str, dtype: str, threads: int) -> str:
    """The cache key of a calibration: one per machine, torch version, device, dtype and (CPU) thread count.

    CPU threads do not change a GPU's peaks, so a CUDA key leaves them out.
    """
    if device == "cuda":
        return f"{machine} | torch {torch} | {device} | {dtype}"
    return f"{machine} | torch {torch} | {device} | {dtype} | {threads} thread{'s' if threads != 1 else ''}"


@dataclass(frozen=True)
class Roofline:
    """Bytes, intensity and achieved rates of a stage or layer; bounds and verdict when calibrated."""

    macs: int
    flops: int
    min_bytes: int
    intensity: float  # FLOP per byte
    calls: int  # eager module calls (conv, norm, activation)
    latency_ms: float | None = None
    gmacs_per_s: float | None = None  # achieved
    gbytes_per_s: float | None = None  # achieved, of min_bytes
    compute_ms: float | None = None
    memory_ms: float | None = None
    overhead_ms: float | None = None
    bound_ms: float | None = None  # max(compute, memory); a layer's is the sum of its stages'
    fraction: float | None = None  # bound ÷ measured latency
    verdict: RooflineBound | None = None

    def to_dict(self) -> dict[str, Any]:
        return record(self)


def classify(compute_ms: float, memory_ms: float, overhead_ms: float, bound_ms: float) -> RooflineBound:
    """Overhead-bound when per-call cost ≥ the bound, else whichever of compute and memory takes longer."""
    if overhead_ms >= bound_ms:
        return RooflineBound.OVERHEAD
    return RooflineBound.COMPUTE if compute_ms >= memory_ms else RooflineBound.MEMORY


def _unbound(macs: int, min_bytes: int, calls: int, latency_ms: float | None) -> Roofline:
    """A roofline without bounds: bytes, intensity and the achieved rates."""
    flops = 2 * macs
    gmacs: float | None = None
    gbytes: float | None = None
    if latency_ms is not None and latency_ms > 0:
        seconds = latency_ms / 1e3
        gmacs, gbytes = macs / seconds / 1e9, min_bytes / seconds / 1e9
    return Roofline(macs, flops, min_bytes, flops / min_bytes if min_bytes else 0.0, calls, latency_ms, gmacs, gbytes)


def analyse(
    macs: int,
    min_bytes: int,
    latency_ms: float | None,
    calibration: Calibration | None,
    calls: int = 1,
    overhead_s: float | None = None,
) -> Roofline:
    """The roofline of one stage: FLOPs = 2·MACs against ``min_bytes``; bounds only with a calibration.

    The per-call cost is ``overhead_s`` when given, else ``calls`` times the calibrated cost of one call.
    """
    base = _unbound(macs, min_bytes, calls, latency_ms)
    if calibration is None:
        return base
    compute_ms = base.flops / calibration.peak_flops * 1e3
    memory_ms = min_bytes / calibration.peak_bandwidth * 1e3
    overhead_ms = (calls * calibration.call_overhead_s if overhead_s is None else overhead_s) * 1e3
    bound_ms = max(compute_ms, memory_ms)
    return _with_bounds(base, compute_ms, memory_ms, overhead_ms, bound_ms)


def _with_bounds(base: Roofline, compute_ms: float, memory_ms: float, overhead_ms: float, bound_ms: float) -> Roofline:
    return replace(
        base,
        compute_ms=compute_ms,
        memory_ms=memory_ms,
        overhead_ms=overhead_ms,
        bound_ms=bound_ms,
        fraction=bound_ms / base.latency_ms if base.latency_ms else None,
        verdict=classify(compute_ms, memory_ms, overhead_ms, bound_ms),
    )


def combine(stages: list[Roofline], latency_ms: float | None) -> Roofline:
    """A layer's roofline: its stages run one after another, so every count and time adds up."""
    macs = sum(stage.macs for stage in stages)
    min_bytes = sum(stage.min_bytes for stage in stages)
    base = _unbound(macs, min_bytes, sum(stage.calls for stage in stages), latency_ms)
    if not stages or any(stage.bound_ms is None for stage in stages):
        return base

    def total(name: str) -> float:
        return sum(float(getattr(stage, name)) for stage in stages)

    return _with_bounds(base, total("compute_ms"), total("memory_ms"), total("overhead_ms"), total("bound_ms"))


def predicted_speedup(reference: Roofline | None, alternative: Roofline | None) -> float | None:
    """The speedup the roofline predicts (None without calibration).

    Each side's time is its bound max(compute, memory), or its per-call cost when that is larger: a tiny layer
    cannot run faster than the calls it makes, so the prediction must not promise it will.
    """
    if reference is None or alternative is None or reference.bound_ms is None or alternative.bound_ms is None:
        return None
    reference_ms = max(reference.bound_ms, reference.overhead_ms or 0.0)
    alternative_ms = max(alternative.bound_ms, alternative.overhead_ms or 0.0)
    return reference_ms / alternative_ms if alternative_ms > 0 else None
