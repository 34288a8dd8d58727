"""Every command's tables at any width: no number, shape or verdict is truncated or split (convcost.report.tables).

Each table is rendered at 40 … 300 columns through the console the CLI uses. Every cell handed to a table (the
data, recorded as it is added) must appear whole on one output line, whatever the layout chosen: the full grid,
the compact grid or the stacked one. Hand-derived figures check that the data itself is what we think.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich import box
from rich.console import Console, Group, RenderableType
from rich.text import Text

from convcost.cost.roofline import Calibration
from convcost.report.batch import render_batch
from convcost.report.calibration import render_calibration
from convcost.report.compare import render_roofline, render_table
from convcost.report.format import OutputFormat
from convcost.report.model import render as render_model
from convcost.report.sweep import render_sweep
from convcost.report.tables import FitTable, make_console, show
from convcost.run import batch as batches
from convcost.run import sweep as sweeps
from convcost.run.comparison import compare
from convcost.run.latency import LatencySettings
from convcost.run.source import evaluate_source
from convcost.spec import sweep as grid
from convcost.spec.batch import load_batch
from convcost.spec.kinds import parse_compare

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
WIDTHS = (40, 60, 80, 100, 120, 300)
FAST = LatencySettings(rounds=1, min_time=0.001, warmup_time=0.001, warmup_calls=1, tune_allocator=False)
PEAKS = Calibration(machine="test machine", torch="test", device="cpu", dtype="float32", threads=1,
                    peak_flops=1e9, peak_bandwidth=1e9, call_overhead_s=1e-6, matmul_size=64, copy_bytes=1 << 20,
                    measured_at="2026-01-01T00:00:00+00:00", allocator="not tuned")  # fmt: skip
# 8→64 3×3 on 32×32, separable and grouped (4 groups), no padding: output 1×64×30×30
BLOG = {"cin": 8, "cout": 64, "kernel": 3, "size": 32, "vs": "separable,grouped", "groups": 4}
BLOG_FIGURES = [
    "1×64×30×30", "4,672",  # 8·64·9 + 64 params
    "4,147,200",  # dense MACs 8·64·9·30·30
    "64,800", "460,800", "525,600",  # depthwise 8·9·900, pointwise 8·64·900, their sum
    "1,036,800",  # grouped (8/4)·64·9·900
    "7.12×", "7.89×",  # 4,672/656 = 7.122; 4,147,200/525,600 = 7.890
    "3.84×", "4.00×",  # 4,672/1,216 = 3.842; 4 groups
]  # fmt: skip


@pytest.fixture(scope="module")
def measured() -> Any:
    """One measured comparison with latency and peaks: every compare table (cost, stages, ratios, latency,
    roofline work and bounds) has rows."""
    return compare(parse_compare(BLOG), FAST, PEAKS)


@pytest.fixture
def cells(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The plain text of every no-wrap cell added to any FitTable while the test runs."""
    recorded: list[str] = []
    original = FitTable.add_row

    def add_row(self: FitTable, *renderables: Any, **kwargs: Any) -> None:
        original(self, *renderables, **kwargs)
        for index, cell in enumerate(renderables):
            column = self.columns[index]
            if column.no_wrap and isinstance(cell, str | Text) and str(cell).strip():
                recorded.append(str(cell).strip())

    monkeypatch.setattr(FitTable, "add_row", add_row)
    yield recorded


def rendered(width: int, monkeypatch: pytest.MonkeyPatch, draw: Callable[[], RenderableType]) -> str:
    """What the CLI prints for a pipe at $COLUMNS = width (the console the CLI makes, not one made here)."""
    monkeypatch.setenv("COLUMNS", str(width))
    buffer = io.StringIO()
    console = make_console(file=buffer)
    assert console.width == width
    show(console, draw())
    return buffer.getvalue()


def assert_whole(text: str, tokens: list[str], width: int) -> None:
    assert tokens, "no cell was recorded: the test would check nothing"
    lines = text.splitlines()
    missing = [token for token in tokens if not any(token in line for line in lines)]
    assert not missing, f"split or cut at {width} columns: {missing}\n{text}"
    assert not re.search(r"…(\s|$)", text, re.MULTILINE)  # Rich's cut ("73,156,6…"), not g=0…7 in a channel map


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_tables(width: int, measured: Any, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = rendered(width, monkeypatch, lambda: Group(render_table(measured), render_roofline(measured)))
    assert_whole(text, cells + BLOG_FIGURES, width)
    assert text.count("✓") >= 5  # 5 rows (dense, separable and its 2 stages, grouped), none dropped
    if width >= 100:
        assert max(len(line) for line in text.splitlines() if "─" in line) <= width  # the grid, not stacked


@pytest.mark.parametrize("width", WIDTHS)
def test_batch_table(width: int, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    plan = load_batch(CONFIGS / "seeds.yaml")
    result = batches.collect(plan, list(batches.run(plan, measure=False)))
    text = rendered(width, monkeypatch, lambda: render_batch(result, OutputFormat.TABLE))
    # blog: 4,672 → 656 params, 73,156,608 → 9,271,584 MACs = 73.2M → 9.27M
    assert_whole(text, [*cells, "4,672 → 656", "73.2M → 9.27M", "7.89×"], width)
    if width >= 100:  # the "dense → alt" cells fit a grid at 100 columns: a rule line shows it is one
        assert any(line.strip().startswith("───") for line in text.splitlines())


@pytest.mark.parametrize("width", WIDTHS)
def test_model_tables(width: int, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = evaluate_source(str(CONFIGS / "mobilenet_v1.yaml"), size="32")
    text = rendered(width, monkeypatch, lambda: render_model(result, OutputFormat.TABLE, True))
    # conv1: 3·32·9 weights + 2·32 batchnorm = 928 params; MobileNet v1 has 4,231,976 at any input size
    assert_whole(text, [*cells, "928", "4,231,976"], width)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_not_counted_legend_is_a_line_of_its_own(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from convcost.report.model import NOT_COUNTED_LEGEND

    # one tensordot with no formula: the caption gains the legend on a new line, in the whole grid (100 columns and
    # more), under names as headings (60, 80) and stacked (40); it used to print as "…not MACs\\n— not counted"
    result = evaluate_source("tests.models_for_tests:functional", input_shape="5x16")
    text = rendered(width, monkeypatch, lambda: render_model(result, OutputFormat.TABLE, True))
    assert "\\n" not in text
    assert any(line.startswith(NOT_COUNTED_LEGEND[:13]) for line in text.splitlines()), text


@pytest.mark.parametrize("width", WIDTHS)
def test_model_roofline_tables(width: int, cells: list[str], monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:  # fmt: skip
    import torch

    from convcost.run import calibrate

    # peaks for this machine, torch and thread count, so that the model's layers get bounds and verdicts
    calibrate.store(replace(PEAKS, machine=calibrate.machine_name("cpu"), torch=torch.__version__))
    path = tmp_path / "tiny.yaml"
    path.write_text("input: {channels: 3, size: 8}\nlayers:\n  - {name: stem, kind: dense, cout: 8, kernel: 3}\n"
                    "  - {name: block, kind: separable, cout: 16, kernel: 3}\n")  # fmt: skip
    result = evaluate_source(str(path), latency_settings=FAST)
    assert result.environment.calibration is not None
    text = rendered(width, monkeypatch, lambda: render_model(result, OutputFormat.TABLE, False, True))
    # stem: 3·8·9 = 216 weights on 8×8 (padded to keep the size): 216·64 = 13,824 MACs = 13.8k
    assert_whole(text, [*cells, "13.8k"], width)
    assert "Roofline per layer" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_table(width: int, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    axes = {"cin": "4,8", "cout": "8", "kernel": "3", "size": "8"}
    fixed: dict[str, Any] = {}
    result = sweeps.run(grid.plan(axes, fixed), axes, fixed, FAST, PEAKS)
    text = rendered(width, monkeypatch, lambda: render_sweep(result, OutputFormat.TABLE))
    # 4→8 3×3 on 8×8: dense 4·8·9·36 = 10,368 MACs, separable 4·9·36 + 4·8·36 = 2,448: 4.24×
    assert_whole(text, [*cells, "4.24×"], width)
    assert "Bound" in text and "Speedup" in text  # the headers (and so the verdicts) are not lost


@pytest.mark.parametrize("width", WIDTHS)
def test_calibrate_table(width: int, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    peaks = replace(PEAKS, grouped_call_overhead_s=2e-6)
    text = rendered(width, monkeypatch, lambda: render_calibration(peaks, "/cache/x.json", True))
    assert_whole(text, [*cells, "1.00 GFLOP/s", "1.00 µs", "2.00 µs"], width)  # 1e9 FLOP/s, 1e-6 s, 2e-6 s


def test_the_four_layouts() -> None:
    """Whole grid, compact grid, first column as headings, stacked: chosen by width, every cell whole in each."""

    def draw(width: int) -> list[str]:
        table = FitTable(box=box.SIMPLE_HEAD, pad_edge=False)  # as every convcost table
        table.add_column("Name")
        table.add_column("Count", justify="right")
        table.add_column("Change")
        table.add_row("entry-name-of-16", "1,234,567", "x → y")
        table.add_row("", "89", "z → w")  # continues the entry above
        buffer = io.StringIO()
        Console(file=buffer, width=width, color_system=None).print(table)
        return [line.rstrip() for line in buffer.getvalue().splitlines()]

    # cells 16 + 9 + 6 ("Change") = 31. Whole: an edge space each side, 3 between columns: 1+16+3+9+3+6+1 = 39
    assert draw(39)[1:4] == [" Name                   Count   Change", " " + "─" * 37,
                             " entry-name-of-16   1,234,567   x → y"]  # fmt: skip
    # compact: one space between columns, no edge: 16+1+9+1+6 = 33
    assert draw(38)[:3] == draw(33)[:3] == ["Name                 Count Change", "─" * 33,
                                            "entry-name-of-16 1,234,567 x → y"]  # fmt: skip
    # 9+1+6 = 16 without the name column: the name becomes a heading above its rows
    expected = ["    Count Change", "─" * 16, "entry-name-of-16", "1,234,567 x → y", "       89 z → w"]
    assert draw(32) == draw(16) == expected
    # under 16, stacked; at 12 "  Count  " (9) + 9 digits = 18 does not fit, nor 4 + 9: the number under its label
    assert draw(12) == ["entry-name-o", "f-16", "  Count", "1,234,567", "  Change", "    x → y", "  Count  89",
                        "  Change", "    z → w"]  # fmt: skip
