"""Rendered tables against golden files (regenerate with `pytest --overwrite` and review the diff)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console

from convcost.report.comparison import render_table
from convcost.run.comparison import compare
from convcost.spec.compare import parse_compare

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "compare_blog": {"cin": 8, "cout": 64, "kernel": 3},
    "compare_all_kinds": {"cin": 8, "cout": 32, "kernel": "3x5", "padding": "1x2", "groups": 4, "multiplier": 2,
                          "norm": "batch", "act": "relu6", "bias": False, "size": 32,
                          "vs": "separable,grouped,spatial,pointwise"},
    "compare_padded_pointwise": {"cin": 32, "cout": 64, "kernel": 3, "padding": 1, "size": 64,
                                 "pointwise": {"padding": 1}},
}  # fmt: skip


@pytest.fixture
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the header shows the thread count: keep it machine-independent
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", sorted(CASES))
def test_table_matches_golden(name: str, overwrite: bool, one_thread: None) -> None:
    comparison = compare(parse_compare(CASES[name]), None)
    buffer = io.StringIO()
    render_table(comparison, Console(file=buffer, width=80, color_system=None, highlight=False))
    text = buffer.getvalue()
    path = GOLDEN / f"{name}.txt"
    if overwrite:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run pytest --overwrite and review it"
    assert text == path.read_text(encoding="utf-8")
    # invariants that hold whatever the golden says: totals are the sums of their stages
    for layer in comparison.layers:
        assert layer.params == sum(stage.params for stage in layer.stages)
        assert layer.macs == sum(stage.macs for stage in layer.stages)
    assert max(len(line) for line in text.splitlines()) <= 80
