"""Latency measurement that holds still on a small, shared CPU.

What shapes this harness (measured on a 2-vCPU machine, torch 2.13 CPU):

* With 2 threads, blocks of calls ran up to 7.5× slower for seconds at a time; with 1 thread the spread of
  medians was 2–3 %. So 1 thread is the default and the thread count is always reported.
* glibc hands large buffers back to the OS and page-faults them in again on every call, inflating a layer's
  latency 1.6–5×. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` with ``mallopt`` keeps them in the heap;
  we do that (glibc only) and report it in the environment.
* The first calls pay for kernel set-up; warm-up runs by time *and* by call count.
* The layers being compared are measured in interleaved rounds (the order rotating each round) so that machine
  drift hits them equally; each round is a ``torch.utils.benchmark`` blocked autorange, and we report the median
  of the round medians with their interquartile range. ``torch.utils.benchmark`` synchronises CUDA itself.
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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        for name in names:
            module, tensor = prepared[name]
            _warm_up(module, tensor, settings)
        for round_index in range(settings.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                module, tensor = prepared[name]
                timer = benchmark.Timer(
                    stmt="module(tensor)",
                    globals={"module": module, "tensor": tensor},
                    num_threads=settings.threads,
                )
                result = timer.blocked_autorange(min_run_time=settings.min_time)
                round_times[name].append(result.median)
                calls[name] += result.number_per_run * len(result.raw_times)
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_grad_enabled(previous_grad)
    return {name: _stats(round_times[name], calls[name]) for name in names}


def _warm_up(module: nn.Module, tensor: torch.Tensor, settings: LatencySettings) -> None:
    start = time.perf_counter()
    count = 0
    while count < settings.warmup_calls or time.perf_counter() - start < settings.warmup_time:
        module(tensor)
        _synchronize(tensor.device)
        count += 1


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
