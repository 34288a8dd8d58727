"""The run context: a library call leaves torch's thread count and glibc's allocator as it found them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from convcost import compare, parse_compare
from convcost.errors import SpecError
from convcost.run import calibrate, latency
from convcost.run.calibrate import CalibrationSettings
from convcost.run.context import RunContext
from convcost.run.latency import LatencySettings
from convcost.run.source import evaluate_source
from convcost.spec.compare import DType

FAST = LatencySettings(rounds=2, min_time=0.002, warmup_time=0.001, warmup_calls=1)
TUNED = "glibc mallopt" if sys.platform.startswith("linux") else "not tuned"


@pytest.fixture
def two_threads() -> object:
    """The process on 2 threads with glibc's allocator untuned, as a caller might have it; put back after."""
    previous = torch.get_num_threads()
    latency.restore_allocator()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.usefixtures("two_threads")
def test_compare_applies_its_context_and_restores_the_process() -> None:
    comparison = compare(parse_compare({"cin": 4, "cout": 8, "kernel": 3, "size": 8}), FAST)
    # recorded from the context it ran in: 1 thread, the allocator tuned while timing
    assert comparison.environment.threads == 1
    assert comparison.environment.allocator.startswith(TUNED)
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()


@pytest.mark.usefixtures("two_threads")
def test_calibrate_and_model_restore_the_process() -> None:
    found = calibrate.measure_peaks("cpu", DType.FLOAT32, 1, CalibrationSettings(max_matmul=64, copy_bytes=64 << 10,
                                                                                 min_time=0.002))  # fmt: skip
    assert found.threads == 1
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()
    result = evaluate_source("configs/mobilenet_v2.yaml", size="32", threads=1)
    assert result.environment.threads == 1
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()


@pytest.mark.usefixtures("two_threads")
def test_an_error_inside_the_context_restores_the_process_too() -> None:
    with pytest.raises(RuntimeError), RunContext(threads=1, latency=FAST).applied():
        assert torch.get_num_threads() == 1 and latency.allocator_tuned()
        raise RuntimeError("the work failed")
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()


def test_of_validates_every_setting_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        RunContext.of("float64", "tpu")
    assert [issue.loc for issue in caught.value.issues] == [("dtype",), ("device",)]
    with pytest.raises(SpecError, match="must be a whole number from 1 to"):
        RunContext.of(threads=0)
    assert RunContext.of(threads=1, latency=FAST).latency == FAST


@pytest.mark.usefixtures("two_threads")
def test_the_deprecated_latency_threads_still_chooses_the_threads_but_never_travels_in_the_context() -> None:
    with pytest.warns(DeprecationWarning, match="pass threads= to compare"):
        settings = LatencySettings(threads=1, rounds=2, min_time=0.002, warmup_time=0.001, warmup_calls=1)
    # the context alone carries the thread count: the settings it holds have none
    assert RunContext(threads=2, latency=settings).latency == FAST
    spec = parse_compare({"cin": 4, "cout": 8, "kernel": 3, "size": 8})
    assert compare(spec, settings).environment.threads == 1  # no threads= of its own: the deprecated field's
    assert compare(spec, FAST, threads=1).environment.threads == 1
    assert compare(spec, None).environment.threads == 2  # untimed: torch's thread count as it is
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()


@pytest.mark.usefixtures("two_threads")
def test_a_budget_check_runs_on_its_threads_and_restores_the_process(tmp_path: Path) -> None:
    from convcost.run.budget import run_checks
    from convcost.spec.budget import load_budget

    model = "input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n"
    (tmp_path / "one.yaml").write_text(model)
    # dense 3→8 3×3 on 8×8, bias on: params 8·3·9 + 8 = 224; a latency limit times it, with the allocator tuned
    checks = "checks:\n  - {model: one.yaml, params: {max: 224}, latency_ms: {max: 1000}}\n"
    (tmp_path / "budgets.yaml").write_text("latency: {rounds: 2, min_time: 0.001}\n" + checks)
    result = run_checks(load_budget(tmp_path / "budgets.yaml"))
    assert result.ok and result.environment is not None and result.environment.threads == 1  # the budget's
    assert result.environment.allocator.startswith(TUNED)
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()
