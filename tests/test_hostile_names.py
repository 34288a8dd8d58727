"""User strings are printed as themselves in every command and format (convcost.report.literal, convcost.report.tables).

Rich markup (``[bold]``, ``[/]``, ``[link=...]``), emoji codes (``:factory:``) and control characters (ESC, BEL,
a right-to-left override) in entry, layer, model and check names, file names, glob patterns and import paths:
never interpreted, never emitted raw, never a MarkupError that loses the report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.report.literal import json_visible, markdown_literal, visible

runner = CliRunner()
MARKUP = "[bold]x[/] [link=http://e.com]y[/link] :factory:"
HOSTILE = MARKUP + " \x1b[31mred\x1b[0m\x07 \u202e|end"
SHOWN = MARKUP + " \\x1b[31mred\\x1b[0m\\x07 \\u202e|end"  # what a reader sees: each control as its escape
RAW = ("\x1b", "\x07", "\u202e", "🏭")  # never in any output (the emoji is what Rich makes of :factory:)
# YAML double-quoted form of HOSTILE (\e is ESC, \a is BEL in YAML escapes)
YAML_NAME = '"[bold]x[/] [link=http://e.com]y[/link] :factory: \\e[31mred\\e[0m\\a \\u202e|end"'


def clean(*texts: str) -> None:
    for text in texts:
        for raw in RAW:
            assert raw not in text, (raw, text)


def test_visible_escapes_every_non_printable_character() -> None:
    assert visible(HOSTILE) == SHOWN
    assert visible("tab\there\nnew\x00nul\x85c1\ud800") == "tab\\there\\nnew\\x00nul\\x85c1\\ud800"
    assert visible("plain 1×64 → ÷ µs") == "plain 1×64 → ÷ µs"  # printable text is untouched
    assert json.loads(json_visible(json.dumps({"n": HOSTILE + "\x7f\x9b"}, ensure_ascii=False))) == {
        "n": HOSTILE + "\x7f\x9b"
    }
    assert markdown_literal("**a** [l](u) <b> :rocket: _i_") == "\\*\\*a\\*\\* \\[l\\](u) \\<b\\> \\:rocket\\: \\_i\\_"


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.yaml"
    text = (f"version: 1\nlayers:\n  - name: {YAML_NAME}\n    cin: 8\n    cout: 16\n    kernel: 3\n    size: 8\n"
            "  - {name: '[/]', cin: 8, cout: 16, kernel: 3, size: 8}\n")  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("width", ["40", "120"])
def test_batch_table(batch_file: Path, width: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", width)
    monkeypatch.setenv("FORCE_COLOR", "1")  # styled output too: the styling is ours, the name stays literal
    result = runner.invoke(app, ["batch", str(batch_file), "--formula-only", "--detail"])
    assert result.exit_code == 0, result.output
    # ESC is in the output now, as our own styling; the name's own sequences are not
    assert "\x1b[31mred" not in result.stdout and "\x07" not in result.stdout and "\u202e" not in result.stdout
    clean(result.stderr)
    flat = result.stdout.replace("\n", " ")
    for part in ("[bold]x[/]", "[link=http://e.com]y[/link]", ":factory:", "\\x1b[31mred\\x1b[0m\\x07", "[/]"):
        assert part in flat
    assert result.stdout.count("MAC ratio 5.76×") == 2  # both entries' detail: nothing lost to a MarkupError


def test_batch_json_csv_markdown(batch_file: Path) -> None:
    base = ["batch", str(batch_file), "--formula-only"]
    data = json.loads(runner.invoke(app, [*base, "-f", "json"]).stdout)
    assert [entry["name"] for entry in data["entries"]] == [HOSTILE, "[/]"]  # JSON round-trips the exact name
    out = runner.invoke(app, [*base, "-f", "csv"]).stdout
    clean(out)
    assert [row["name"] for row in csv.DictReader(io.StringIO(out))] == [SHOWN, "[/]"]
    out = runner.invoke(app, [*base, "-f", "markdown"]).stdout
    clean(out)
    # the brackets, colons and the pipe are escaped: a Markdown viewer shows the name, not bold text or a link
    assert "| \\[bold\\]x\\[/\\] \\[link=http\\://e.com\\]y\\[/link\\] \\:factory\\: \\\\x1b" in out
    assert "\\u202e\\|end |" in out


def test_file_names_and_glob_patterns_in_errors(batch_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["batch", str(batch_file), "--select", "[bold]*:factory:\x1b"])
    assert result.exit_code == 2
    clean(result.stderr)
    assert "[bold]*:factory:\\x1b" in result.stderr and result.stderr.count("\n") == 1
    missing = tmp_path / "[bold]gone:factory:.yaml"
    result = runner.invoke(app, ["batch", str(missing)])
    assert result.exit_code == 2 and "[bold]gone:factory:.yaml" in result.stderr
    clean(result.stderr)


def test_import_path_is_not_an_emoji() -> None:
    result = runner.invoke(app, ["model", "pkg:factory:", "--input", "3x8x8"])
    assert result.exit_code == 2
    assert "pkg:factory:" in result.stderr
    clean(result.stderr)


def test_flag_values_quoted_in_errors() -> None:
    result = runner.invoke(app, ["compare", "--cin", "8", "--cout", "8", "-k", "3", "--vs", "[red]\x1b[2J:boom:"])
    assert result.exit_code == 2
    clean(result.stderr)
    assert "[red]" in result.stderr and ":boom:" in result.stderr


MODEL = f"""\
name: {YAML_NAME}
input: {{channels: 3, size: 8}}
layers:
  - {{name: {YAML_NAME}, kind: dense, cout: 8, kernel: 3}}
  - {{name: "[/]", kind: separable, cout: 16, kernel: 3}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "m.yaml").write_text(MODEL, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_model_every_format(folder: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    result = runner.invoke(app, ["model", str(folder / "m.yaml"), "-f", fmt, "--by-kind"])
    assert result.exit_code == 0, result.output
    clean(result.stdout, result.stderr)
    if fmt == "json":
        data = json.loads(result.stdout)
        assert data["name"] == HOSTILE and data["layers"][0]["name"] == HOSTILE
    elif fmt == "markdown":
        assert "\\[bold\\]x\\[/\\]" in result.stdout and "\\:factory\\:" in result.stdout
    else:
        assert "[bold]x[/]" in result.stdout and ":factory:" in result.stdout and "[/]" in result.stdout


def strings(data: object) -> list[str]:
    """Every string (keys included) anywhere in parsed JSON."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [text for key, value in data.items() for text in (key, *strings(value))]
    if isinstance(data, list):
        return [text for value in data for text in strings(value)]
    return []


def budget(folder: Path) -> Path:
    # a limit that fails (params max 1), so that the check's name reaches every verdict and annotation
    path = folder / "budgets.yaml"
    path.write_text(f"checks:\n  - name: {YAML_NAME}\n    model: m.yaml\n    params: {{max: 1}}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["table", "json", "github", "junit"])
def test_check_every_format(folder: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = folder / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = runner.invoke(app, ["check", str(budget(folder)), "-f", fmt])
    assert result.exit_code == 1, result.output  # the limit fails; nothing crashed
    out = result.stdout
    clean(out, result.stderr)
    if fmt == "json":
        assert HOSTILE in strings(json.loads(out))  # the exact name, as data
    elif fmt == "junit":
        root = ElementTree.fromstring(out)  # valid XML although the name had ESC and BEL
        assert root.find("testsuite").get("name") == SHOWN  # type: ignore[union-attr]
    elif fmt == "github":
        annotations = [line for line in out.splitlines() if line.startswith("::error ")]
        assert len(annotations) == 1
        properties, _, message = annotations[0].removeprefix("::error ").partition("::")
        title = dict(item.split("=", 1) for item in properties.split(","))["title"]
        # GitHub's property escaping: ':' → %3A, ',' → %2C; the message keeps ':' but no line break
        assert ":" not in title and "%3Afactory%3A" in title and "[bold]x[/]" in title
        assert "\\x1b[31mred" in message and "[link=http://e.com]" in message
        summary_text = summary.read_text(encoding="utf-8")
        clean(summary_text)
        assert "\\[bold\\]x\\[/\\]" in summary_text and "🏭" not in summary_text
    else:
        assert SHOWN in out and out.count("\n") == 2  # one error line, the summary line


def test_control_characters_in_a_name_cannot_forge_lines(folder: Path) -> None:
    path = folder / "budgets.yaml"
    path.write_text('checks:\n  - name: "a\\n::error ::forged\\r"\n    model: m.yaml\n    params: {max: 1}\n')
    for fmt in ("table", "github"):
        out = runner.invoke(app, ["check", str(path), "-f", fmt]).stdout
        assert not any(line.startswith("::error ::forged") for line in out.splitlines()), out
        assert "a\\n::error ::forged\\r" in out or "a\\n%3A%3Aerror %3A%3Aforged\\r" in out
