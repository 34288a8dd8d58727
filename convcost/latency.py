"""Latency measurement that holds still on a small, shared CPU.

What shapes this harness (measured on a 2-vCPU machine, torch 2.13 CPU):

* With 2 threads, blocks of calls ran up to 7.5× slower for seconds at a time; with 1 thread the spread of
  medians was 2–3 %. So 1 thread is the default and the thread count is always reported.
* glibc hands large buffers back to the OS and page-faults them in again on every call, inflating a layer's
  latency 1.6–5×. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` with ``mallopt`` keeps them in the heap;
  we do that (glibc only) and report it in the environment.
* The first calls pay for kernel set-up; warm-up runs by time *and* by call count.
* The layers being compared are measured in interleaved rounds (the order rotating each round) so that machine
  drift hits them equally. Each round times blocks of calls with ``torch.utils.benchmark`` until ``min_time`` is
  spent (the block size is set once, from the warm-up, instead of by ``blocked_autorange``'s estimate, which for
  a 5 ms layer spends 10 calls finding it every round); a round's figure is the median of its blocks, and we report
  the median of the rounds with their interquartile range and range.
* On CUDA, ``torch.utils.benchmark`` is given a clock made of CUDA events (:class:`CudaEventClock`), so each
  block of calls is timed on the GPU's own timeline, after the launches have drained.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import benchmark

from convcost.results import LatencyStats

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE/2 (32 MiB on 64-bit); try large first, then that.
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = 1 << 30

_allocator_state: str | None = None
# Seconds of calls per timed block: long enough that the clock (a few µs with a CUDA sync) is noise.
BLOCK_S = 0.002


@dataclass(frozen=True)
class LatencySettings:
    """How to time: threads, rounds, time per round and warm-up."""

    threads: int = 1
    rounds: int = 5
    min_time: float = 0.04  # seconds per module per round
    warmup_time: float = 0.03  # seconds per module, at least warmup_calls calls
    warmup_calls: int = 3
    channels_last: bool = False
    tune_allocator: bool = True
    stages: bool = True  # also time each stage of a multi-stage layer on its own (for per-stage rooflines)


def tune_allocator() -> str:
    """Keep large buffers in glibc's heap (mallopt), once per process; returns what was done."""
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    if not sys.platform.startswith("linux"):
        _allocator_state = "not tuned (not glibc)"
        return _allocator_state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _allocator_state = "not tuned (no mallopt)"
        return _allocator_state
    mmap_threshold = next((value for value in _MMAP_THRESHOLDS if mallopt(M_MMAP_THRESHOLD, value) == 1), None)
    trimmed = mallopt(M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    if mmap_threshold is None or not trimmed:
        _allocator_state = "not tuned (mallopt refused)"
    else:
        _allocator_state = f"glibc mallopt: mmap threshold {mmap_threshold >> 20} MiB, trim threshold 1 GiB"
    return _allocator_state


def allocator_state() -> str:
    """What :func:`tune_allocator` did in this process, or ``not tuned``."""
    return _allocator_state or "not tuned"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def measure(cases: Mapping[str, tuple[nn.Module, torch.Tensor]], settings: LatencySettings) -> dict[str, LatencyStats]:
    """Time each (module, input) case, interleaved round by round; returns stats keyed like ``cases``."""
    previous_threads = torch.get_num_threads()
    previous_grad = torch.is_grad_enabled()
    names = list(cases)
    prepared: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name, (module, tensor) in cases.items():
        if settings.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        prepared[name] = (module, tensor)
    round_times: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, int] = dict.fromkeys(names, 0)
    try:
        torch.set_num_threads(settings.threads)
        torch.set_grad_enabled(False)
        timers, block = {}, {}
        for name in names:
            module, tensor = prepared[name]
            per_call = _warm_up(module, tensor, settings)
            # calls per timed block: about BLOCK_S of work, so reading the clock costs < 0.1 % of a block
            block[name] = max(1, round(BLOCK_S / per_call)) if per_call > 0 else 1
            timers[name] = timer("module(tensor)", {"module": module, "tensor": tensor}, settings.threads,
                                 tensor.device)  # fmt: skip
        for round_index in range(settings.rounds):
            for name in round_order(names, round_index):
                per_block, spent = [], 0.0
                while spent < settings.min_time:
                    seconds = block_seconds(timers[name], block[name])
                    per_block.append(seconds / block[name])
                    spent += seconds
                round_times[name].append(statistics.median(per_block))
                calls[name] += block[name] * len(per_block)
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_grad_enabled(previous_grad)
    return {name: _stats(round_times[name], calls[name]) for name in names}


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
        _synchronize(tensor.device)
        last = time.perf_counter() - before
        count += 1
    return last


def _stats(seconds: list[float], calls: int) -> LatencyStats:
    ms = sorted(value * 1e3 for value in seconds)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return LatencyStats(
        median_ms=statistics.median(ms),
        q1_ms=q1,
        q3_ms=q3,
        min_ms=ms[0],
        max_ms=ms[-1],
        rounds=len(ms),
        calls=calls,
    )
