"""Measure this machine's peaks once and cache them: the roofline's ceilings (see :mod:`convcost.cost.roofline`).

* **Compute**: the FLOP/s of an n×n matmul, n growing over :data:`MATMUL_SIZES` until one call takes longer than
  :data:`SLOW_CALL_S` (bfloat16 matmuls on a CPU without bf16 units run at about 1 GFLOP/s, so a fixed 2048 would
  take a minute); the best rate wins.
* **Memory**: the bandwidth of ``dst.copy_(src)`` on a buffer far larger than any cache, counting the bytes read
  plus the bytes written, the same convention as ``min_bytes``.
* **Per call**: one call of a 1×1 conv module on a 1×1×1×1 tensor, the fixed cost every stage pays; and one call
  of a 3×3 depthwise conv on a 1×2×3×3 tensor, because grouped convs take another, costlier code path.

All three run on the chosen device, dtype and thread count, with the allocator tuned as for latency (on CUDA the
matmul with the convs' TF32 setting: :func:`matmul_tf32`); the cache they go to is :mod:`convcost.run.cache`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
from torch import nn

from convcost.cost.roofline import Calibration
from convcost.cost.stats import COPY, MATMUL, Contention, classify, host_spread, quantile, summarize
from convcost.run import latency
from convcost.run.cache import (  # noqa: F401 (the cache's names, re-exported for callers of old)
    CalibrationCacheError,
    _check_storable,
    cached,
    key_for,
    machine_name,
    store,
)
from convcost.run.context import RunContext
from convcost.spec.compare import DType
from convcost.spec.files import cache_dir, cache_path  # noqa: F401 (re-exported, as above)

MATMUL_SIZES = (256, 512, 1024, 2048, 4096, 8192)
SLOW_CALL_S = 0.1


@dataclass(frozen=True)
class CalibrationSettings:
    """How hard to measure; the defaults take a few seconds on a CPU (tests shrink them)."""

    max_matmul: int = 2048  # 8192 on CUDA (see :func:`default_settings`)
    copy_bytes: int = 256 << 20
    min_time: float = 0.25  # seconds of timed calls per measurement
    # rounds of the latency probe in each of five windows before, between and after the peaks (each round a few
    # ms): their medians give the probe's quiet rates and, window against window, the host term (``host_spread``)
    probe_rounds: int = 15


def default_settings(device: str) -> CalibrationSettings:
    if device == "cuda":
        return CalibrationSettings(max_matmul=8192, copy_bytes=1 << 30)
    return CalibrationSettings()


def measure_peaks(device: str, dtype: DType, threads: int, settings: CalibrationSettings | None = None) -> Calibration:
    """Measure the matmul FLOP/s, copy bandwidth and per-call cost of this machine (takes seconds)."""
    from convcost.run.build import TORCH_DTYPES
    from convcost.run.measure import check_device

    check_device(device)
    settings = settings or default_settings(device)
    torch_dtype = TORCH_DTYPES[dtype]
    tf32 = matmul_tf32(device)
    # timed as compare times: on ``threads``, glibc's heap tuned; both restored after (the run context)
    with RunContext(device, dtype, threads, latency.LatencySettings()).applied(), torch.no_grad():
        allocator = latency.allocator_state()
        waited, wall = latency.cpu_wait_seconds(), time.perf_counter()
        probe = _ProbeRounds(device, threads)
        probe.take(settings.probe_rounds)
        with _matmul_precision(tf32):
            peak_flops, matmul_size, flops_interval = _matmul_peak(device, torch_dtype, threads, settings)
        probe.take(settings.probe_rounds)
        peak_bandwidth, bandwidth_interval = _copy_bandwidth(device, torch_dtype, threads, settings)
        probe.take(settings.probe_rounds)
        overhead, overhead_interval = _call_overhead(device, torch_dtype, threads, settings)
        probe.take(settings.probe_rounds)
        grouped_overhead, grouped_interval = _call_overhead(device, torch_dtype, threads, settings, grouped=True)
        probe.take(settings.probe_rounds)
        contention = probe.contention(latency.cpu_wait_fraction(waited, time.perf_counter() - wall, threads))
    return Calibration(
        machine=machine_name(device),
        torch=torch.__version__,
        device=device,
        dtype=str(dtype),
        threads=threads,
        peak_flops=peak_flops,
        peak_bandwidth=peak_bandwidth,
        call_overhead_s=overhead,
        matmul_size=matmul_size,
        copy_bytes=_copy_elements(settings, torch_dtype) * torch_dtype.itemsize,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        allocator=allocator,
        grouped_call_overhead_s=grouped_overhead,
        matmul_tf32=tf32,
        probe_bandwidth=probe.median(COPY),
        probe_flops=probe.median(MATMUL),
        peak_flops_interval=flops_interval,
        peak_bandwidth_interval=bandwidth_interval,
        call_overhead_interval=overhead_interval,
        grouped_call_overhead_interval=grouped_interval,
        host_spread=host_spread(probe.window_ratios),
        host_windows=len(probe.window_ratios),
        busy=contention.busy,
        contention_note=contention.note,
    )


class _ProbeRounds:
    """The latency harness's reference probe, in rounds spread over the calibration (before, between, after).

    Its median rates become the calibration's ``probe_*`` figures, what later runs compare their probe with. Each
    :meth:`take` is one window; the median of its rounds' copy ÷ matmul time ratio, window against window, is the
    host term (:func:`convcost.cost.stats.host_spread`): a memory-bound against a compute-bound figure, as the
    speedup of a separable layer over a dense one is. The calibration is marked busy when the process waited for a
    CPU; the probe's spread against its own best is reported beside it, no evidence on its own.
    """

    # In a measurement the layers between two probe rounds push the probe's buffers out of the caches, so its copy
    # streams from memory; probe rounds back to back would run from the last-level cache instead (measured on a
    # 2-vCPU VM: twice as fast, so every later run read as busy). Writing this many bytes before each round
    # evicts them as the layers do.
    EVICT_BYTES = 64 << 20
    WARM_UP = 5  # rounds taken and dropped before the first window

    def __init__(self, device: str, threads: int) -> None:
        self.probe = latency.Probe(torch.device(device), threads)
        self.evict = torch.empty(self.EVICT_BYTES // 4, dtype=torch.float32, device=device)
        self.timers = {}
        self.block = {}
        for name, (stmt, values, calls) in self.probe.cases().items():
            self.timers[name] = latency.timer(stmt, values, threads, torch.device(device))
            self.timers[name].timeit(1)
            self.block[name] = calls
        self.rounds: dict[str, list[float]] = {name: [] for name in self.timers}
        self.window_ratios: list[float] = []  # one per window: the median of its rounds' copy ÷ matmul seconds
        self.take(self.WARM_UP)  # the first rounds after set-up run slow (measured: a window 10 % off the rest)
        self.rounds = {name: [] for name in self.timers}
        self.window_ratios = []

    def take(self, count: int) -> None:
        ratios = []
        for index in range(count):
            self.evict.zero_()
            figures = {}
            for name in latency.round_order(list(self.timers), index):
                figures[name] = latency.block_seconds(self.timers[name], self.block[name]) / self.block[name]
                self.rounds[name].append(figures[name])
            if figures.get(MATMUL, 0.0) > 0:
                ratios.append(figures[COPY] / figures[MATMUL])
        if ratios:
            self.window_ratios.append(quantile(ratios, 0.5))

    def median(self, name: str) -> float | None:
        copies, matmuls = latency.Probe.rates(self.rounds)
        rates = copies if name == COPY else matmuls
        return quantile(rates, 0.5) if rates else None

    def contention(self, cpu_wait: float | None) -> Contention:
        copies, matmuls = latency.Probe.rates(self.rounds)
        return classify(copies, matmuls, during="calibration", cpu_wait=cpu_wait)


def matmul_tf32(device: str) -> bool | None:
    """On CUDA, whether the peak matmul runs with TF32: as the convs it is a ceiling for do (None on a CPU).

    cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32`` is True) while matmuls do not
    (``torch.backends.cuda.matmul.allow_tf32`` is False): a float32 matmul peak measured without TF32 would be
    several times below what a float32 conv can reach, and every conv would look impossibly fast.
    """
    if device != "cuda":
        return None
    return bool(torch.backends.cudnn.allow_tf32)


@contextlib.contextmanager
def _matmul_precision(tf32: bool | None) -> Iterator[None]:
    """Run the peak matmul with the convs' TF32 setting, restoring the matmul setting afterwards."""
    if tf32 is None:
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def calibration_for(
    device: str, dtype: DType, threads: int, refresh: bool = False, settings: CalibrationSettings | None = None
) -> tuple[Calibration, bool]:
    """The cached calibration, or a fresh one (stored); returns it and whether it was measured now."""
    RunContext(device, dtype, threads)  # SpecError for a bad setting, before the cache is read
    if not refresh:
        found = cached(device, dtype, threads)
        if found is not None:
            return found, False
    _check_storable(cache_path())  # before measuring: a FIFO there would block the write after it
    calibration = measure_peaks(device, dtype, threads, settings)
    store(calibration)
    return calibration, True


MIN_BLOCKS = 5  # the fewest timed blocks a calibration figure and its interval come from


def _timed(
    stmt: str, values: dict[str, object], threads: int, device: str, min_time: float
) -> tuple[float, tuple[float, float]]:
    """Median seconds of one ``stmt`` and the 95 % bootstrap interval of that median, over its timed blocks."""
    timer = latency.timer(stmt, values, threads, torch.device(device))
    timer.timeit(1)
    measurement = timer.blocked_autorange(min_run_time=min_time)
    times = [float(value) for value in measurement.times] or [float(measurement.median)]
    # a call slower than min_time gives one or two blocks, whose bootstrap is a point: time it alone a few more
    # times, so that its interval says how much it varied rather than claiming none
    times += [float(timer.timeit(1).median) for _ in range(MIN_BLOCKS - len(times))]
    estimates, _ = summarize({"stmt": times})
    return estimates["stmt"].typical, estimates["stmt"].typical_interval


def _rate_interval(work: float, seconds: tuple[float, float]) -> tuple[float, float]:
    """A rate's interval from a time's: the slow end of the time is the low end of the rate."""
    low, high = seconds
    return (work / high if high > 0 else 0.0, work / low if low > 0 else 0.0)


def _matmul_peak(
    device: str, dtype: torch.dtype, threads: int, settings: CalibrationSettings
) -> tuple[float, int, tuple[float, float]]:
    best, best_size, best_interval = 0.0, 0, (0.0, 0.0)
    generator = torch.Generator().manual_seed(0)
    sizes = [size for size in MATMUL_SIZES if size <= settings.max_matmul] or [settings.max_matmul]
    for size in sizes:
        left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
        right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
        seconds, interval = _timed("torch.mm(left, right)", {"torch": torch, "left": left, "right": right}, threads,
                                   device, settings.min_time)  # fmt: skip
        rate = 2 * size**3 / seconds
        if rate > best:
            best, best_size, best_interval = rate, size, _rate_interval(2 * size**3, interval)
        if seconds > SLOW_CALL_S:
            break
    return best, best_size, best_interval


def _copy_elements(settings: CalibrationSettings, dtype: torch.dtype) -> int:
    return max(1, settings.copy_bytes // dtype.itemsize)


def _copy_bandwidth(
    device: str, dtype: torch.dtype, threads: int, settings: CalibrationSettings
) -> tuple[float, tuple[float, float]]:
    elements = _copy_elements(settings, dtype)
    source = torch.ones(elements, dtype=dtype, device=device)
    target = torch.empty_like(source)
    seconds, interval = _timed("target.copy_(source)", {"target": target, "source": source}, threads, device,
                               settings.min_time)  # fmt: skip
    moved = 2 * elements * dtype.itemsize  # read once, written once
    return moved / seconds, _rate_interval(moved, interval)


def _call_overhead(
    device: str, dtype: torch.dtype, threads: int, settings: CalibrationSettings, grouped: bool = False
) -> tuple[float, tuple[float, float]]:
    channels, kernel = (2, 3) if grouped else (1, 1)  # a 3×3 depthwise conv on 1×2×3×3, or a 1×1 conv on 1×1×1×1
    module = nn.Conv2d(channels, channels, kernel, groups=channels).to(device=device, dtype=dtype).eval()
    tensor = torch.ones(1, channels, kernel, kernel, device=device, dtype=dtype)
    return _timed("module(tensor)", {"module": module, "tensor": tensor}, threads, device, settings.min_time)
