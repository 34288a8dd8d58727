"""The roofline model: bytes, intensity, bounds and verdicts, checked against arithmetic done by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.roofline import (
    Calibration,
    RooflineBound,
    analyse,
    classify,
    combine,
    predicted_speedup,
)
from convcost.report.compare import render_roofline, render_table
from convcost.results.roofline import limited_stages
from convcost.run import calibrate
from convcost.run.comparison import compare
from convcost.spec.compare import DType
from convcost.spec.kinds import parse_compare
from tests.latency_fakes import fixed_run

# Round peaks so that every expected figure below is exact arithmetic:
# 1 GFLOP/s, 1 GB/s, 1 µs per call.
PEAKS = Calibration(
    machine="test machine",
    torch="test",
    device="cpu",
    dtype="float32",
    threads=1,
    peak_flops=1e9,
    peak_bandwidth=1e9,
    call_overhead_s=1e-6,
    matmul_size=64,
    copy_bytes=1 << 20,
    measured_at="2026-01-01T00:00:00+00:00",
    allocator="not tuned",
)


def test_compute_bound_stage() -> None:
    # 1,000 MACs = 2,000 FLOP over 500 bytes: intensity 4 FLOP/byte.
    # compute 2,000 / 1e9 s = 0.002 ms; memory 500 / 1e9 s = 0.0005 ms; bound 0.002 ms; overhead 0.001 ms.
    # measured 0.004 ms → 50 % of the bound; 1,000 MAC / 4e-6 s = 0.25 GMAC/s; 500 B / 4e-6 s = 0.125 GB/s.
    line = analyse(1_000, 500, 0.004, PEAKS)
    assert line.flops == 2_000 and line.intensity == 4.0
    assert line.compute_ms == pytest.approx(0.002) and line.memory_ms == pytest.approx(0.0005)
    assert line.bound_ms == pytest.approx(0.002) and line.overhead_ms == pytest.approx(0.001)
    assert line.fraction == pytest.approx(0.5)
    assert line.gmacs_per_s == pytest.approx(0.25) and line.gbytes_per_s == pytest.approx(0.125)
    assert line.verdict is RooflineBound.COMPUTE


def test_memory_bound_stage() -> None:
    # 10,000 MACs = 20,000 FLOP over 100,000 bytes: 0.2 FLOP/byte. compute 0.02 ms < memory 0.1 ms.
    line = analyse(10_000, 100_000, None, PEAKS)
    assert line.intensity == pytest.approx(0.2)
    assert line.bound_ms == pytest.approx(0.1)
    assert line.verdict is RooflineBound.MEMORY
    assert line.fraction is None and line.gmacs_per_s is None  # no latency, no achieved figures


def test_overhead_bound_when_per_call_cost_reaches_the_bound() -> None:
    # 100 MACs = 200 FLOP, 400 bytes: compute 0.0002 ms, memory 0.0004 ms < 3 calls × 0.001 ms.
    line = analyse(100, 400, 0.01, PEAKS, calls=3)
    assert line.overhead_ms == pytest.approx(0.003)
    assert line.verdict is RooflineBound.OVERHEAD
    # the boundary belongs to overhead: per-call cost equal to the bound
    assert classify(1.0, 0.5, 1.0, 1.0) is RooflineBound.OVERHEAD
    assert classify(1.0, 1.0, 0.5, 1.0) is RooflineBound.COMPUTE  # a tie between compute and memory is compute


def test_without_calibration_only_work_figures() -> None:
    line = analyse(1_000, 500, 0.004, None)
    assert line.intensity == 4.0 and line.gmacs_per_s == pytest.approx(0.25)
    assert line.bound_ms is None and line.verdict is None and line.fraction is None


def test_layer_sums_its_stages() -> None:
    compute = analyse(1_000, 500, 0.004, PEAKS)  # bound 0.002 (compute), overhead 0.001
    memory = analyse(10_000, 100_000, 0.2, PEAKS)  # bound 0.1 (memory), overhead 0.001
    layer = combine([compute, memory], 0.3)
    assert layer.macs == 11_000 and layer.min_bytes == 100_500
    assert layer.bound_ms == pytest.approx(0.102)  # 0.002 + 0.1
    assert layer.compute_ms == pytest.approx(0.022)  # 0.002 + 0.02
    assert layer.memory_ms == pytest.approx(0.1005)  # 0.0005 + 0.1
    assert layer.overhead_ms == pytest.approx(0.002)
    assert layer.fraction == pytest.approx(0.102 / 0.3)
    assert layer.verdict is RooflineBound.MEMORY  # summed memory time 0.1005 > summed compute 0.022
    assert combine([analyse(1, 1, None, None)], None).bound_ms is None


def test_predicted_speedup_is_ratio_of_bounds() -> None:
    dense = analyse(1_000_000, 10_000, None, PEAKS)  # bound: 2e6 FLOP / 1e9 = 2 ms
    alternative = analyse(100_000, 50_000, None, PEAKS)  # bound: max(0.2, 0.05) = 0.2 ms
    assert predicted_speedup(dense, alternative) == pytest.approx(10.0)
    assert predicted_speedup(dense, analyse(1, 1, None, None)) is None


def test_compare_fills_rooflines_from_formulas() -> None:
    # 8→64 3×3 on 16×16, no padding: output 14×14.
    # dense: MACs 64·14·14·8·9 = 903,168; bytes (8·16·16 + 64·8·9 + 64 + 64·14·14)·4 = 19,264·4 = 77,056.
    # depthwise: MACs 8·14·14·9 = 14,112; bytes (2,048 + 72 + 8 + 8·196)·4 = 3,696·4 = 14,784.
    # pointwise: MACs 64·196·8 = 100,352; bytes (8·196 + 512 + 64 + 64·196)·4 = 14,688·4 = 58,752.
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None, PEAKS)
    dense = comparison.dense.roofline
    assert dense is not None and dense.macs == 903_168 and dense.min_bytes == 77_056
    assert dense.intensity == pytest.approx(2 * 903_168 / 77_056)
    separable = comparison.alternatives[0]
    depthwise, pointwise = (stage.roofline for stage in separable.stages)
    assert depthwise is not None and pointwise is not None
    assert (depthwise.macs, depthwise.min_bytes) == (14_112, 14_784)
    assert (pointwise.macs, pointwise.min_bytes) == (100_352, 58_752)
    # bounds in ms at 1 GFLOP/s and 1 GB/s: dense max(1.806336, 0.077056); depthwise max(0.028224, 0.014784);
    # pointwise max(0.200704, 0.058752)
    assert dense.bound_ms == pytest.approx(1.806336)
    assert separable.roofline is not None and separable.roofline.bound_ms == pytest.approx(0.028224 + 0.200704)
    assert comparison.ratios[0].roofline == pytest.approx(1.806336 / 0.228928)
    assert comparison.environment.calibration == PEAKS
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["dense"]["roofline"]["verdict"] == "compute-bound"
    assert data["alternatives"][0]["stages"][0]["roofline"]["min_bytes"] == 14_784
    assert data["environment"]["calibration"]["ridge"] == pytest.approx(1.0)


def test_bfloat16_halves_the_bytes() -> None:
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16, "dtype": "bfloat16"}), None)
    assert comparison.dense.roofline is not None and comparison.dense.roofline.min_bytes == 77_056 // 2


def test_norm_and_activation_count_as_calls() -> None:
    comparison = compare(parse_compare({"cin": 8, "cout": 16, "kernel": 3, "size": 8, "norm": "batch",
                                        "act": "relu"}), None, PEAKS)  # fmt: skip
    line = comparison.dense.roofline
    assert line is not None and line.calls == 3 and line.overhead_ms == pytest.approx(0.003)


def test_note_names_the_stages_that_are_not_compute_bound() -> None:
    from dataclasses import replace

    # ridge 1,000 FLOP/byte: every stage of the 8→64 layer (at most 23 FLOP/byte) is memory-bound
    bandwidth_starved = replace(PEAKS, peak_flops=1e12)
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None, bandwidth_starved)
    clause = limited_stages(comparison.alternatives[0])
    assert clause == (
        "depthwise is memory-bound (1.9 FLOP/byte) and pointwise is memory-bound (3.4 FLOP/byte), "
        "so memory traffic, not MACs, sets their time"
    )  # 2·14,112/14,784 = 1.91; 2·100,352/58,752 = 3.42
    assert limited_stages(compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None).dense) == ""


def printed(renderable: RenderableType) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None, highlight=False).print(renderable)
    return buffer.getvalue()


def test_full_table_names_verdicts_and_fits_80_columns() -> None:
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None, PEAKS)
    text = printed(render_roofline(comparison))
    assert "compute-bound" in text and "Roofline: bounds (ms)" in text
    assert "1 GFLOP/s" not in text and "1.00 GFLOP/s matmul" in text
    assert "…" not in text  # nothing cut off at 80 columns


def test_full_table_without_calibration_says_how_to_get_one() -> None:
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None)
    text = printed(render_roofline(comparison))
    assert "run convcost calibrate" in text
    assert "Roofline: bounds" not in text


def test_plain_table_is_unchanged_without_latency() -> None:
    # the compact roofline lives in the latency section: without latency the report has no roofline line
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16}), None, PEAKS)
    assert "Roofline:" not in printed(render_table(comparison))


def _store_peaks(threads: int = 1) -> None:
    from dataclasses import replace

    calibrate.store(replace(PEAKS, machine=calibrate.machine_name("cpu"), torch=torch.__version__, threads=threads))


def test_cli_compare_uses_the_cached_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.run.latency
    from convcost.results.comparison import LatencyStats

    _store_peaks()
    # every case "takes" 0.5 ms: the harness is replaced so that each fraction is arithmetic on known numbers
    stats = LatencyStats(0.5, 0.5, 0.5, 0.5, 0.5, 2, 2)
    monkeypatch.setattr(convcost.run.latency, "measure_run", fixed_run(stats))
    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16",
                                      "--rounds", "2", "--min-time", "0.002", "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["environment"]["calibration"]["peak_flops"] == 1e9
    assert data["ratios"][0]["roofline"] == pytest.approx(1.806336 / 0.228928)
    depthwise, pointwise = data["alternatives"][0]["stages"]
    # depthwise 8·14·14·9 = 14,112 MACs → 28,224 FLOP at 1 GFLOP/s = 0.028224 ms (its bytes take 0.014784 ms);
    # pointwise 64·14·14·8 = 100,352 MACs → 0.200704 ms; each against the 0.5 ms "measured"
    assert depthwise["roofline"]["fraction"] == pytest.approx(0.028224 / 0.5)
    assert pointwise["roofline"]["fraction"] == pytest.approx(0.200704 / 0.5)
    assert depthwise["latency"]["median_ms"] == 0.5  # each stage timed on its own


def test_cli_compare_ignores_a_calibration_for_other_threads() -> None:
    _store_peaks(threads=2)
    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16",
                                      "--no-latency", "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["environment"]["calibration"] is None


def test_cli_roofline_flag_and_compact_form() -> None:
    _store_peaks()
    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16",
                                      "--rounds", "2", "--min-time", "0.002", "--roofline"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Roofline: work" in out and "Roofline: bounds (ms)" in out
    assert "allocator" in out and "1 thread" in out
    assert "Predicted speedup: separable 7.89×" in out  # 1.806336 / 0.228928 = 7.890...


def test_cli_csv_has_roofline_columns() -> None:
    _store_peaks()
    import csv

    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16",
                                      "--no-latency", "--format", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["verdict"] == "compute-bound"
    assert float(rows[0]["roofline_bound_ms"]) == pytest.approx(1.806336)
    assert float(rows[1]["ratio_roofline"]) == pytest.approx(1.806336 / 0.228928, rel=1e-5)


def test_cli_broken_cache_stops_a_timed_run_but_not_one_that_times_nothing(tmp_path: Path) -> None:
    calibrate.cache_path().parent.mkdir(parents=True, exist_ok=True)  # the conftest cache dir exists already
    calibrate.cache_path().write_text("{not json", encoding="utf-8")
    flags = ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16"]
    result = CliRunner().invoke(app, [*flags, "--min-time", "0.001", "--rounds", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("convcost: error: the calibration cache ")
    assert "convcost calibrate --refresh" in result.stderr
    # --no-latency times nothing: the broken cache is a warning and the run goes on without bounds
    result = CliRunner().invoke(app, [*flags, "--no-latency", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("convcost: warning: the calibration cache ")
    assert json.loads(result.stdout)["environment"]["calibration"] is None


def test_dtype_keys_the_cache() -> None:
    _store_peaks()
    assert calibrate.cached("cpu", DType.FLOAT32, 1) is not None
    assert calibrate.cached("cpu", DType.BFLOAT16, 1) is None
    assert calibrate.cached("cpu", DType.FLOAT32, 2) is None


def test_grouped_convs_pay_the_grouped_call_cost() -> None:
    from dataclasses import replace

    # a 90 µs grouped call against 1 µs for every other call
    peaks = replace(PEAKS, grouped_call_overhead_s=90e-6)
    comparison = compare(parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": 16, "act": "relu"}), None, peaks)
    depthwise, pointwise = (stage.roofline for stage in comparison.alternatives[0].stages)
    assert depthwise is not None and pointwise is not None
    assert depthwise.overhead_ms == pytest.approx(0.090 + 0.001)  # the depthwise conv, then a ReLU call
    assert pointwise.overhead_ms == pytest.approx(0.001 + 0.001)  # a 1×1 conv is a dense call
    assert depthwise.verdict is RooflineBound.OVERHEAD  # 0.091 ms ≥ its bound of 0.028224 ms
    dense = comparison.dense.roofline
    assert dense is not None and dense.overhead_ms == pytest.approx(0.002)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("peak_flops", 0, "peak_flops must be a positive finite number, got 0"),
        ("peak_bandwidth", -1.0, "peak_bandwidth must be a positive finite number, got -1.0"),
        ("peak_flops", float("nan"), "peak_flops must be a positive finite number, got nan"),
        ("call_overhead_s", float("inf"), "call_overhead_s must be a positive finite number, got inf"),
        ("peak_flops", "fast", "peak_flops must be a number, got 'fast'"),
        ("grouped_call_overhead_s", 0.0, "grouped_call_overhead_s must be a positive finite number, got 0.0"),
        ("threads", 1.5, "threads must be a whole number, got 1.5"),
    ],
)
def test_non_positive_or_non_finite_peaks_are_refused(field: str, value: object, message: str) -> None:
    data = PEAKS.to_dict()
    data[field] = value
    with pytest.raises((TypeError, ValueError), match=message):
        Calibration.from_dict(data)


def test_cli_compare_with_a_zero_peak_is_a_usage_error() -> None:
    _store_peaks()
    data = json.loads(calibrate.cache_path().read_text())
    for entry in data["entries"].values():
        entry["peak_flops"] = 0
    calibrate.cache_path().write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16",
                                      "--min-time", "0.001", "--rounds", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "peak_flops must be a positive finite number, got 0" in result.stderr
    assert "convcost calibrate --refresh" in result.stderr


def test_cuda_cache_key_leaves_out_threads() -> None:
    from convcost.cost.roofline import cache_key

    assert cache_key("gpu box", "2.13", "cuda", "float32", 1) == cache_key("gpu box", "2.13", "cuda", "float32", 8)
    assert cache_key("cpu box", "2.13", "cpu", "float32", 1) != cache_key("cpu box", "2.13", "cpu", "float32", 2)


def test_an_entry_without_the_grouped_cost_still_loads() -> None:
    data = PEAKS.to_dict()
    del data["grouped_call_overhead_s"]
    loaded = Calibration.from_dict(data)
    assert loaded.grouped_call_overhead_s is None and loaded.conv_call_s(grouped=True) == PEAKS.call_overhead_s


def test_predicted_speedup_counts_per_call_cost_for_tiny_layers() -> None:
    # at 1 GFLOP/s and 1 GB/s: dense 2 ms bound, 1 call; a tiny alternative's 0.2 µs bound is below the cost of
    # its 3 calls, so its predicted time is the calls' cost, not the bound
    dense = analyse(1_000_000, 10_000, None, PEAKS, calls=1, overhead_s=1e-5)  # 2 ms vs 0.01 ms of calls
    tiny = analyse(100, 100, None, PEAKS, calls=3, overhead_s=3e-4)  # bound 0.0002 ms vs 0.3 ms of calls
    assert predicted_speedup(dense, tiny) == pytest.approx(2.0 / 0.3)
