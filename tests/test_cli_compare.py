"""`convcost compare` end to end through typer's CliRunner: exit codes, numbers, error lines, formats."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from convcost.cli import app
from convcost.spec.bounds import cores
from convcost.version import __version__

runner = CliRunner()
BLOG = ["compare", "--cin", "8", "--cout", "64", "-k", "3"]


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_blog_numbers_in_the_table() -> None:
    code, out, err = run(*BLOG, "--no-latency")
    assert code == 0, out + err
    for figure in ("4,672", "656", "73,156,608", "9,271,584", "7.89×", "7.12×", "bound R·S = 9"):
        assert figure in out
    assert "✓ 15 checks" in out
    assert "8→64 3×3 · input 1×8×128×128 · float32 · cpu · 1 thread" in out


def test_table_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(*BLOG, "--no-latency", "--vs", "separable,grouped,spatial", "--groups", "4", "--norm", "batch",
                       "--act", "relu6", "--batch", "64")  # fmt: skip
    assert code == 0
    # nothing wraps a number: every line of the 80-column output fits
    assert max(len(line) for line in out.splitlines()) <= 80


def test_json_has_schema_raw_integers_and_environment() -> None:
    code, out, _ = run(*BLOG, "--no-latency", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["schema_version"] == 4
    assert data["dense"]["params"] == 4672 and data["dense"]["macs"] == 73_156_608
    separable = data["alternatives"][0]
    assert separable["macs"] == 9_271_584 and separable["macs_flop_counter"] == 9_271_584
    # ptflops' raw figure keeps the bias adds it folds in: 9,271,584 + (8 + 64)·126·126
    assert separable["ptflops_raw"] == 9_271_584 + 72 * 126 * 126
    assert separable["flops"] == 2 * 9_271_584
    assert data["environment"]["torch"] == torch.__version__
    assert data["environment"]["threads"] == 1 and data["environment"]["dtype"] == "float32"
    assert data["ok"] is True and data["failures"] == []
    assert data["ratios"][0]["bound"] == 9


def test_csv_parses_one_row_per_layer_and_stage() -> None:
    code, out, _ = run(*BLOG, "--no-latency", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["layer"], row["stage"]) for row in rows] == [
        ("dense", ""), ("separable", ""), ("separable", "depthwise"), ("separable", "pointwise"),
    ]  # fmt: skip
    assert int(rows[2]["macs"]) + int(rows[3]["macs"]) == int(rows[1]["macs"]) == 9_271_584


def test_markdown_has_tables() -> None:
    code, out, _ = run(*BLOG, "--no-latency", "--format", "markdown")
    assert code == 0
    assert "| dense | 1×64×126×126 | 4,672 | 73,156,608 |" in out


def test_latency_is_measured_side_by_side() -> None:
    code, out, err = run(*BLOG, "--size", "16", "--rounds", "2", "--min-time", "0.002", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    for layer in (data["dense"], data["alternatives"][0]):
        assert layer["latency"]["rounds"] == 2 and layer["latency"]["median_ms"] > 0
    # the speedup shown is that of the best figures; the typical one is that of the medians
    dense, separable = data["dense"]["latency"], data["alternatives"][0]["latency"]
    assert data["ratios"][0]["latency"] == pytest.approx(dense["best_ms"] / separable["best_ms"])
    assert data["ratios"][0]["latency_best"] == pytest.approx(dense["best_ms"] / separable["best_ms"])
    assert data["ratios"][0]["latency_typical"] == pytest.approx(dense["median_ms"] / separable["median_ms"])


def test_shape_mismatch_fails_with_both_shapes() -> None:
    code, out, _ = run("compare", "--cin", "32", "--cout", "64", "-k", "3", "--padding", "1", "--size", "64",
                       "--set", "pointwise.padding=1", "--no-latency")  # fmt: skip
    assert code == 1
    assert "✗ separable: output shape 1×64×66×66 differs from dense 1×64×64×64" in out


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--cin", "0"], "convcost: error: --cin: must be a positive integer, got 0"),
        (["-k", "3x0"], "convcost: error: --kernel: must be a positive integer or RxS, got '3x0'"),
        (["--groups", "3", "--vs", "grouped"],
         "convcost: error: --groups: cin (8) and cout (64) must both be divisible by 3"),
        (["--vs", "depthwise"], "convcost: error: --cout: depthwise needs cout = multiplier × cin = 1 × 8 = 8, got 64"),
        (["--size", "2"], "convcost: error: --kernel: kernel extent 3×3 (with dilation) is larger than the padded "
                          "input 2×2"),
        (["--padding", "same", "--stride", "2"], "convcost: error: --padding: padding 'same' needs stride 1 "
                                                 "(as nn.Conv2d)"),
        (["--size", "-4"], "convcost: error: --size: must be a positive integer or HxW, got -4"),
        (["--set", "pointwise.padding"], "convcost: error: --set: expected STAGE.FIELD=VALUE (e.g. "
                                         "pointwise.padding=1), got 'pointwise.padding'"),
        (["--set", "pointwise.paddin=1"], "convcost: error: --set pointwise.paddin: unknown key"),
        (["--set", "foo.padding=1"], "convcost: error: --set foo: unknown stage (stages: dense, depthwise, "
                                     "pointwise, grouped, row, column, shared)"),
        (["--set", "pointwise.padding=1", "--set", "pointwise.padding=2"],
         "convcost: error: --set: pointwise.padding is given twice"),
        (["--vs", "dense"], "convcost: error: --vs: dense is the reference, always built: name the alternatives to "
                            "compare"),
        (["--cin", "٣"], "convcost: error: --cin: must be a positive integer, got '٣'"),
        (["--groups", "4"], "convcost: error: --groups: only the grouped kind uses groups: add grouped to vs"),
        (["--mid", "4"], "convcost: error: --mid: only the spatial kind has a middle width: add spatial to vs"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--cin", "0"], None),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(args: list[str], line: str | None) -> None:
    base = ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--no-latency"]
    code, out, err = run(*base, *args)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    if line is not None:
        assert err.strip() == line
    else:
        assert err.strip().startswith("convcost: error: --device cuda: CUDA is not available")


def test_unknown_kind_names_the_flag() -> None:
    code, _, err = run(*BLOG, "--vs", "seperable", "--no-latency")
    assert code == 2
    assert err.startswith("convcost: error: --vs: Input should be")
    assert "'seperable'" in err


def test_output_file_is_written(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    code, out, _ = run(*BLOG, "--no-latency", "--format", "json", "-o", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["dense"]["params"] == 4672
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]  # no temporary file left behind


def test_ptflops_failure_is_an_internal_error_not_a_wrong_number(monkeypatch: pytest.MonkeyPatch) -> None:
    import ptflops.aten_ops
    import torch

    def broken(*args: object) -> int:
        raise AssertionError("an unexpected shape")

    # the traced pass calls ptflops' own per-op formulas (convcost.run.dispatch): one that fails is exit 3
    monkeypatch.setitem(ptflops.aten_ops.ATEN_OPS_MAPPING, torch.ops.aten.convolution, broken)
    code, out, err = run(*BLOG, "--no-latency")
    assert code == 3
    assert out == ""
    assert err.strip() == "convcost: error: ptflops failed: aten.convolution: AssertionError: an unexpected shape"


def test_version_and_module_entry_point() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"convcost {__version__}"
    result = subprocess.run([sys.executable, "-m", "convcost", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"convcost {__version__}"


def test_help_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from convcost.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "try:\n"
        "    app(['compare', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--cin" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--cout", "60", "--vs", "depthwise"],  # a wrong cout for depthwise: a rule between a field and a kind
        ["--groups", "4"],  # groups without the grouped kind
        ["-k", "9", "--size", "4"],  # a kernel larger than the input: a rule of the expanded stages
    ],
)
def test_invalid_flags_are_refused_before_torch_is_imported(args: list[str]) -> None:
    # every validation rule lives in convcost.spec: a bad combination answers in the time --help takes
    code = (
        "import sys\n"
        "from convcost.cli import main\n"
        f"sys.argv = ['convcost', 'compare', '--cin', '8', '--cout', '64', '-k', '3', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 2, stop.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("convcost: error: ")


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        assert f"convcost {name}" in readme, name
        code, out, _ = run(name, "--help")
        assert code == 0 and "Usage" in out


def test_memory_guard_refuses_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.spec.bounds

    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 2**30)  # 1 GiB
    # dense input 8·3·512·512·4 B = 25 MiB, output 8·64·510·510·4 B ≈ 508 MiB: over half of 1 GiB
    code, out, err = run("compare", "--cin", "3", "--cout", "64", "-k", "3", "--size", "512", "--batch", "8")
    assert code == 2 and out == ""
    # at batch 1 it would be 533/8 ≈ 67 MiB, well under 512 MiB: the batch is what makes it too large
    assert err.startswith("convcost: error: --batch: these layers need at least ")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["compare", "--cin", "8", "--cout", "64", "-k", "3", "--threads", "0"],
         "convcost: error: compare: Invalid value for '--threads': must be a whole number from 1 to "
         f"{cores()} (the CPU cores this process may use), got 0"),
        (["compare", "--cinn", "8"], "convcost: error: compare: No such option: --cinn (Possible options: --cin)"),
        (["compare", "--cin", "8", "--cout", "64", "-k", "3", "-o", "/nonexistent-dir/x.json"],
         "convcost: error: compare: Invalid value for '--output' / '-o': /nonexistent-dir does not exist"),
        (["batch"], "convcost: error: batch: Missing argument 'FILE'."),
    ],
)  # fmt: skip
def test_usage_errors_from_the_console_script_are_one_line(args: list[str], line: str) -> None:
    # through main(), as users run it: Click's multi-line usage blocks become one line, exit code 2
    result = subprocess.run([sys.executable, "-m", "convcost", *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == line


def test_output_dash_is_stdout_and_symlinks_are_followed(tmp_path: Path) -> None:
    code, out, _ = run(*BLOG, "--formula-only", "-f", "json", "-o", "-")
    assert code == 0 and json.loads(out)["dense"]["params"] == 4672  # 64*8*9 + 64
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    code, _, _ = run(*BLOG, "--formula-only", "-o", str(link))
    assert code == 0
    assert link.is_symlink()  # not replaced by a regular file
    assert json.loads(real.read_text())["dense"]["macs"] == 73_156_608  # 8*64*9*126*126
