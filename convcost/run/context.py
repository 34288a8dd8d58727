"""The run context: device, dtype, threads, allocator and latency settings, validated once for every command.

Applied around the work and restored after it (torch's thread count, glibc's allocator thresholds), so that a
library call leaves the process as it found it; the result's ``Environment`` is recorded from the same object,
measured or by formula. No torch here until the context is applied or a measured environment is recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import importlib.metadata
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

from convcost.errors import FieldIssue, SpecError
from convcost.results.comparison import Environment
from convcost.spec import bounds
from convcost.spec.compare import DType, run_settings
from convcost.version import __version__

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE/2 (32 MiB on 64-bit); try large first, then that.
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = 1 << 30


_allocator_state: str | None = None


@dataclass(frozen=True)
class LatencySettings:
    """How to time: the stopping rule (target, time, or a fixed round count), time per round, warm-up.

    The thread count is the run context's (:class:`RunContext`, or ``threads=`` of ``compare`` and
    ``evaluate_source``). ``threads`` here is deprecated and kept for callers of the old API: given, it warns,
    and an entry point that gets no ``threads`` of its own uses it; the context's settings never carry it.
    """

    threads: int | None = None  # deprecated: pass threads to the run context
    rounds: int | None = None  # None: adaptive (stop at ±target or after max_time); N: exactly N rounds
    min_time: float = 0.004  # seconds of calls per case per round
    warmup_time: float = 0.03  # seconds per module, at least warmup_calls calls
    warmup_calls: int = 3
    channels_last: bool = False
    tune_allocator: bool = True
    stages: bool = True  # also time each stage of a multi-stage layer on its own (for per-stage rooflines)
    target: float = 0.03  # stop when each speedup's interval is within ±target (a fraction)
    max_time: float = 2.0  # seconds of sampling per layer pair (per timed case without pairs)
    probe: bool = True  # interleave the reference probe (contention detection)

    def __post_init__(self) -> None:
        if self.threads is not None:
            warnings.warn("LatencySettings(threads=...) is deprecated: pass threads= to compare() or "
                          "evaluate_source(), or to RunContext", DeprecationWarning, stacklevel=3)  # fmt: skip
        issues = [FieldIssue((name,), problem) for name in ("rounds", "min_time", "target", "max_time")
                  if (problem := bounds.problem(name, getattr(self, name), per_cent=False)) is not None]  # fmt: skip
        if issues:  # each outside its flag's range (--rounds, ...; the target here a fraction, not per cent)
            raise SpecError(issues)


@dataclass(frozen=True)
class RunContext:
    """Where and how a run happens: ``latency`` None times nothing (the forward passes still use ``threads``)."""

    device: str = "cpu"
    dtype: DType = DType.FLOAT32
    threads: int = 1
    latency: LatencySettings | None = None

    def __post_init__(self) -> None:
        dtype, device = run_settings(self.dtype, self.device, self.threads)  # as their flags are: SpecError
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "device", device)
        if self.latency is not None and self.latency.threads is not None:
            object.__setattr__(self, "latency", replace(self.latency, threads=None))

    @classmethod
    def of(
        cls, dtype: str = "float32", device: str = "cpu", threads: int = 1, latency: LatencySettings | None = None
    ) -> RunContext:
        """From command-line style values; SpecError names each bad one. ``latency`` times on ``threads``."""
        chosen_dtype, chosen_device = run_settings(dtype, device, threads)
        return cls(chosen_device, chosen_dtype, threads, latency)

    @property
    def channels_last(self) -> bool:
        return self.latency is not None and self.latency.channels_last

    @contextlib.contextmanager
    def applied(self) -> Iterator[RunContext]:
        """Run on ``threads`` (when timing with tune_allocator, glibc's heap tuned); restore both and the RNG after."""
        import torch

        previous_threads = torch.get_num_threads()
        tune = self.latency is not None and self.latency.tune_allocator
        tuned_before = allocator_tuned()
        try:
            torch.set_num_threads(self.threads)
            if tune:
                tune_allocator()
            with torch.random.fork_rng(devices=[]):  # building a module draws its weights from torch's global RNG
                yield self
        finally:
            torch.set_num_threads(previous_threads)
            if tune and not tuned_before:
                restore_allocator()

    def environment(self, measured: bool = True) -> Environment:
        """The environment a result records, this context's: measured, with the device's name and the allocator as
        they are now; by formula (nothing ran, torch not imported), the versions are what matters."""
        if not measured:
            torch_version, python_version, platform_name = _versions()
            unused = "not used (nothing measured)"
            return Environment(torch=torch_version, convcost=__version__, python=python_version,
                               platform=platform_name, device=self.device, device_name=unused, threads=self.threads,
                               dtype=str(self.dtype), allocator=unused)  # fmt: skip
        import torch

        on_cuda = self.device == "cuda"
        device_name = torch.cuda.get_device_name(0) if on_cuda else (platform.processor() or platform.machine())
        return Environment(torch=torch.__version__, convcost=__version__, python=platform.python_version(),
                           platform=platform.platform(terse=True), device=self.device, device_name=device_name,
                           threads=self.threads, dtype=str(self.dtype), channels_last=self.channels_last,
                           allocator=allocator_state())  # fmt: skip


@functools.cache
def _versions() -> tuple[str, str, str]:
    # read once: importlib.metadata scans the installed distributions, about a millisecond each time
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    return torch_version, platform.python_version(), platform.platform(terse=True)


def threads_for(threads: int | None, settings: LatencySettings | None, default: int) -> int:
    """An entry point's thread count: its own ``threads``, else the deprecated ``LatencySettings.threads``."""
    if threads is not None:
        return threads
    if settings is not None and settings.threads is not None:
        return settings.threads
    return default


def tune_allocator() -> str:
    """Keep large buffers in glibc's heap (mallopt), once per process; returns what was done."""
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    if not sys.platform.startswith("linux"):
        _allocator_state = "not tuned (not glibc)"
        return _allocator_state
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
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


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` has run (and not been undone) in this process."""
    return _allocator_state is not None


# glibc's own starting values of both thresholds (128 KiB); set explicitly, the mmap threshold no longer grows
# with the largest freed chunk as glibc's dynamic default does, which costs a process at most some page faults
_GLIBC_DEFAULT_THRESHOLD = 128 << 10


def restore_allocator() -> None:
    """Undo :func:`tune_allocator`: glibc's default thresholds, and ``not tuned`` again."""
    global _allocator_state
    if _allocator_state is not None and _allocator_state.startswith("glibc mallopt"):
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        mallopt(M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
    _allocator_state = None
