"""Terminals and environments: -h, completion, NO_COLOR/FORCE_COLOR, the width rule, CSV conventions, exit 3."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost import cli
from convcost.cli import app

runner = CliRunner()
BLOG = ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--size", "16"]
COMMANDS = ["compare", "batch", "schema", "model", "calibrate", "sweep", "check", "bundled", "suggest", "convert"]


def test_every_command_takes_dash_h() -> None:
    top = runner.invoke(app, ["-h"])
    assert top.exit_code == 0 and "Usage: convcost" in top.stdout and "-h, --help" in top.stdout
    for name in COMMANDS:
        result = runner.invoke(app, [name, "-h"])
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: convcost {name}" in result.stdout and "-h, --help" in result.stdout


def test_command_list_descriptions_are_whole_sentences() -> None:
    out = runner.invoke(app, ["--help"]).stdout
    listed = out.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in listed] == COMMANDS
    for line in listed:  # Click cuts a long docstring with "..."; every command has a short help of its own
        assert line.endswith(".") and not line.endswith("..."), line


def test_completion_scripts_without_torch() -> None:
    code = (
        "import sys\n"
        "from convcost.cli import app\n"
        "try:\n"
        "    app(['--show-completion', 'bash'], prog_name='convcost')\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    # Typer detects the calling shell (shellingham) unless told not to; detected, `bash` would be ignored and the
    # script follow whatever runs the suite (`sh` under make, which Typer does not support)
    env = dict(os.environ, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "_CONVCOST_COMPLETE=complete_bash" in result.stdout  # the script bash sources
    out = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in out and "--show-completion" in out


def test_completion_completes_command_names() -> None:
    env = {**os.environ, "_CONVCOST_COMPLETE": "complete_bash", "COMP_WORDS": "convcost ca", "COMP_CWORD": "1"}
    code = "from convcost.cli import main\nmain()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["calibrate"], result.stderr


def test_pipe_width_is_columns_else_120(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from convcost.report.tables import make_console

    monkeypatch.delenv("COLUMNS")
    assert make_console(file=io.StringIO()).width == 120
    assert make_console(plain=True).width == 120
    monkeypatch.setenv("COLUMNS", "77")
    assert make_console().width == 77  # CliRunner's stdout is a pipe
    assert make_console(plain=True).width == 77
    # and every command goes through it: a table line of the -o file is never wider than $COLUMNS
    monkeypatch.setenv("COLUMNS", "60")
    out = tmp_path / "report.txt"
    result = runner.invoke(app, [*BLOG, "--no-latency", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in out.read_text(encoding="utf-8").splitlines()) <= 60


def test_no_color_removes_all_styling_and_force_color_forces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    args = [*BLOG, "--no-latency"]
    assert "\x1b[" not in runner.invoke(app, args).stdout  # a pipe: plain
    monkeypatch.setenv("FORCE_COLOR", "1")
    forced = runner.invoke(app, args).stdout
    assert "\x1b[32m" in forced and "\x1b[1m" in forced  # green ✓, bold title
    monkeypatch.setenv("NO_COLOR", "1")  # wins over FORCE_COLOR, and removes bold and dim too, not only colour
    assert "\x1b[" not in runner.invoke(app, args).stdout
    monkeypatch.delenv("FORCE_COLOR")
    assert "\x1b[" not in runner.invoke(app, args).stdout


def test_output_files_are_never_styled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = tmp_path / "report.txt"
    assert runner.invoke(app, [*BLOG, "--no-latency", "-o", str(out)]).exit_code == 0
    assert "\x1b[" not in out.read_text(encoding="utf-8")


def test_csv_is_plain_ascii() -> None:
    result = runner.invoke(app, [*BLOG, "--no-latency", "--vs", "separable", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    dense, separable, depthwise = rows[0], rows[1], rows[2]
    assert dense["output_shape"] == "1x64x14x14" and depthwise["weight_shape"] == "8x1x3x3"  # 16 − 3 + 1 = 14
    assert dense["stage"] == "" and dense["weight_shape"] == ""  # missing: empty, not "—"
    assert {row["ok"] for row in rows} == {"true"}
    assert separable["ratio_latency"] == ""  # no latency measured
    for row in rows:
        for key in ("input_shape", "output_shape", "output_shape_measured", "weight_shape", "ok"):
            assert row[key].isascii(), (key, row[key])


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["convcost", *args])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    return int(stop.value.code or 0)


@pytest.mark.parametrize(
    ("args", "module"),
    [
        (BLOG, "convcost.spec.kinds"),  # imported before compare's guard
        (["batch", "x.yaml"], "convcost.results.batch"),  # imported before batch's guard
        (["schema"], "convcost.spec.batch"),  # schema has no guard of its own
    ],
)
def test_an_error_outside_the_guard_is_exit_3_in_one_line(
    args: list[str], module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError, as a broken pydantic did
    assert _main(monkeypatch, *args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convcost: error: internal error: ModuleNotFoundError: "), err
    assert "--debug" in err and "Traceback" not in err


def test_debug_shows_the_traceback_and_still_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "convcost.spec.batch", None)
    assert _main(monkeypatch, "--debug", "schema") == 3  # never 1: that means "a check failed"
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("convcost: error: internal error:")
    monkeypatch.setenv("CONVCOST_DEBUG", "1")
    assert _main(monkeypatch, "schema") == 3
    assert "Traceback" in capsys.readouterr().err


def test_an_error_inside_the_guard_with_debug_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import convcost.run.estimate

    def broken(*args: object) -> None:
        raise ZeroDivisionError("broken on purpose")

    monkeypatch.setattr(convcost.run.estimate, "estimate", broken)
    assert _main(monkeypatch, "--debug", *BLOG, "--formula-only") == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "convcost: error: internal error: ZeroDivisionError: broken on purpose" in err
