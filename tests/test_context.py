"""The run context: a library call leaves torch's thread count and glibc's allocator as it found them."""

from __future__ import annotations

import sys
from collections.abc import Callable
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
from convcost.spec import bounds
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
    result = evaluate_source(
        str(Path(__file__).resolve().parents[1] / "configs" / "mobilenet_v2.yaml"), size="32", threads=1
    )
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


SPEC = {"cin": 4, "cout": 8, "kernel": 3, "size": 8}
BATCH = "layers:\n  - {cin: 4, cout: 8, kernel: 3, size: 8}\n"
MODEL = "input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n"


# 4→8 3×3 (a candidate: 8·4·9 = 288 weights, grouped:2 halves them) then a 1×1; built before any test seeds
NET = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Conv2d(8, 4, 1))


def _compare() -> object:
    return compare(parse_compare(SPEC), FAST, threads=1)


def _estimate() -> object:
    from convcost.run.estimate import estimate

    return estimate(parse_compare(SPEC), threads=1)


def _batch() -> object:
    from convcost.run.batch import evaluate
    from convcost.spec.batch import loads_batch

    return evaluate(loads_batch(BATCH), FAST, threads=1)


def _model_file(tmp_path: Path) -> object:
    (tmp_path / "one.yaml").write_text(MODEL)
    return evaluate_source(str(tmp_path / "one.yaml"), latency_settings=FAST, threads=1)  # seeds its weights


def _count() -> object:
    import convcost

    return convcost.count(NET, (4, 8, 8), latency=FAST, threads=1)


def _check(tmp_path: Path) -> object:
    from convcost.run.budget import run_checks
    from convcost.spec.budget import load_budget

    (tmp_path / "one.yaml").write_text(MODEL)
    # dense 3→8 3×3, bias on: params 8·3·9 + 8 = 224
    checks = "checks:\n  - {model: one.yaml, params: {max: 224}, latency_ms: {max: 1000}}\n"
    (tmp_path / "budgets.yaml").write_text("latency: {rounds: 2, min_time: 0.002}\n" + checks)
    return run_checks(load_budget(tmp_path / "budgets.yaml"))


def _suggest() -> object:
    import convcost

    return convcost.suggest(NET, (1, 4, 8, 8), latency=FAST)


def _convert() -> object:
    import convcost

    result = convcost.convert(NET, (1, 4, 8, 8), to="grouped:2")  # grouped: new modules, stock weights
    assert [layer.name for layer in result.layers] == ["0"]
    return result


def _sweep() -> object:
    from convcost.run import sweep
    from convcost.spec import sweep as grid

    axes = {"cin": "4", "cout": "8", "kernel": "3", "size": "8"}
    return sweep.run(grid.plan(axes, {}), axes, {}, FAST, threads=1)


def _calibrate() -> object:
    return calibrate.measure_peaks("cpu", DType.FLOAT32, 1, CalibrationSettings(max_matmul=64, copy_bytes=64 << 10,
                                                                                min_time=0.002))  # fmt: skip


ENTRY_POINTS = [_compare, _estimate, _batch, _model_file, _count, _check, _suggest, _convert, _sweep, _calibrate]


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("call", ENTRY_POINTS, ids=lambda call: call.__name__.strip("_"))
def test_every_entry_point_leaves_threads_allocator_and_rng_as_it_found_them(
    call: Callable[..., object], tmp_path: Path
) -> None:
    torch.manual_seed(1234)  # a caller's own seed, which a library call must not move
    rng = torch.get_rng_state()
    result = call(tmp_path) if "tmp_path" in call.__code__.co_varnames else call()
    assert result is not None
    assert torch.get_num_threads() == 2 and not latency.allocator_tuned()
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_seeded_model_file_weights_stay_seeded(tmp_path: Path) -> None:
    from convcost.run.model_build import model_module
    from convcost.spec.model import load_model

    (tmp_path / "one.yaml").write_text(MODEL)
    plan = load_model(str(tmp_path / "one.yaml"))
    first, second = model_module(plan), (torch.manual_seed(99), model_module(plan))[1]
    assert torch.equal(next(first.parameters()), next(second.parameters()))  # seeded inside, whatever the caller's seed


CORES = f"must be a whole number from 1 to {bounds.cores()} (the CPU cores this process may use), got"


@pytest.mark.parametrize(
    "call",
    [
        lambda: compare(parse_compare(SPEC), FAST, threads=0),  # was torch's RuntimeError from set_num_threads
        lambda: compare(parse_compare(SPEC), None, threads=10_000),  # was run and recorded as 10,000 threads
        lambda: _estimate_threads(0),
        lambda: _batch_threads(0),
        lambda: RunContext(threads=0),
        lambda: RunContext(threads=2.5),  # type: ignore[arg-type]
        lambda: calibrate.calibration_for("cpu", DType.FLOAT32, 0),
    ],
    ids=["compare-0", "compare-10000", "estimate-0", "batch-0", "context-0", "context-2.5", "calibrate-0"],
)
def test_a_bad_thread_count_is_a_spec_error_naming_threads(call: Callable[[], object]) -> None:
    with pytest.raises(SpecError) as caught:
        call()
    [issue] = caught.value.issues
    assert issue.loc == ("threads",) and issue.message.startswith(CORES)


def _estimate_threads(threads: int) -> object:
    from convcost.run.estimate import estimate

    return estimate(parse_compare(SPEC), threads=threads)


def _batch_threads(threads: int) -> object:
    from convcost.run.batch import evaluate
    from convcost.spec.batch import loads_batch

    return evaluate(loads_batch(BATCH), None, measure=False, threads=threads)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rounds", 0, "must be a whole number from 1 to 1,000, got 0"),
        ("rounds", -3, "must be a whole number from 1 to 1,000, got -3"),
        ("rounds", 2.5, "must be a whole number from 1 to 1,000, got 2.5"),
        ("min_time", -1, "must be a number of seconds from 0.001 to 60, got -1"),
        ("max_time", -1.0, "must be a number of seconds from 0.05 to 600, got -1.0"),
        ("max_time", float("inf"), "must be a number of seconds from 0.05 to 600, got inf"),
        ("target", 0.6, "must be a fraction from 0.001 to 0.5, got 0.6"),  # --target 60 (per cent) is refused too
    ],
)
def test_latency_settings_hold_their_flags_bounds(field: str, value: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        LatencySettings(**{field: value})  # type: ignore[arg-type]
    assert [(issue.loc, issue.message) for issue in caught.value.issues] == [((field,), message)]


def test_latency_settings_name_every_bad_field_at_once_and_take_the_ends_of_each_range() -> None:
    with pytest.raises(SpecError) as caught:
        LatencySettings(rounds=0, min_time=0, max_time=0)
    assert [issue.loc for issue in caught.value.issues] == [("rounds",), ("min_time",), ("max_time",)]
    # the ends of the flags' ranges: --rounds 1 and 1000, --min-time 0.001 and 60, --target 0.1 and 50 (÷ 100)
    LatencySettings(rounds=1, min_time=0.001, target=0.1 / 100, max_time=0.05)
    LatencySettings(rounds=1_000, min_time=60.0, target=50 / 100, max_time=600.0)


def test_a_bad_dtype_or_device_is_refused_by_any_context() -> None:
    with pytest.raises(SpecError) as caught:
        RunContext("tpu", "float64", threads=0)  # type: ignore[arg-type]
    assert [issue.loc for issue in caught.value.issues] == [("dtype",), ("device",), ("threads",)]
    with pytest.raises(SpecError) as caught:
        calibrate.calibration_for("cpu", "float64", 1)  # type: ignore[arg-type]  # was a KeyError
    assert [issue.loc for issue in caught.value.issues] == [("dtype",)]
