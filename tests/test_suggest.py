"""`convcost suggest` and `convcost convert` through the CLI: sorted rows, totals as measured, exact error lines
before torch, emitted code that runs, and a saved model that loads without convcost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import convcost
from convcost.cli import app
from convcost.results.comparison import LatencyStats
from tests.latency_fakes import fixed_run
from tests.models_for_convert import small_net

runner = CliRunner()
SMALL = "tests.models_for_convert:small_net"
ROOT = Path(__file__).resolve().parent.parent


def test_suggest_rows_sorted_by_mac_saving_with_totals_as_measured() -> None:
    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "--batch", "2", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    layers = data["layers"]
    savings = [layer["macs_before"] - layer["macs_after"] for layer in layers]
    assert savings == sorted(savings, reverse=True) and len(layers) == 3
    # conv 5: 32→32 3×3 on 8×8, batch 2: 2·32·64·32·9 = 1,179,648 MACs; separable m=1: 2·32·64·9 + 2·32·64·32
    five = next(layer for layer in layers if layer["name"] == "5")
    assert (five["macs_before"], five["macs_after"]) == (1_179_648, 36_864 + 131_072)
    model = small_net()
    assert data["totals"]["now"]["params"] == sum(parameter.numel() for parameter in model.parameters())
    converted = convcost.convert(model, (2, 3, 16, 16))
    assert data["totals"]["all_applied"]["params"] == sum(p.numel() for p in converted.model.parameters())
    assert all(0 < layer["weight_error"] < 1 for layer in layers)  # seeded random weights: far from low rank


def test_min_saving_marks_the_selection_and_its_totals() -> None:
    # saving of conv 0 (3→16 on 16×16): 3·16·9 ÷ (3·9 + 3·16) = 432 / 75 = 5.76×; conv 3 and 5: 7.02× (see above)
    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "--min-saving", "6x", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {layer["name"]: layer["selected"] for layer in data["layers"]} == {"5": True, "3": True, "0": False}
    zero = next(layer for layer in data["layers"] if layer["name"] == "0")
    selected, every = data["totals"]["selected_applied"], data["totals"]["all_applied"]
    assert selected["macs"] - every["macs"] == zero["macs_before"] - zero["macs_after"]


def test_suggest_table_states_the_function_changes_and_emits_code_that_runs() -> None:
    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "--emit-code"])
    assert result.exit_code == 0, result.output
    assert "re-establish accuracy by fine-tuning" in " ".join(result.output.split())
    code = result.output[result.output.index("model[5] = nn.Sequential(") :]
    model = small_net()
    exec(code, {"nn": torch.nn, "model": model})  # the emitted code, run as a user would paste it
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    assert model[5][0].groups == 32 and model[0][1].out_channels == 16


def test_suggest_latency_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.run.latency

    stats = LatencyStats(1.0, 0.9, 1.1, 0.8, 1.2, 5, 50, best_ms=0.9, interval_ms=(0.85, 0.95))
    monkeypatch.setattr(convcost.run.latency, "measure_run", fixed_run(stats))
    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "--latency"])
    assert result.exit_code == 0, result.output
    assert "ms now" in result.output and result.output.count("0.900 (0.850–0.950)") == 6


@pytest.mark.parametrize(("args", "line"), [
    (["--to", "sideways"], "convcost: error: --to: expected one of separable, spatial, grouped:G, got 'sideways'"),
    (["--to", "grouped:1"], "convcost: error: --to: grouped:G needs G ≥ 2, got 'grouped:1'"),
    (["--multiplier", "0"], "convcost: error: --multiplier: must be a positive integer, got 0"),
    (["--to", "spatial", "--rank", "x"], "convcost: error: --rank: must be a positive integer, got 'x'"),
    (["--min-saving", "0.5x"], "convcost: error: --min-saving: must be a ratio from 1x to 1000000x, got '0.5x'"),
    (["--to", "dense"], "convcost: error: --to: dense merges depthwise + 1×1 pairs: convcost convert --to dense "
                        "does it"),
])  # fmt: skip
def test_bad_values_are_one_line_exit_2_errors_before_torch(args: list[str], line: str) -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom convcost.cli import app\n"
            f"r = CliRunner().invoke(app, ['suggest', 'nosuch.module:factory', '--input', '3x8x8', *{args!r}])\n"
            "print(r.exit_code); print(r.output.strip()); print('torch' in sys.modules)")  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    exit_code, *rest, torch_imported = shown.stdout.strip().splitlines()
    assert (exit_code, " ".join(rest), torch_imported) == ("2", line, "False")


def test_convert_saves_a_model_that_loads_without_convcost(tmp_path: Path) -> None:
    saved = tmp_path / "converted.pt2"
    result = runner.invoke(app, ["convert", SMALL, "--input", "3x16x16", "--multiplier", "9", "-o", str(saved)])
    assert result.exit_code == 0, result.output
    assert f"saved to {saved}" in " ".join(result.output.split())
    x = torch.randn(1, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    # a fresh interpreter in which neither convcost nor the model's own module can be imported
    code = ("import sys\nsys.modules['convcost'] = None\nsys.modules['tests'] = None\nimport torch\n"
            f"m = torch.export.load({str(saved)!r}).module()\ny = m(torch.load({str(tmp_path / 'x.pt')!r}))\n"
            f"torch.save(y, {str(tmp_path / 'y.pt')!r})\nprint(sum(p.numel() for p in m.parameters()))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    model = small_net().eval()
    converted = convcost.convert(model, (1, 3, 16, 16), multiplier=9).model
    assert int(loaded.stdout.strip()) == sum(parameter.numel() for parameter in converted.parameters())
    # multiplier 9 = R·S: the converted model is the original to float32 rounding
    assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-4)


def test_convert_to_dense_says_which_pairs_merge(tmp_path: Path) -> None:
    saved = tmp_path / "dense.pt2"
    args = ["convert", "tests.models_for_convert:separable_blocks", "--input", "8x8x8", "--to", "dense",
            "-o", str(saved), "-f", "json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    assert [layer["name"] for layer in data["layers"]] == ["0.0"]
    assert data["refused"][0]["name"] == "2" and "nonlinearity" in data["refused"][0]["reason"]
    assert saved.exists()


def test_convert_with_nothing_to_convert_is_exit_2(tmp_path: Path) -> None:
    args = ["convert", "mobilenet_v1", "--to", "dense", "-o", str(tmp_path / "m.pt2")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("convcost: error: mobilenet_v1: no layer to convert with --to dense (refused: ")
    assert "a nonlinearity between" in result.output and not (tmp_path / "m.pt2").exists()


def test_suggest_on_a_bundled_model_file() -> None:
    result = runner.invoke(app, ["suggest", "mobilenet_v1", "--batch", "2", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # the one dense conv, 3→32 3×3 stride 2 to 112²: 2·32·112²·27 = 21,676,032 MACs; separable: depthwise
    # 2·3·112²·9 = 677,376 plus pointwise 2·32·112²·3 = 2,408,448
    [layer] = data["layers"]
    assert (layer["name"], layer["macs_before"], layer["macs_after"]) == ("0.dense.conv", 21_676_032, 3_085_824)
    assert data["totals"]["now"]["params"] == 4_231_976  # the MobileNet paper's 4.2M (README, convcost model)
    assert data["totals"]["now"]["macs"] == 2 * 568_740_352  # its 569M mult-adds, at batch 2
    assert data["totals"]["all_applied"]["macs"] == data["totals"]["now"]["macs"] - 21_676_032 + 3_085_824


@pytest.mark.parametrize("width", [120, 60])
def test_suggest_table_golden(width: int, overwrite: bool) -> None:
    import io

    from rich.console import Console

    from convcost.report.format import OutputFormat
    from convcost.report.suggest import render
    from convcost.run.suggest import suggest

    result = suggest(small_net(), (1, 3, 16, 16), min_saving="6x")
    result.source = SMALL
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(render(result, OutputFormat.TABLE, emit_code=True), crop=False)  # as the CLI prints (tables.show)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    golden = Path(__file__).parent / "golden" / f"suggest_small_net_{width}.txt"
    if overwrite:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    # invariant: the totals are the model's params less each row's saving
    layers = result.layers
    assert result.after_all is not None and result.before is not None
    assert result.after_all.params == result.before.params - sum(x.params_before - x.params_after for x in layers)


def test_suggest_csv_and_markdown() -> None:
    import csv
    import io

    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["name"] for row in rows] == ["5", "3", "0"] and rows[0]["kernel"] == "3x3"
    assert rows[0]["input_shape"] == "1x32x8x8" and rows[0]["selected"] == "true"
    result = runner.invoke(app, ["suggest", SMALL, "--input", "3x16x16", "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("| Layer | Shape | Params now |") and result.output.count("\n| ") == 3  # rows


def test_convert_names_a_bad_select_by_its_flag(tmp_path: Path) -> None:
    args = ["convert", SMALL, "--input", "3x16x16", "-o", str(tmp_path / "m.pt2"), "--select", "zz"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output == "convcost: error: --select: 'zz' is not a layer that --to separable can convert " \
                            "(candidates: 0, 3, 5)\n"  # fmt: skip


def test_convert_never_saves_over_the_model_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o naming the model's own file (its YAML, or the .py of an import path) is refused before anything runs:
    exit 2, one line, the file as it was."""
    model_file = tmp_path / "net.yaml"
    model_file.write_text((ROOT / "configs" / "mobilenet_v1.yaml").read_text())
    source = tmp_path / "ownnet.py"
    source.write_text("from tests.models_for_convert import small_net as net\n")
    monkeypatch.chdir(tmp_path)  # the working directory is on sys.path while the factory is imported
    for args, written in (
        ([str(model_file), "-o", str(model_file)], model_file),
        (["ownnet:net", "--input", "3x16x16", "-o", "ownnet.py"], source),
    ):
        before = written.read_bytes()
        result = runner.invoke(app, ["convert", *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("convcost: error: -o/--output: ") and "is an input" in result.output
        assert written.read_bytes() == before
