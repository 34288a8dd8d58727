"""Latency measurement that holds still on a small, shared CPU (measured on a 2-vCPU machine, torch 2.13 CPU).

* With 2 threads, blocks of calls ran up to 7.5× slower for seconds at a time; with 1 thread the spread of
  medians was 2–3 %. So 1 thread is the default and the thread count is always reported.
* glibc hands large buffers back to the OS and page-faults them in again on every call, inflating a layer's
  latency 1.6–5×: ``mallopt`` keeps them in the heap (:mod:`convcost.run.context`), reported in the environment.
* The layers are measured in many short interleaved rounds (the order rotating each round) so that machine drift
  hits them equally, each round timing blocks of calls until ``min_time`` is spent (the block size set once,
  from the warm-up: see :func:`block_seconds`), with the reference probe (:class:`Probe`) in every round and the
  time the process waited for a CPU (:func:`cpu_wait_seconds`) read around them. What the rounds say, and when
  to stop, is :mod:`convcost.cost.stats`.
* On CUDA the clock is made of CUDA events (:class:`CudaEventClock`): the GPU's own timeline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from convcost.cost.roofline import Calibration
from convcost.cost.stats import (
    COPY,
    MATMUL,
    Contention,
    Estimate,
    Sampling,
    SamplingPlan,
    classify,
    sample,
    summarize,
    widen,
)
from convcost.results.comparison import LatencyStats
from convcost.run.context import LatencySettings as LatencySettings
from convcost.run.context import allocator_state as allocator_state
from convcost.run.context import allocator_tuned as allocator_tuned
from convcost.run.context import restore_allocator as restore_allocator
from convcost.run.context import threads_for
from convcost.run.context import tune_allocator as tune_allocator

# Seconds of calls per timed block: long enough that the clock (a few µs with a CUDA sync) is noise.
BLOCK_S = 0.002
# The probe: a copy of 8 MiB (far past L2; the 16 MiB it moves stream through the shared cache and memory) and a
# 128×128 matmul (cache-resident: compute-bound), each about a millisecond on a 2-vCPU cloud VM.
PROBE_COPY_ELEMENTS = 2 << 20
PROBE_MATMUL = 128
PROBE_MATMUL_CALLS = 4


@dataclass
class LatencyRun:
    """What one interleaved measurement found: each case's stats, each pair's speedup, and the contention."""

    stats: dict[str, LatencyStats]
    ratios: dict[tuple[str, str], Estimate]
    contention: Contention | None
    sampling: Sampling


class CudaEventClock:
    """A clock for ``torch.utils.benchmark.Timer`` read from CUDA events: seconds since the clock was made.

    Each reading records an event on the current stream and waits for it, so the difference of two readings is
    the GPU time of the work launched between them (event resolution is about half a microsecond).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        with torch.cuda.device(device):
            self.origin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            self.origin.record()
            self.origin.synchronize()

    def __call__(self) -> float:
        with torch.cuda.device(self.device):
            event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            event.record()
            event.synchronize()
        return float(self.origin.elapsed_time(event)) / 1e3


def timer(stmt: str, values: dict[str, object], threads: int, device: torch.device) -> benchmark.Timer:
    """A ``torch.utils.benchmark.Timer`` for ``stmt``; on CUDA it reads CUDA events."""
    if device.type == "cuda":
        return benchmark.Timer(stmt=stmt, globals=values, num_threads=threads, timer=CudaEventClock(device))
    return benchmark.Timer(stmt=stmt, globals=values, num_threads=threads)


def measure_run(
    cases: Mapping[str, tuple[nn.Module, torch.Tensor]],
    settings: LatencySettings,
    pairs: Sequence[tuple[str, str]] = (),
    watched: Sequence[str] | None = None,
    reference: Calibration | None = None,
    clock: Callable[[], float] = time.perf_counter,
    threads: int | None = None,
) -> LatencyRun:
    """Time the cases in interleaved rounds (with the probe) until the stopping rule says stop.

    ``pairs`` (reference, other) are the speedups the stopping rule watches; without pairs it watches the
    ``watched`` cases (default: the first). ``reference``: a calibration whose probe rates say what quiet is.
    ``settings.max_time`` (per pair) bounds the whole call, warm-up included. ``threads``: default, the thread
    count torch runs on now (the run context's, inside ``RunContext.applied``).
    """
    started = clock()
    threads = threads_for(threads, settings, torch.get_num_threads())
    previous_threads = torch.get_num_threads()
    previous_grad = torch.is_grad_enabled()
    names = list(cases)
    watched = list(watched) if watched is not None else names[:1]
    prepared: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name, (module, tensor) in cases.items():
        if settings.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        prepared[name] = (module, tensor)
    calls: dict[str, int] = dict.fromkeys(names, 0)
    device = next(iter(prepared.values()))[1].device if prepared else torch.device("cpu")
    plan = SamplingPlan(target=settings.target, max_time=settings.max_time * max(1, len(pairs) or len(watched)),
                        rounds=settings.rounds)  # fmt: skip
    try:
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        timers, block, min_time = {}, {}, {}
        for name in names:
            module, tensor = prepared[name]
            per_call = _warm_up(module, tensor, settings)
            # calls per timed block: about BLOCK_S of work, so reading the clock costs < 0.1 % of a block
            block[name] = max(1, round(BLOCK_S / per_call)) if per_call > 0 else 1
            timers[name] = timer("module(tensor)", {"module": module, "tensor": tensor}, threads,
                                 tensor.device)  # fmt: skip
            min_time[name] = settings.min_time
        probe = Probe(device, threads) if settings.probe else None
        if probe is not None:
            for name, (stmt, values, per_block) in probe.cases().items():
                timers[name] = timer(stmt, values, threads, device)
                timers[name].timeit(1)
                block[name] = per_block
                min_time[name] = 0.0  # one block a round: the probe watches, it should not cost much
        order = [*names, *(probe.names if probe is not None else [])]

        def take_round(round_index: int) -> dict[str, float]:
            figures = {}
            for name in round_order(order, round_index):
                per_block, spent = [], 0.0
                while True:
                    seconds = block_seconds(timers[name], block[name])
                    per_block.append(seconds / block[name])
                    spent += seconds
                    if spent >= min_time[name]:
                        break
                figures[name] = statistics.median(per_block)
                if name in calls:
                    calls[name] += block[name] * len(per_block)
            return figures

        waited, wall = cpu_wait_seconds(), time.perf_counter()
        sampling = sample(take_round, plan, pairs, watched, clock, started)
        cpu_wait = cpu_wait_fraction(waited, time.perf_counter() - wall, threads)
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_grad_enabled(previous_grad)
    case_rounds = {name: sampling.rounds[name] for name in names}
    estimates, ratios = summarize(case_rounds, pairs)
    # the window-to-window spread calibrate measured on this machine widens every interval (none without a
    # calibration, or with one taken on a busy machine)
    spread = None if reference is None or reference.busy else reference.host_spread
    estimates = {name: widen(item, spread) for name, item in estimates.items()}
    ratios = {pair: widen(item, spread) for pair, item in ratios.items()}
    stats = {name: _stats(case_rounds[name], calls[name], estimates[name], sampling, settings) for name in names}
    contention = None
    if probe is not None:
        top = {*watched, *(name for pair in pairs for name in pair)}  # the layers, not their stages
        slowdowns = {name: estimates[name].typical / estimates[name].best for name in names
                     if name in top and estimates[name].best > 0}  # fmt: skip
        contention = replace(probe.classify(sampling.rounds, reference, slowdowns, cpu_wait), host_spread=spread)
    return LatencyRun(stats, ratios, contention, sampling)


class Probe:
    """The reference probe interleaved with the layers: a memory-bound copy and a compute-bound matmul.

    Both are small enough to cost a few per cent of a round, and fixed (float32, the run's threads) so that a
    calibration's probe rates (``convcost calibrate``) say what this machine does when quiet.
    """

    names = (COPY, MATMUL)

    def __init__(self, device: torch.device, threads: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.source = torch.ones(PROBE_COPY_ELEMENTS, dtype=torch.float32, device=device)
        self.target = torch.empty_like(self.source)
        self.left = torch.randn(PROBE_MATMUL, PROBE_MATMUL, generator=generator).to(device)
        self.right = torch.randn(PROBE_MATMUL, PROBE_MATMUL, generator=generator).to(device)

    def cases(self) -> dict[str, tuple[str, dict[str, object], int]]:
        """Statement, globals and calls per block of each probe."""
        return {
            COPY: ("target.copy_(source)", {"target": self.target, "source": self.source}, 1),
            MATMUL: ("torch.mm(left, right)", {"torch": torch, "left": self.left, "right": self.right},
                     PROBE_MATMUL_CALLS),
        }  # fmt: skip

    @staticmethod
    def rates(rounds: Mapping[str, Sequence[float]]) -> tuple[list[float], list[float]]:
        """Bytes/s of the copy (read + written) and FLOP/s of the matmul, one per round."""
        copy_bytes = 2 * PROBE_COPY_ELEMENTS * 4
        flops = 2 * PROBE_MATMUL**3
        copies = [copy_bytes / seconds for seconds in rounds.get(COPY, []) if seconds > 0]
        matmuls = [flops / seconds for seconds in rounds.get(MATMUL, []) if seconds > 0]
        return copies, matmuls

    def classify(
        self,
        rounds: Mapping[str, Sequence[float]],
        reference: Calibration | None,
        slowdowns: Mapping[str, float],
        cpu_wait: float | None = None,
    ) -> Contention:
        copies, matmuls = self.rates(rounds)
        # a calibration taken on a busy machine would make every later run look quiet: this run's best instead
        trusted = reference if reference is not None and not reference.busy else None
        quiet_copy, quiet_matmul = (trusted.probe_bandwidth, trusted.probe_flops) if trusted else (None, None)
        return classify(copies, matmuls, quiet_copy, quiet_matmul, slowdowns, cpu_wait=cpu_wait)


def cpu_wait_seconds() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU, or None where unknown.

    Linux counts it per thread (``/proc/self/task/*/schedstat``: on-CPU time, run-queue wait, time slices). It is
    the direct sign of a neighbour on the same core (the process's own clock cannot tell the time it did not run
    from slow code), and near zero on a quiet machine (0–4 % of a measurement's time on a 2-vCPU VM).
    """
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return None
    total = 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except FileNotFoundError:  # a thread that ended since the listing
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


def cpu_wait_fraction(waited_before: float | None, wall: float, threads: int) -> float | None:
    """The share of ``wall`` seconds × ``threads`` spent waiting for a CPU since ``waited_before`` was read."""
    waited_after = cpu_wait_seconds()
    if waited_before is None or waited_after is None or wall <= 0:
        return None
    return max(0.0, waited_after - waited_before) / (wall * max(1, threads))


def block_seconds(case_timer: benchmark.Timer, number: int) -> float:
    """Seconds that ``number`` calls take, timed by ``torch.utils.benchmark``'s own loop and clock.

    ``Timer.timeit(n)`` adds max(n // 100, 2) untimed warm-up calls on every use, and ``blocked_autorange``
    re-estimates its block size every round (ten extra calls of a 5 ms layer): together they tripled the cost of a
    measurement. We warm up once, so we call the Timer's inner loop, ``_timeit``, when this torch has it.
    """
    inner = getattr(case_timer, "_timeit", None)
    if inner is None:
        return float(case_timer.timeit(number).median) * number
    return float(inner(number))


def round_order(names: list[str], round_index: int) -> list[str]:
    """The order of a round: rotated by one each round, so no case always runs first (or right after another)."""
    shift = round_index % len(names) if names else 0
    return names[shift:] + names[:shift]


def stage_cases(
    kind: str, stage_names: list[str], module: nn.Module, tensor: torch.Tensor
) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Cases ``kind.stage`` for each child of a multi-stage layer, each with the input it really receives."""
    if len(stage_names) < 2 or not isinstance(module, nn.Sequential):
        return {}
    cases: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    with torch.no_grad():
        for name, child in zip(stage_names, module, strict=True):
            cases[f"{kind}.{name}"] = (child, tensor)
            tensor = child(tensor)
    return cases


def _warm_up(module: nn.Module, tensor: torch.Tensor, settings: LatencySettings) -> float:
    """Call until both warm-up_calls calls and warmup_time seconds are done; returns the last call's seconds."""
    start = time.perf_counter()
    count, last = 0, 0.0
    while count < settings.warmup_calls or time.perf_counter() - start < settings.warmup_time:
        before = time.perf_counter()
        module(tensor)
        if tensor.device.type == "cuda":
            torch.cuda.synchronize(tensor.device)
        last = time.perf_counter() - before
        count += 1
    return last


def _stats(
    seconds: list[float], calls: int, estimate: Estimate, sampling: Sampling, settings: LatencySettings
) -> LatencyStats:
    ms = sorted(value * 1e3 for value in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) >= 2 else (ms[0],) * 3
    return LatencyStats(
        median_ms=statistics.median(ms),
        q1_ms=q1,
        q3_ms=q3,
        min_ms=ms[0],
        max_ms=ms[-1],
        rounds=len(ms),
        calls=calls,
        best_ms=estimate.best * 1e3,
        interval_ms=(estimate.best_interval[0] * 1e3, estimate.best_interval[1] * 1e3),
        typical_interval_ms=(estimate.typical_interval[0] * 1e3, estimate.typical_interval[1] * 1e3),
        sampled_s=sampling.sampled_s,
        converged=sampling.converged,
        target_pct=100 * settings.target,
        stopped_by=sampling.stopped_by,
    )
