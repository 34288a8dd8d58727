"""`convcost model` through the CLI: exit codes, exact error lines, JSON that parses, a table that fits 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app

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
    assert sum(item["macs"] for item in data["by_kind"]) == total["macs"]
    assert sum(layer["macs"] for layer in data["layers"]) == total["macs"]


def test_model_table_fits_80_columns() -> None:
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
    assert data["not_counted"] == [{"name": "norm", "type": "LayerNorm", "params": 576}]


def test_model_exit_1_when_counters_disagree() -> None:
    result = runner.invoke(app, ["model", "tests.models_for_tests:functional_conv", "--input", "3x8x8"])
    assert result.exit_code == 1, result.output
    assert "✗ model: MACs (FlopCounterMode): formula 0, measured 3,888" in result.stdout


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


def test_model_latency_gets_a_roofline_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.calibrate
    from convcost.roofline import Calibration

    peaks = Calibration(machine="test", torch="x", device="cpu", dtype="float32", threads=1, peak_flops=1e9,
                        peak_bandwidth=1e9, call_overhead_s=1e-6, matmul_size=1, copy_bytes=1,
                        measured_at="2026-01-01T00:00:00", allocator="test")  # fmt: skip
    monkeypatch.setattr(convcost.calibrate, "cached", lambda *args: peaks)
    args = ["model", "tests.models_for_tests:tiny_residual", "--input", "3x6x6", "--latency", "--rounds", "1",
            "--min-time", "0.001", "-f", "json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stem = next(layer for layer in json.loads(result.stdout)["layers"] if layer["name"] == "stem")
    line = stem["roofline"]
    # stem: Conv2d(3, 8, 3, padding=1) on 3×6×6 → 8×6×6; bytes = (108 in + 224 params + 288 out) · 4 = 2,480
    assert line["min_bytes"] == (3 * 6 * 6 + (8 * 3 * 9 + 8) + 8 * 6 * 6) * 4
    macs = 8 * 6 * 6 * 3 * 9  # 7,776
    assert line["macs"] == macs
    # at 1 GFLOP/s and 1 GB/s: compute 2·7,776 FLOP → 15.552 µs, memory 2,480 B → 2.48 µs
    assert line["compute_ms"] == pytest.approx(2 * macs / 1e9 * 1e3)
    assert line["memory_ms"] == pytest.approx(2480 / 1e9 * 1e3)
    assert line["verdict"] == "compute-bound"
    assert line["fraction"] == pytest.approx(line["bound_ms"] / stem["latency"]["median_ms"])
