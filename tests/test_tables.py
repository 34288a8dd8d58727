"""Tables people can read (issue 12, part 6): whole, unique layer names at any width; a not-counted row that
reads differently from a zero-cost one without colour; ``--depth N`` rows that are each a real module."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.run.context import RunContext
from convcost.run.latency import LatencySettings
from convcost.run.model import evaluate_import
from tests import models_for_tables

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAST = LatencySettings(rounds=1, min_time=0.001, warmup_time=0.001, warmup_calls=1, tune_allocator=False)
LONG = ["model", "tests.models_for_tables:long_names", "--input", "4x8x8"]


def _names() -> list[str]:
    result = evaluate_import("tests.models_for_tables:long_names", (4, 8, 8), model=models_for_tables.long_names())
    return [layer.name for layer in result.layers]


def test_long_names_differ_only_at_their_end_or_middle() -> None:
    names = _names()
    # 3 blocks × (conv, bn, relu); the longest: encoder_stage.residual_block_a.pointwise_projection, 51 characters
    assert len(names) == len(set(names)) == 9
    assert max(len(name) for name in names) == 51
    assert "encoder_stage.residual_block_a.normalisation" in names
    assert "decoder_stage.residual_block_a.normalisation" in names  # differs from the one above in its first part


@pytest.mark.parametrize("width", [60, 80, 120, 200])
@pytest.mark.parametrize("colour", ["NO_COLOR", "FORCE_COLOR"])
def test_every_name_is_whole_and_unique_at_any_width(width: int, colour: str) -> None:
    result = runner.invoke(app, LONG, env={"COLUMNS": str(width), colour: "1"})
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert ("\x1b[" in result.stdout) is (colour == "FORCE_COLOR")
    assert "…" not in text  # nothing was cut
    lines = [line.strip() for line in text.splitlines()]
    for name in _names():
        # the name whole at the start of exactly one line (its row, or the heading above its row), so its last
        # component is visible and no other row reads the same
        rows = [line for line in lines if line == name or line.startswith(name + " ")]
        assert len(rows) == 1, (name, width, text)
    assert max(len(line) for line in text.splitlines()) <= width


# ---- not counted --------------------------------------------------------------------------------------

OPAQUE = ["model", "tests.models_for_tables:with_opaque", "--input", "3x8x8"]


def test_a_not_counted_row_reads_differently_from_a_zero_row_without_colour() -> None:
    result = runner.invoke(app, OPAQUE, env={"NO_COLOR": "1", "COLUMNS": "100"})
    assert result.exit_code == 0, result.output  # counted ops agree; incomplete is not a failure without --require
    rows = {
        line.split()[0]: line.split()[5:]
        for line in result.stdout.splitlines()
        if line[:2] in ("0 ", "1 ", "2 ") and "→" in line
    }
    # columns Params, MACs, Other, MACs%: conv 4·3·9·64 = 6,912 MACs; the ReLU costs 0 MACs and is counted; the
    # opaque leaf has no formula
    assert rows == {"0": ["108", "6.91k", "0", "100.0%"], "1": ["0", "0", "256", "0.0%"], "2": ["4", "—", "—", "—"]}
    assert "— not counted (no formula, not in the totals)" in result.stdout
    assert "1 op not counted (not in the totals)" in result.stdout


def test_not_counted_in_markdown_csv_and_json() -> None:
    markdown = runner.invoke(app, [*OPAQUE, "-f", "markdown"]).stdout
    assert "| 2 | Opaque | 4×8×8 → 4×8×8 | 4 | — | — | — |" in markdown, markdown
    assert "| 1 | ReLU | 4×8×8 → 4×8×8 | 0 | 0 | 256 | 0.0% |" in markdown  # 4·8·8 = 256 activations
    assert "| **total** |  |  | 112 | ≥6,912 | ≥256 | 100% |" in markdown  # 4·3·9 = 108 + 4 params
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*OPAQUE, "-f", "csv"]).stdout)))
    assert (rows[1]["macs"], rows[1]["counted"]) == ("0", "true")
    assert (rows[2]["macs"], rows[2]["other_ops"], rows[2]["counted"]) == ("", "", "false")
    data = json.loads(runner.invoke(app, [*OPAQUE, "-f", "json"]).stdout)
    assert data["total"]["ops_not_counted"] == 1 and data["complete"] is False
    assert [layer["counted"] for layer in data["layers"]] == [True, True, False]


# ---- --depth --------------------------------------------------------------------------------------------

NESTED = "tests.models_for_tables:nested"


def _nested(depth: int, latency: LatencySettings | None = None):  # type: ignore[no-untyped-def]
    context = RunContext(threads=1, latency=latency)
    return evaluate_import(NESTED, (3, 16, 16), depth=depth, context=context, model=models_for_tables.nested())


# MACs: stem conv 8·3·9·256 = 55,296; encoder conv 8·8·9·256 = 147,456; merge conv 32·16·64 = 32,768;
# head 16·10 = 160; total 235,680
@pytest.mark.parametrize(
    ("depth", "rows"),
    [
        (1, {"stem": 55_296, "stages": 180_224, "(model) (own ops)": 0, "head": 160}),
        (2, {"stem.0": 55_296, "stem.1": 0, "stem.2": 0, "stages.0": 147_456, "stages.1": 32_768,
             "(model) (own ops)": 0, "head": 160}),
        (3, {"stem.0": 55_296, "stem.1": 0, "stem.2": 0, "stages.0 (own ops)": 0, "stages.0.blocks": 147_456,
             "stages.1.norm": 0, "stages.1.reduce": 32_768, "(model) (own ops)": 0, "head": 160}),
    ],
)  # fmt: skip
def test_one_row_per_module_with_every_op_under_it(depth: int, rows: dict[str, int]) -> None:
    result = _nested(depth)
    assert {layer.name: layer.macs for layer in result.layers} == rows  # one row each: no name#2
    assert sum(layer.macs for layer in result.layers) == result.total.macs == 235_680
    assert sum(len(layer.ops) for layer in result.layers) == len(_nested(3).ops)  # every op in one row


def test_a_module_row_has_the_modules_own_shapes() -> None:
    stages = {layer.name: layer for layer in _nested(1).layers}["stages"]
    assert (stages.input_shape, stages.output_shape) == ((1, 8, 16, 16), (1, 16, 8, 8))
    merge = {layer.name: layer for layer in _nested(2).layers}["stages.1"]
    # Merge's first child (its norm) sees the stacked slices 32×8×8, not the module's own input 8×16×16
    assert merge.ops[0].input_shape == (1, 32, 8, 8)
    assert (merge.input_shape, merge.output_shape) == ((1, 8, 16, 16), (1, 16, 8, 8))
    encoder = {layer.name: layer for layer in _nested(2).layers}["stages.0"]
    # the encoder's own parameter (8) and functional adds are its own: 8 + conv 8·8·9 + 8 = 592 params
    assert encoder.params == 592 and {op.kind for op in encoder.ops} >= {"add", "conv"}


def test_each_module_row_is_timed_alone() -> None:
    result = _nested(1, FAST)
    timed = {layer.name: layer.latency is not None for layer in result.layers}
    # the model's own ops (pool, flatten) are no module that can run alone: untimed, not given another's time
    assert timed == {"stem": True, "stages": True, "(model) (own ops)": False, "head": True}


def test_depth_from_the_cli_names_modules() -> None:
    result = runner.invoke(app, ["model", NESTED, "--input", "3x16x16", "--depth", "1", "-f", "json"])
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    assert [(layer["name"], layer["kind"]) for layer in layers] == [
        ("stem", "Sequential"), ("stages", "Sequential"), ("(model) (own ops)", "functional"), ("head", "Linear")
    ]  # fmt: skip
    assert layers[1]["input_shape"] == [1, 8, 16, 16] and layers[1]["output_shape"] == [1, 16, 8, 8]


# ---- golden tables (regenerate with `pytest --overwrite` and review the diff) ---------------------------

GOLDEN = {
    "model_long_names_80": LONG,
    "model_not_counted_80": OPAQUE,
    "model_depth_1_80": ["model", NESTED, "--input", "3x16x16", "--depth", "1"],
    "model_fvcore_80": [*OPAQUE[:1], "tests.models_for_tables:small_cnn", "--input", "3x16x16", "--convention",
                        "fvcore"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_model_table_matches_golden(name: str, overwrite: bool) -> None:
    from pathlib import Path

    result = runner.invoke(app, GOLDEN[name], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    path = Path(__file__).parent / "golden" / f"{name}.txt"
    if overwrite:
        path.write_text(result.stdout, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run pytest --overwrite and review it"
    assert result.stdout == path.read_text(encoding="utf-8")


def test_the_output_is_the_last_op_run_whatever_row_it_is_in() -> None:
    model = models_for_tables.pool_twice()
    result = evaluate_import("pool_twice", (4, 8, 8), depth=1, model=model)
    assert [layer.name for layer in result.layers] == ["pool", "act"]
    assert result.output_shape == (1, 4, 2, 2) == result.output_shape_measured  # 8 → 4 → 2
    assert result.ok and not any("untraced" in note for note in result.notes), result.notes
