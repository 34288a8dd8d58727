"""The run context: device, dtype, threads, allocator and latency settings, validated once for every command.

Applied around the work and restored after it (torch's thread count, glibc's allocator thresholds), so that a
library call leaves the process as it found it; the result's ``Environment`` is recorded from the same object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from convcost.errors import FieldIssue, SpecError
from convcost.results.comparison import Environment
from convcost.run import latency
from convcost.run.latency import LatencySettings
from convcost.spec import bounds
from convcost.spec.compare import DType, run_settings


@dataclass(frozen=True)
class RunContext:
    """Where and how a run happens: ``latency`` None times nothing (the forward passes still use ``threads``)."""

    device: str = "cpu"
    dtype: DType = DType.FLOAT32
    threads: int = 1
    latency: LatencySettings | None = None

    @classmethod
    def of(
        cls, dtype: str = "float32", device: str = "cpu", threads: int = 1, latency: LatencySettings | None = None
    ) -> RunContext:
        """From command-line style values; SpecError names each bad one. ``latency`` times on ``threads``."""
        chosen_dtype, chosen_device = run_settings(dtype, device)
        try:
            bounds.real(threads, bounds.threads_bound(), "a whole number")
        except ValueError as error:
            raise SpecError([FieldIssue(("threads",), str(error))]) from None
        if latency is not None and latency.threads != threads:
            latency = replace(latency, threads=threads)
        return cls(chosen_device, chosen_dtype, threads, latency)

    @property
    def channels_last(self) -> bool:
        return self.latency is not None and self.latency.channels_last

    @contextlib.contextmanager
    def applied(self) -> Iterator[RunContext]:
        """Run on ``threads`` (and, when timing with tune_allocator, with glibc's heap tuned); restore both after."""
        previous_threads = torch.get_num_threads()
        tune = self.latency is not None and self.latency.tune_allocator
        tuned_before = latency.allocator_tuned()
        try:
            torch.set_num_threads(self.threads)
            if tune:
                latency.tune_allocator()
            yield self
        finally:
            torch.set_num_threads(previous_threads)
            if tune and not tuned_before:
                latency.restore_allocator()

    def environment(self) -> Environment:
        """The environment a result records: this context's, with the allocator as it is now."""
        from convcost.run.measure import environment

        return environment(self.device, self.threads, str(self.dtype), self.channels_last, latency.allocator_state())
