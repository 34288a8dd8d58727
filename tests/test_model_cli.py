"""`convcost model` through the CLI: exit codes, exact error lines, JSON that parses, a table that fits 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from tests.latency_fakes import fixed_run

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
runner = CliRunner()


def test_model_json_at_small_size() -> None:
    result = runner.invoke(app, ["model", str(CONFIGS / "mobilenet_v1.yaml"), "--size", "64", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    total, dense = data["total"], data["dense_equivalent"]
    assert isinstance(total["params"], int) and isinstance(total["macs"], int)
    assert total["params"] == 4_231_976  # params do not depend on the input size
    # at 64×64 every feature map is (64/224)² of the 224 one: MACs scale accordingly except the linear layer
    assert total["macs"] == data["total"]["macs_flop_counter"] == data["total"]["macs_ptflops"]
    assert dense["params"] > total["params"] and dense["pairs_replaced"] == 13
    assert {item["kind"] for item in data["by_kind"]} >= {"1×1 conv", "depthwise conv", "dense conv", "linear"}
    # 224's conv MACs (568,740,352 less the classifier's 1,024·1,000 = 1,024,000) times (32/112)² = 4/49, plus the
    # classifier: 567,716,352·4/49 + 1,024,000 = 46,344,192 + 1,024,000; the 1×1 convs 539,492,352·4/49
    assert total["macs"] == 47_368_192
    assert {item["kind"]: item["macs"] for item in data["by_kind"]}["1×1 conv"] == 44_040_192
    assert {layer["name"]: layer["macs"] for layer in data["layers"]}["fc"] == 1_024_000


def test_model_table_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["model", str(CONFIGS / "mobilenet_v2.yaml"), "--size", "32", "--by-kind"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("block11.2 ") for line in lines)
    assert "Saving: 3.18× fewer params" in result.stdout
    assert any(line.strip().startswith("1×1 conv") for line in lines)


def test_model_import_path_latency() -> None:
    args = ["model", "tests.models_for_tests:tiny_residual", "--input", "3x6x6", "--latency", "--rounds", "1",
            "--min-time", "0.001", "-f", "json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["latency"]["median_ms"] > 0
    timed = [layer["name"] for layer in data["layers"] if layer["latency"]]
    assert "stem" in timed and "head" in timed
    assert data["not_counted"] == [] and data["complete"] is True  # its LayerNorm has a formula


def test_model_exit_1_when_counters_disagree() -> None:
    result = runner.invoke(app, ["model", "tests.models_for_tests:functional", "--input", "5x16"])
    assert result.exit_code == 1, result.output
    # tensordot (5×16)·(16×16) = 1,280 MACs has no formula; FlopCounterMode sees it beside our 5,040
    assert "✗ model: MACs (FlopCounterMode): formula 5,040, measured 6,320" in result.stdout


def test_model_errors_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 0}\n")
    result = runner.invoke(app, ["model", str(path)])
    assert result.exit_code == 2
    expected = f"convcost: error: {path}:3: layers[0].kernel: must be a positive integer or RxS, got 0"
    assert result.stderr.strip() == expected
    result = runner.invoke(app, ["model", "tests.models_for_tests:tiny_residual"])
    assert result.exit_code == 2
    expected = "convcost: error: --input: required for an import path: the input CxHxW, e.g. 3x224x224"
    assert result.stderr.strip() == expected
    result = runner.invoke(app, ["model", str(CONFIGS / "mobilenet_v1.yaml"), "--width-multiplier", "-1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "convcost: error: --width-multiplier: must be a positive number, got '-1'"
    result = runner.invoke(app, ["model", "nosuchpackage.mod:factory", "--input", "3x8x8"])
    assert result.exit_code == 2
    assert "cannot import nosuchpackage.mod" in result.stderr


PEAKS_ARGS = dict(machine="test", torch="x", device="cpu", dtype="float32", threads=1, peak_flops=1e9,
                  peak_bandwidth=1e9, call_overhead_s=1e-6, matmul_size=1, copy_bytes=1,
                  measured_at="2026-01-01T00:00:00", allocator="test")  # fmt: skip
MEDIAN_MS = 0.05  # every timed case "takes" 50 µs: the latency harness is replaced, so the fraction is arithmetic


def _fixed_latency(monkeypatch: pytest.MonkeyPatch, grouped_call_overhead_s: float | None = None) -> None:
    import convcost.run.cache
    import convcost.run.latency
    from convcost.cost.roofline import Calibration
    from convcost.results.comparison import LatencyStats

    peaks = Calibration(**PEAKS_ARGS, grouped_call_overhead_s=grouped_call_overhead_s)  # type: ignore[arg-type]
    monkeypatch.setattr(convcost.run.cache, "cached", lambda *args: peaks)
    stats = LatencyStats(MEDIAN_MS, MEDIAN_MS, MEDIAN_MS, MEDIAN_MS, MEDIAN_MS, 1, 1)
    monkeypatch.setattr(convcost.run.latency, "measure_run", fixed_run(stats))


def test_model_latency_gets_a_roofline_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_latency(monkeypatch)
    args = [
        "model",
        "tests.models_for_tests:tiny_residual",
        "--input",
        "3x6x6",
        "--depth",
        "1",
        "--latency",
        "-f",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    line = layers["stem"]["roofline"]
    # stem: Conv2d(3, 8, 3, padding=1) on 3×6×6 → 8×6×6; bytes = (108 in + 224 params + 288 out) · 4 = 2,480
    assert line["min_bytes"] == 2480
    assert line["macs"] == 7776  # 8·6·6·3·9
    # at 1 GFLOP/s and 1 GB/s: compute 2·7,776 FLOP → 15.552 µs, memory 2,480 B → 2.48 µs
    assert line["compute_ms"] == pytest.approx(0.015552)
    assert line["memory_ms"] == pytest.approx(0.00248)
    assert line["verdict"] == "compute-bound"
    assert line["fraction"] == pytest.approx(0.015552 / 0.05)  # bound ÷ the 50 µs the harness "measured"
    # block: conv 8→8 (288 in + 576 weights + 288 out) then its BatchNorm (288 in + 16 params + 288 out), 2 calls
    block = layers["block"]["roofline"]
    assert block["min_bytes"] == (288 + 576 + 288 + 288 + 16 + 288) * 4
    assert block["overhead_ms"] == pytest.approx(0.002)


def test_model_and_compare_share_one_bytes_and_calls_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from convcost.cost.roofline import Calibration
    from convcost.run.comparison import compare
    from convcost.spec.kinds import parse_compare

    _fixed_latency(monkeypatch, grouped_call_overhead_s=90e-6)
    path = tmp_path / "m.yaml"
    path.write_text(
        "input: {channels: 8, size: 16}\ndefaults: {bias: false, norm: batch, act: relu}\n"
        "layers:\n  - {name: sep, kind: separable, cout: 32, kernel: 3}\n  - {name: flat, kind: flatten}\n"
    )
    result = runner.invoke(app, ["model", str(path), "--latency", "-f", "json"])
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer["roofline"] for layer in json.loads(result.stdout)["layers"]}
    spec = parse_compare({"cin": 8, "cout": 32, "kernel": 3, "padding": 1, "size": 16, "bias": False,
                          "norm": "batch", "act": "relu"})  # fmt: skip
    peaks = Calibration(**PEAKS_ARGS, grouped_call_overhead_s=90e-6)  # type: ignore[arg-type]
    separable = compare(spec, None, peaks).alternatives[0]
    # by hand: depthwise 8·256 in + 72 weights + 8·256 out, BN 2,048 + 16 + 2,048, ReLU 2,048 + 2,048;
    # pointwise 2,048 + 256 + 8,192, BN 8,192 + 64 + 8,192, ReLU 8,192 + 8,192 → 12,376 + 43,328 = 55,704 elements
    assert layers["sep"]["min_bytes"] == separable.min_bytes == 55_704 * 4
    # the depthwise conv pays the grouped call (90 µs), its BN and ReLU and the three pointwise calls 1 µs each
    assert layers["sep"]["overhead_ms"] == pytest.approx(0.090 + 5 * 0.001)
    assert separable.roofline is not None and separable.roofline.overhead_ms == pytest.approx(0.095)
    assert layers["flat"]["min_bytes"] == 0  # a view moves nothing


def test_model_latency_with_a_broken_cache_stops_before_timing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import convcost.run.latency
    from convcost.cost.roofline import Calibration
    from convcost.run import calibrate

    monkeypatch.setenv("CONVCOST_CACHE_DIR", str(tmp_path))

    def never(*args: object) -> None:
        raise AssertionError("timed before the cache was read")

    monkeypatch.setattr(convcost.run.latency, "measure_run", never)
    data = Calibration(**{**PEAKS_ARGS, "machine": calibrate.machine_name("cpu"),  # type: ignore[arg-type]
                          "torch": __import__("torch").__version__}).to_dict()  # fmt: skip
    data["peak_flops"] = 0
    key = calibrate.key_for("cpu", __import__("convcost.spec.compare").spec.compare.DType.FLOAT32, 1)
    (tmp_path / "calibration.json").write_text(json.dumps({"schema_version": 1, "entries": {key: data}}))
    result = runner.invoke(app, ["model", str(CONFIGS / "mobilenet_v1.yaml"), "--size", "32", "--latency"])
    assert result.exit_code == 2, result.output
    assert "peak_flops must be a positive finite number, got 0" in result.stderr
    assert "convcost calibrate --refresh" in result.stderr


def test_model_memory_guard_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import convcost.spec.bounds

    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 1 << 30)
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 512, kernel: 3}\n")
    result = runner.invoke(app, ["model", str(path), "--size", "100000"])
    assert result.exit_code == 2, result.output
    expected = f"convcost: error: {path}: input.size: at input.size 100000×100000 (input 1×3×100000×100000) "
    assert result.stderr.startswith(expected)


def test_model_roofline_table_implies_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_latency(monkeypatch)
    args = ["model", "tests.models_for_tests:tiny_residual", "--input", "3x6x6", "--depth", "1", "--roofline"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Roofline per layer" in result.stdout
    stem = next(line for line in result.stdout.splitlines() if line.startswith("stem ") and "compute" in line)
    # stem: 7,776 MACs, 2,480 bytes, 2·7,776/2,480 = 6.27 FLOP/B; in 50 µs: 7,776/5e-5 = 0.156 GMAC/s and
    # 2,480/5e-5 = 0.0496 GB/s; bound 0.015552 ms = 31% of the 50 µs "measured"
    assert stem.split() == ["stem", "7.78k", "2.48k", "6.27", "0.156", "0.0496", "0.0156", "31%", "compute"]


def test_model_dtype_and_device_flags() -> None:
    args = ["model", "tests.models_for_tests:tiny_residual", "--input", "3x6x6", "--dtype", "bfloat16", "-f", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["environment"]["dtype"] == "bfloat16"
    assert data["total"]["macs"] == data["total"]["macs_flop_counter"]  # counts do not depend on the dtype
    bad = runner.invoke(
        app, ["model", "tests.models_for_tests:tiny_residual", "--input", "3x6x6", "--dtype", "float64"]
    )
    assert bad.exit_code == 2
    wanted = "convcost: error: --dtype: Input should be 'float32', 'bfloat16' or 'float16', got 'float64'"
    assert bad.stderr.strip() == wanted
