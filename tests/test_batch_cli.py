"""`convcost batch` and `convcost schema` end to end through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.results.batch import EntryResult
from convcost.run import batch as batch_module
from convcost.spec.batch import Batch

runner = CliRunner()

SMALL = """\
    version: 1
    defaults: {kernel: 3, size: 16}
    layers:
      - {name: blog, cin: 8, cout: 64}
      - {name: padded-pointwise, cin: 8, cout: 16, padding: 1, pointwise: {padding: 1}}
    """

WITH_INVALID = """\
    defaults: {kernel: 3, size: 16}
    layers:
      - {name: fine, cin: 8, cout: 16}
      - {name: typo, cin: 8, cout: 16, kernal: 3}
      - {name: zero, cin: 0, cout: 16}
    """


def write(tmp_path: Path, text: str, name: str = "layers.yaml") -> str:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return str(path)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_summary_table_and_exit_1_for_a_shape_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    code, out, err = run("batch", path, "--no-latency")
    assert code == 1, out + err
    assert err == ""  # no progress bar when stderr is not a terminal, and a failed check is not an error
    assert f"{path}: 2 entries: 1 ok, 1 failed" in out
    # 8→64 3×3 on 16×16: dense 8·64·9 + 64 = 4,672 params, 64·14·14·8·9 = 903,168 MACs;
    # separable 8·14·14·9 + 64·14·14·8 = 14,112 + 100,352 = 114,464 MACs
    row = next(line for line in out.splitlines() if line.startswith(" blog"))
    assert "4,672 → 656" in row and "903,168 → 114,464" in row and row.rstrip().endswith("ok")
    assert "✗" in next(line for line in out.splitlines() if line.startswith(" padded-pointwise"))
    # padding 1 keeps 16×16 through the depthwise conv; the padded 1×1 conv makes it 18×18
    assert f"✗ {path}:5: padded-pointwise: separable: output shape 1×16×18×18 differs from dense 1×16×16×16" in out


def test_invalid_entries_exit_2_with_one_line_each_and_the_valid_ones_still_run(tmp_path: Path) -> None:
    path = write(tmp_path, WITH_INVALID)
    code, out, err = run("batch", path, "--no-latency", "--format", "json")
    assert code == 2
    assert err.splitlines() == [
        f"convcost: error: {path}:4: layers[1].kernal: unknown key; did you mean 'kernel'?",
        f"convcost: error: {path}:5: layers[2].cin: must be a positive integer, got 0",
    ]
    data = json.loads(out)
    assert [entry["status"] for entry in data["entries"]] == ["ok", "invalid", "invalid"]
    # 8→16 3×3 on 16×16: 16·14·14·8·9 = 225,792 dense MACs
    assert data["entries"][0]["rows"][0]["dense_macs"] == 225_792
    assert data["counts"]["invalid"] == 2 and data["ok"] is False


def test_problems_of_the_file_itself_exit_2_and_nothing_runs(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2\nlayer:\n  - {cin: 8}\n")
    code, out, err = run("batch", path, "--no-latency")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"convcost: error: {path}:1: version: this convcost reads version 1 files, got 2",
        f"convcost: error: {path}:1: layers: required",  # missing: on the line of the mapping that lacks it
        f"convcost: error: {path}:2: layer: unknown key; did you mean 'layers'?",
    ]
    code, out, err = run("batch", str(tmp_path / "missing.yaml"))
    assert (code, err) == (2, f"convcost: error: {tmp_path / 'missing.yaml'}: no such file, and not a bundled batch "
                              "file; bundled batch files: seeds, mistakes, mobilenet_v1_layers (convcost bundled lists "
                              "them all)\n")  # fmt: skip


def test_csv_and_markdown(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    code, out, _ = run("batch", path, "--no-latency", "--format", "csv")
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["name"], row["status"], row["shapes_match"]) for row in rows] == [
        ("blog", "ok", "true"),  # CSV booleans are true/false, shapes use x, missing values are empty
        ("padded-pointwise", "failed", "false"),
    ]
    assert (rows[0]["dense_params"], rows[0]["params"], rows[0]["macs"]) == ("4672", "656", "114464")
    assert rows[1]["output_shape"] == "1x16x18x18"
    code, out, _ = run("batch", path, "--no-latency", "--format", "markdown")
    markdown_path = str(path).replace("_", "\\_")  # the user's file name, its Markdown emphasis escaped
    assert out.startswith(f"### {markdown_path}: 2 entries: 1 ok, 1 failed\n")
    assert "| blog | separable | ✓ | 4,672 → 656 | 903,168 → 114,464 | 7.12× | 7.89× | — | ok |" in out


def test_output_format_from_the_extension_written_atomically(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, check in (
        ("report.json", lambda text: json.loads(text)["counts"]["failed"] == 1),
        ("report.csv", lambda text: len(list(csv.DictReader(io.StringIO(text)))) == 2),
        ("report.md", lambda text: text.startswith("### ")),
        ("report.txt", lambda text: "Params ÷" in text and "\x1b[" not in text),
    ):
        code, out, _ = run("batch", path, "--no-latency", "-o", str(out_dir / name))
        assert code == 1 and out == ""
        assert check((out_dir / name).read_text(encoding="utf-8")), name
    # no temporary file left beside them
    assert sorted(item.name for item in out_dir.iterdir()) == ["report.csv", "report.json", "report.md", "report.txt"]
    # --format wins over the extension
    code, _, _ = run("batch", path, "--no-latency", "-o", str(out_dir / "report.txt"), "--format", "json")
    assert json.loads((out_dir / "report.txt").read_text(encoding="utf-8"))["version"] == 1


def test_unknown_extension_and_unwritable_output(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    code, _, err = run("batch", path, "-o", str(tmp_path / "report.xlsx"))
    assert code == 2
    assert err == (
        "convcost: error: -o/--output: cannot tell the format from 'report.xlsx': name it .json, .csv, .md or "
        ".txt, or give --format\n"
    )
    # refused before anything is measured (the check is in the option's callback, so Click reports it)
    result = subprocess.run(
        [sys.executable, "-m", "convcost", "batch", path, "--no-latency", "-o", str(tmp_path / "no" / "such.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"convcost: error: batch: Invalid value for '--output' / '-o': {tmp_path / 'no'} does not exist\n"
    )


def test_select(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    code, out, _ = run("batch", path, "--no-latency", "--select", "blog*", "-f", "json")
    assert code == 0
    assert [entry["name"] for entry in json.loads(out)["entries"]] == ["blog"]
    code, _, err = run("batch", path, "--select", "head")
    assert code == 2
    assert err == f"convcost: error: --select: no entry of {path} matches 'head' (entries: blog, padded-pointwise)\n"


def test_detail(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    code, out, _ = run("batch", path, "--no-latency", "--select", "blog", "--detail")
    assert code == 0
    assert "Stages" in out and "separable.depthwise" in out and "✓ 15 checks" in out
    code, out, _ = run("batch", path, "--no-latency", "--select", "blog", "--detail", "-f", "json")
    assert json.loads(out)["entries"][0]["comparison"]["dense"]["params"] == 4672
    code, out, _ = run("batch", path, "--no-latency", "--select", "blog", "--detail", "-f", "csv")
    # compare's per-stage rows: dense, separable, separable.depthwise, separable.pointwise
    assert [(row["layer"], row["stage"]) for row in csv.DictReader(io.StringIO(out))] == [
        ("dense", ""),
        ("separable", ""),
        ("separable", "depthwise"),
        ("separable", "pointwise"),
    ]


def test_ctrl_c_reports_and_writes_what_was_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path, "defaults: {cin: 4, cout: 4, kernel: 3, size: 8}\nlayers: [{name: a}, {name: b}, {name: c}]\n"
    )
    real = batch_module.run

    def interrupted(plan: Batch, settings: object = None, **options: Any) -> Iterator[EntryResult]:
        outcomes = real(plan, None)
        yield next(outcomes)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_module, "run", interrupted)
    report = tmp_path / "report.json"
    code, _, err = run("batch", path, "--no-latency", "-o", str(report))
    assert code == 130
    assert err == "convcost: interrupted after 1 of 3 entries\n"
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert [entry["status"] for entry in data["entries"]] == ["ok", "not run", "not run"]


def test_one_tiny_latency_run(tmp_path: Path) -> None:
    path = write(tmp_path, "layers: [{name: tiny, cin: 4, cout: 8, kernel: 3, size: 8}]\n")
    code, out, _ = run("batch", path, "--rounds", "1", "--min-time", "0.001", "-f", "json")
    assert code == 0
    row = json.loads(out)["entries"][0]["rows"][0]
    assert row["latency_ms"] > 0 and row["dense_latency_ms"] > 0
    assert row["speedup"] == pytest.approx(row["dense_latency_ms"] / row["latency_ms"])


def test_schema_command(tmp_path: Path) -> None:
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "convcost batch file"
    code, _, _ = run("schema", "-o", str(tmp_path / "schema.json"))
    assert code == 0 and json.loads((tmp_path / "schema.json").read_text(encoding="utf-8")) == schema


def test_help_lists_the_commands_without_importing_torch() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "batch" in out and "schema" in out
    code, out, _ = run("batch", "--help")
    assert code == 0 and "--select" in out and "--detail" in out
    probe = (
        "import sys; from typer.testing import CliRunner; from convcost.cli import app; "
        "r = CliRunner().invoke(app, ['batch', '--help']); assert r.exit_code == 0; "
        "r = CliRunner().invoke(app, ['schema']); assert r.exit_code == 0; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_model_file_given_to_batch_says_so_in_one_line() -> None:
    model_file = Path(__file__).parent.parent / "configs" / "mobilenet_v1.yaml"
    code, out, err = run("batch", str(model_file))
    assert code == 2 and out == ""
    assert err == f"convcost: error: {model_file}: this is a model file (it has input/kind keys): use convcost model\n"
