"""The README's Python examples import what exists, and the façade's documented names resolve."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import convcost

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
IMPORTS = sorted(
    {
        line.strip()
        for block in BLOCKS
        for line in block.splitlines()
        if re.match(r"\s*(from convcost|import convcost)", line)
    }
)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3 and len(IMPORTS) >= 3  # the API section, batch and latency from Python


@pytest.mark.parametrize("line", IMPORTS)
def test_every_readme_import_works(line: str) -> None:
    exec(compile(line, "README.md", "exec"), {})  # an ImportError names the moved or missing name


@pytest.mark.parametrize("name", convcost.__all__)
def test_every_facade_name_resolves(name: str) -> None:
    assert getattr(convcost, name) is not None


def test_the_facade_names_the_real_objects() -> None:
    # the lazy table points at the modules that define them, not at copies
    assert convcost.evaluate_batch is importlib.import_module("convcost.run.batch").evaluate
    assert convcost.parse_compare is importlib.import_module("convcost.spec.kinds").parse_compare
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = convcost.nothing  # type: ignore[attr-defined]
