"""convcost calibrate: measuring peaks (tiny sizes here) and the cache keyed by machine, torch, dtype, threads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.roofline import Calibration
from convcost.run import calibrate
from convcost.run.calibrate import CalibrationCacheError, CalibrationSettings
from convcost.spec.compare import DType

TINY = CalibrationSettings(max_matmul=64, copy_bytes=64 << 10, min_time=0.002)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CONVCOST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate, "default_settings", lambda device: TINY)
    yield tmp_path / "cache"


def test_measure_peaks_on_tiny_sizes() -> None:
    found = calibrate.measure_peaks("cpu", DType.FLOAT32, 1, TINY)
    assert found.peak_flops > 0 and found.peak_bandwidth > 0 and found.call_overhead_s > 0
    assert found.grouped_call_overhead_s is not None and found.grouped_call_overhead_s > 0
    assert found.matmul_size == 64  # below the first size of the ladder, the largest allowed is used
    assert found.copy_bytes == 64 << 10  # 16,384 float32 elements
    assert (found.device, found.dtype, found.threads, found.torch) == ("cpu", "float32", 1, torch.__version__)
    assert found.ridge == pytest.approx(found.peak_flops / found.peak_bandwidth)
    # every measured figure carries its 95 % interval, which holds the figure itself (the median of the blocks)
    for figure, interval in [(found.call_overhead_s, found.call_overhead_interval),
                             (found.grouped_call_overhead_s, found.grouped_call_overhead_interval),
                             (found.peak_flops, found.peak_flops_interval),
                             (found.peak_bandwidth, found.peak_bandwidth_interval)]:  # fmt: skip
        assert interval is not None and figure is not None
        assert interval[0] <= figure <= interval[1], (figure, interval)
    again = Calibration.from_dict(json.loads(json.dumps(found.to_dict())))
    assert again.call_overhead_interval == found.call_overhead_interval  # the cache keeps it


def test_bfloat16_copy_counts_two_bytes_per_element() -> None:
    found = calibrate.measure_peaks("cpu", DType.BFLOAT16, 1, TINY)
    assert found.copy_bytes == 64 << 10 and found.dtype == "bfloat16"


def test_threads_are_restored() -> None:
    torch.set_num_threads(1)
    calibrate.measure_peaks("cpu", DType.FLOAT32, 2, TINY)
    assert torch.get_num_threads() == 1


def test_store_and_find(private_cache: Path) -> None:
    found = calibrate.measure_peaks("cpu", DType.FLOAT32, 1, TINY)
    path = calibrate.store(found)
    assert path == private_cache / "calibration.json"
    assert calibrate.cached("cpu", DType.FLOAT32, 1) == found
    assert calibrate.cached("cpu", DType.FLOAT32, 2) is None  # keyed by threads
    assert calibrate.cached("cpu", DType.FLOAT16, 1) is None  # and by dtype
    other_torch = replace(found, torch="0.0.0")
    calibrate.store(other_torch)
    assert calibrate.cached("cpu", DType.FLOAT32, 1) == found  # another torch is another entry
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 2 and found.key in entries


def test_key_names_machine_torch_device_dtype_threads() -> None:
    key = calibrate.key_for("cpu", DType.BFLOAT16, 2)
    assert key.startswith(calibrate.machine_name("cpu") + " | ")
    assert key.endswith(f"| torch {torch.__version__} | cpu | bfloat16 | 2 threads")


def test_cache_dir_follows_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CONVCOST_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert calibrate.cache_dir() == tmp_path / "xdg" / "convcost"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert calibrate.cache_dir() == tmp_path / "home" / ".cache" / "convcost"
    monkeypatch.setenv("CONVCOST_CACHE_DIR", str(tmp_path / "mine"))
    assert calibrate.cache_dir() == tmp_path / "mine"


def test_broken_cache_is_reported_and_replaced(private_cache: Path) -> None:
    private_cache.mkdir(parents=True)
    (private_cache / "calibration.json").write_text('{"schema_version": 99, "entries": {}}')
    with pytest.raises(CalibrationCacheError, match="schema_version 99"):
        calibrate.cached("cpu", DType.FLOAT32, 1)
    fresh, measured = calibrate.calibration_for("cpu", DType.FLOAT32, 1, refresh=True, settings=TINY)
    assert measured and calibrate.cached("cpu", DType.FLOAT32, 1) == fresh


def test_malformed_entry_is_reported(private_cache: Path) -> None:
    private_cache.mkdir(parents=True)
    key = calibrate.key_for("cpu", DType.FLOAT32, 1)
    (private_cache / "calibration.json").write_text(json.dumps({"schema_version": 1, "entries": {key: {"x": 1}}}))
    with pytest.raises(CalibrationCacheError, match=r"is broken: entry .* has no 'machine'"):
        calibrate.cached("cpu", DType.FLOAT32, 1)


def test_calibration_round_trips_through_json() -> None:
    found = calibrate.measure_peaks("cpu", DType.FLOAT32, 1, TINY)
    assert Calibration.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_measures_then_reuses_then_refreshes() -> None:
    code, out, err = run("calibrate", "--format", "json")
    assert code == 0, err
    first = json.loads(out)
    assert first["measured_now"] is True and first["threads"] == 1 and first["dtype"] == "float32"
    code, out, _ = run("calibrate", "--format", "json")
    second = json.loads(out)
    assert second["measured_now"] is False and second["measured_at"] == first["measured_at"]
    assert second["peak_flops"] == first["peak_flops"]
    code, out, _ = run("calibrate", "--format", "json", "--refresh")
    assert code == 0 and json.loads(out)["measured_now"] is True


def test_cli_table_says_where_the_cache_is(private_cache: Path) -> None:
    code, out, err = run("calibrate", "--threads", "2")
    assert code == 0, err
    assert "GFLOP/s" in out and "GB/s" in out and "µs" in out and "2 threads" in out
    assert "measured now" in out and str(private_cache) in out.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dtype", "float64"],
            "convcost: error: --dtype: Input should be 'float32', 'bfloat16' or 'float16', got 'float64'\n",
        ),
        (["--device", "tpu"], "convcost: error: --device: Input should be 'cpu' or 'cuda', got 'tpu'\n"),
    ],
)
def test_cli_bad_input(args: list[str], message: str) -> None:
    code, _, err = run("calibrate", *args)
    assert code == 2 and err == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_cli_cuda_without_cuda() -> None:
    code, _, err = run("calibrate", "--device", "cuda")
    assert code == 2 and err.startswith("convcost: error: --device cuda: CUDA is not available")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_peaks_on_cuda() -> None:
    found = calibrate.measure_peaks("cuda", DType.FLOAT32, 1, CalibrationSettings(max_matmul=256,
                                                                                  copy_bytes=1 << 20,
                                                                                  min_time=0.01))  # fmt: skip
    assert found.device == "cuda" and found.peak_flops > 0 and found.peak_bandwidth > 0


def test_cpu_calibration_records_no_tf32() -> None:
    assert calibrate.matmul_tf32("cpu") is None
    assert calibrate.measure_peaks("cpu", DType.FLOAT32, 1, TINY).matmul_tf32 is None


def test_cuda_matmul_uses_the_convs_tf32_setting_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # reasoned from code, no GPU needed: cuDNN convs default to TF32, matmuls do not; the peak must use the former
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        assert calibrate.matmul_tf32("cuda") is True
        seen: list[bool] = []
        with calibrate._matmul_precision(calibrate.matmul_tf32("cuda")):
            seen.append(torch.backends.cuda.matmul.allow_tf32)
        assert seen == [True] and torch.backends.cuda.matmul.allow_tf32 is False
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        assert calibrate.matmul_tf32("cuda") is False
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
