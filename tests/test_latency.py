"""The latency harness: what it reports and how it runs, never how fast anything is (timing is benchmarks/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from convcost.cli import app
from convcost.run import latency
from convcost.run.comparison import compare
from convcost.run.latency import LatencySettings, measure_run, round_order, stage_cases
from convcost.spec.kinds import parse_compare

FAST = LatencySettings(rounds=2, min_time=0.002, warmup_time=0.001, warmup_calls=1)
SMALL = {"cin": 4, "cout": 8, "kernel": 3, "size": 8}


class Counting(nn.Module):
    """An identity that counts its calls and the thread count it ran under."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.threads: set[int] = set()
        self.grad: set[bool] = set()

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.threads.add(torch.get_num_threads())
        self.grad.add(torch.is_grad_enabled())
        return tensor


def test_stats_are_ordered_and_count_rounds_and_calls() -> None:
    first, second = Counting(), Counting()
    stats = measure_run({"a": (first, torch.ones(1)), "b": (second, torch.ones(1))}, FAST).stats
    assert set(stats) == {"a", "b"}
    for name, module in (("a", first), ("b", second)):
        item = stats[name]
        assert item.rounds == 2
        assert item.min_ms <= item.q1_ms <= item.median_ms <= item.q3_ms <= item.max_ms
        assert 0 < item.calls < module.calls  # the warm-up calls are not counted as timed


class Sleeping(nn.Module):
    """Takes a known time per call: 5 ms of sleep."""

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        time.sleep(0.005)
        return tensor


def test_a_known_duration_comes_out_in_milliseconds() -> None:
    # a check of units and bookkeeping, not a benchmark: the band is wide for a loaded machine
    stats = measure_run(
        {"sleep": (Sleeping(), torch.ones(1))},
        LatencySettings(rounds=2, min_time=0.02, warmup_time=0.0, warmup_calls=1),
    ).stats
    item = stats["sleep"]
    assert 4.0 <= item.min_ms <= item.median_ms <= item.max_ms <= 50.0


def test_spread_is_the_iqr_as_a_share_of_the_median() -> None:
    from convcost.results.comparison import LatencyStats

    # rounds with q1 1.9 ms, median 2.0 ms, q3 2.1 ms: IQR 0.2 ms is 10 % of the median
    stats = LatencyStats(median_ms=2.0, q1_ms=1.9, q3_ms=2.1, min_ms=1.8, max_ms=2.4, rounds=5, calls=50)
    assert stats.iqr_ms == pytest.approx(0.2) and stats.spread_pct == pytest.approx(10.0)


def test_runs_on_the_requested_threads_without_grad_and_restores_both() -> None:
    torch.set_num_threads(1)
    torch.set_grad_enabled(True)
    module = Counting()
    measure_run({"a": (module, torch.ones(1))}, LatencySettings(rounds=1, min_time=0.001, warmup_time=0), threads=2)
    assert module.threads == {2} and module.grad == {False}
    assert torch.get_num_threads() == 1 and torch.is_grad_enabled()


def test_round_order_rotates() -> None:
    names = ["dense", "separable", "grouped"]
    assert [round_order(names, index) for index in range(4)] == [
        ["dense", "separable", "grouped"],
        ["separable", "grouped", "dense"],
        ["grouped", "dense", "separable"],
        ["dense", "separable", "grouped"],
    ]
    assert round_order([], 3) == []


def test_stage_cases_feed_each_stage_its_real_input() -> None:
    first, second = nn.Conv2d(4, 6, 3), nn.Conv2d(6, 2, 1)
    cases = stage_cases("separable", ["depthwise", "pointwise"], nn.Sequential(first, second), torch.ones(1, 4, 8, 8))
    assert list(cases) == ["separable.depthwise", "separable.pointwise"]
    assert cases["separable.depthwise"][0] is first and cases["separable.pointwise"][0] is second
    assert tuple(cases["separable.pointwise"][1].shape) == (1, 6, 6, 6)  # 8 − 3 + 1 = 6
    assert stage_cases("dense", ["dense"], first, torch.ones(1, 4, 8, 8)) == {}


def test_channels_last_is_applied() -> None:
    seen: list[bool] = []

    class Layout(nn.Module):
        def forward(self, tensor: torch.Tensor) -> torch.Tensor:
            seen.append(tensor.is_contiguous(memory_format=torch.channels_last))
            return tensor

    measure_run(
        {"a": (Layout(), torch.ones(1, 3, 4, 4))}, LatencySettings(rounds=1, min_time=0.001, channels_last=True)
    )
    assert seen and all(seen)


def test_tune_allocator_is_idempotent_and_reported() -> None:
    tuned_before = latency.allocator_tuned()
    try:
        first = latency.tune_allocator()
        assert latency.tune_allocator() == first == latency.allocator_state()
        if sys.platform.startswith("linux"):
            assert first.startswith("glibc mallopt: mmap threshold ")
    finally:  # as it was: a later test must not pass only because this one left the allocator tuned
        if not tuned_before:
            latency.restore_allocator()


def test_compare_times_layers_and_each_stage() -> None:
    comparison = compare(parse_compare(SMALL), FAST)
    assert comparison.dense.latency is not None and comparison.dense.latency.rounds == 2
    assert comparison.dense.stages[0].latency is None  # one stage: the layer's own timing is the stage's
    assert comparison.dense.stages[0].roofline is not None
    assert comparison.dense.stages[0].roofline.latency_ms == comparison.dense.latency.shown_ms
    separable = comparison.alternatives[0]
    for stage in separable.stages:
        assert stage.latency is not None and stage.latency.rounds == 2
        assert stage.roofline is not None and stage.roofline.latency_ms == stage.latency.shown_ms
    assert comparison.environment.threads == 1
    # recorded while timing, inside the run context that tuned the allocator (and put it back after)
    if sys.platform.startswith("linux"):
        assert comparison.environment.allocator.startswith("glibc mallopt: mmap threshold ")
    assert comparison.environment.allocator != "not tuned"


def test_stage_timing_can_be_turned_off() -> None:
    from dataclasses import replace

    comparison = compare(parse_compare(SMALL), replace(FAST, stages=False))
    assert comparison.alternatives[0].latency is not None
    assert all(stage.latency is None for stage in comparison.alternatives[0].stages)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_latency(dtype: str) -> None:
    comparison = compare(parse_compare({**SMALL, "dtype": dtype}), FAST)
    assert comparison.environment.dtype == dtype
    assert comparison.dense.latency is not None and comparison.dense.latency.median_ms > 0


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


QUICK = ["--cin", "4", "--cout", "8", "-k", "3", "--size", "8", "--rounds", "2", "--min-time", "0.002"]


def test_cli_reports_threads_allocator_and_spread() -> None:
    code, out, err = run("compare", *QUICK, "--threads", "2", "--batch", "2", "--channels-last", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    environment = data["environment"]
    assert environment["threads"] == 2 and environment["channels_last"] is True
    assert environment["allocator"] != "not tuned"  # tuned while timing (put back after)
    if sys.platform.startswith("linux"):
        assert environment["allocator"].startswith("glibc mallopt: mmap threshold ")
    assert data["dense"]["input_shape"] == [2, 4, 8, 8]
    for key in ("median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "iqr_ms", "spread_pct", "rounds", "calls"):
        assert key in data["dense"]["latency"]


def test_cli_table_header_shows_threads_and_allocator() -> None:
    code, out, err = run("compare", *QUICK, "--threads", "2")
    assert code == 0, err
    flat = " ".join(out.split())  # at any terminal width
    assert "Sampled 2 interleaved rounds in " in flat and ", 2 threads, allocator " in flat
    assert "run convcost calibrate" in out  # no calibration in this test's cache


def test_cli_markdown_lists_stage_latencies() -> None:
    code, out, err = run("compare", *QUICK, "--format", "markdown")
    assert code == 0, err
    assert "- separable.depthwise: " in out and "2 interleaved rounds in " in out and ", 1 thread" in out


def test_cli_no_tune_allocator_in_a_fresh_process(tmp_path: Path) -> None:
    # mallopt cannot be undone, so a process that never tuned is needed to see "not tuned"
    environment = {**os.environ, "CONVCOST_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "convcost", "compare", *QUICK, "--no-tune-allocator", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["environment"]["allocator"] == "not tuned"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_uses_event_clock() -> None:
    clock = latency.CudaEventClock(torch.device("cuda"))
    first = clock()
    assert clock() >= first >= 0
    comparison = compare(parse_compare({**SMALL, "device": "cuda"}), FAST)
    assert comparison.dense.latency is not None and comparison.dense.latency.median_ms > 0
    assert comparison.environment.device == "cuda"


def test_round_times_become_median_quartiles_and_range() -> None:
    from convcost.cost.stats import Estimate, Sampling
    from convcost.run.latency import _stats

    # five rounds of 4, 1, 3, 2, 5 ms: sorted 1…5, median 3; inclusive quartiles sit at positions (5−1)·¼ = 1 and
    # (5−1)·¾ = 3 of the sorted list, i.e. 2 and 4 ms
    # best, typical and their intervals are the bootstrap's (tests/test_latency_stats.py); here they pass through
    estimate = Estimate(0.0015, 0.003, (0.001, 0.002), (0.002, 0.004))
    sampling = Sampling({}, 1.5, False, "time")
    stats = _stats([0.004, 0.001, 0.003, 0.002, 0.005], 40, estimate, sampling, FAST)
    assert (stats.median_ms, stats.q1_ms, stats.q3_ms) == pytest.approx((3.0, 2.0, 4.0))
    assert (stats.min_ms, stats.max_ms, stats.rounds, stats.calls) == (pytest.approx(1.0), pytest.approx(5.0), 5, 40)
    assert stats.best_ms == pytest.approx(1.5) and stats.interval_ms == pytest.approx((1.0, 2.0))
    assert (stats.sampled_s, stats.converged, stats.stopped_by) == (1.5, False, "time")
    one = _stats([0.002], 3, estimate, sampling, FAST)  # a single round has no spread
    assert one.median_ms == one.q1_ms == one.q3_ms == pytest.approx(2.0) and one.iqr_ms == 0


def test_json_contract_of_intervals_best_typical_and_contention() -> None:
    code, out, err = run("compare", *QUICK[:-4], "--rounds", "3", "--min-time", "0.001", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["schema_version"] == 4
    for layer in (data["dense"], data["alternatives"][0], *data["alternatives"][0]["stages"]):
        stats = layer["latency"]
        low, high = stats["interval_ms"]
        # of 3 rounds the 10 % quantile is min + 0.2·(second − min); a resample holding the fastest round twice or
        # more (7 in 27) gives the min, one holding it at most once gives at least the point: so low ≤ point ≤ high
        assert low <= stats["best_ms"] <= high
        assert stats["samples"] == stats["rounds"] == 3 and stats["shown"] == "best"
        assert stats["sampled_s"] > 0 and isinstance(stats["converged"], bool) and stats["stopped_by"] == "rounds"
    ratio = data["ratios"][0]
    assert ratio["latency"] == pytest.approx(ratio["latency_best"])  # the same ratio, via ms and via seconds
    assert len(ratio["latency_interval"]) == 2 and ratio["latency_interval"][0] <= ratio["latency_interval"][1]
    assert ratio["latency_typical"] == pytest.approx(data["dense"]["latency"]["median_ms"]
                                                     / data["alternatives"][0]["latency"]["median_ms"])  # fmt: skip
    contention = data["environment"]["contention"]
    assert set(contention) >= {"busy", "memory_fraction", "compute_fraction", "note"}
    assert isinstance(contention["busy"], bool) and contention["note"].startswith("The machine ")
    assert contention["reference"] == "this run's best"  # the tests' cache holds no calibration


def test_no_latency_has_no_contention() -> None:
    code, out, err = run("compare", *QUICK[:-4], "--no-latency", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["environment"]["contention"] is None
