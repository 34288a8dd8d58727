"""The README's Python examples import what exists, and the façade's documented names resolve."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
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


# Every import the README documented before the role-folder layout (82760cb^:README.md), and whether the old
# module imported torch: batch (pydantic only) and roofline (pure Python) did not; calibrate and latency did.
OLD_IMPORTS = [
    ("from convcost import LatencySettings, compare, parse_compare", None),
    ("from convcost import compare, parse_compare", None),
    ("from convcost.errors import SpecError; import convcost; assert convcost.SpecError is SpecError", None),
    ("from convcost.batch import load_batch, evaluate", False),
    ("import convcost.batch; convcost.batch.load_batch, convcost.batch.evaluate", False),
    ("import convcost; convcost.batch.evaluate", False),
    ("from convcost.roofline import analyse, combine, annotate", False),
    ("import convcost; convcost.roofline.analyse", False),
    ("from convcost.spec import DType", False),
    ("from convcost.calibrate import calibration_for", True),
    ("from convcost.latency import LatencySettings", True),
    ("from convcost.comparison import compare", True),
]


@pytest.mark.parametrize(("line", "imports_torch"), OLD_IMPORTS)
def test_every_import_documented_before_the_layout_still_works(line: str, imports_torch: bool | None) -> None:
    code = f"import sys\n{line}\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if imports_torch is not None:
        assert result.stdout.strip() == str(imports_torch)


def test_the_old_paths_name_the_real_objects() -> None:
    from convcost import batch, latency, roofline, spec
    from convcost.cost.roofline import analyse
    from convcost.run.context import LatencySettings
    from convcost.spec.compare import DType

    assert batch.load_batch is convcost.load_batch and batch.evaluate is convcost.evaluate_batch
    assert latency.LatencySettings is LatencySettings and roofline.analyse is analyse and spec.DType is DType
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = spec.nothing  # type: ignore[attr-defined]
