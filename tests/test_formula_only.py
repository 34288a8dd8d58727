"""--formula-only: the same figures as a measured run, marked as unmeasured, and still catching shape mistakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.run.comparison import compare
from convcost.run.estimate import estimate
from convcost.spec.kinds import parse_compare

CONFIGS = Path(__file__).parent.parent / "configs"
MEASURED_ONLY = {"output_shape_measured", "params_measured", "macs_flop_counter", "macs_ptflops", "ptflops_raw",
                 "checks", "measured", "environment", "stored_weight_shape"}  # fmt: skip


def _formula_fields(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _formula_fields(value) for key, value in data.items() if key not in MEASURED_ONLY}
    if isinstance(data, list):
        return [_formula_fields(value) for value in data]
    return data


@pytest.mark.parametrize(
    "values",
    [
        {"cin": 8, "cout": 64, "kernel": 3},
        {"cin": 6, "cout": 12, "kernel": "3x2", "stride": 2, "padding": 1, "dilation": 2, "groups": 3, "batch": 2,
         "multiplier": 2, "norm": "batch", "act": "relu", "size": "17x9", "vs": "separable,grouped,spatial"},
        {"cin": 4, "cout": 8, "kernel": 5, "multiplier": 2, "padding": "same", "vs": "depthwise,shared"},
    ],
)  # fmt: skip
def test_estimate_equals_the_measured_run_on_every_formula_field(values: dict[str, Any]) -> None:
    spec = parse_compare(values)
    measured, estimated = compare(spec), estimate(spec)
    assert measured.measured and not estimated.measured
    assert measured.ok  # so the measured figures equal the formula ones...
    assert _formula_fields(estimated.to_dict()) == _formula_fields(measured.to_dict())  # ...and so do these
    for layer in estimated.layers:
        assert layer.checks == [] and layer.output_shape_measured is None
        assert all(stage.macs_flop_counter is None for stage in layer.stages)


def test_formula_only_still_catches_the_padded_pointwise() -> None:
    result = estimate(parse_compare({"cin": 32, "cout": 64, "kernel": 3, "padding": 1, "size": 64,
                                     "pointwise": {"padding": 1}}))  # fmt: skip
    assert result.failures == ["separable: output shape 1×64×66×66 differs from dense 1×64×64×64"]


def test_cli_compare_formula_only_says_nothing_was_checked() -> None:
    result = CliRunner().invoke(app, ["compare", "--cin", "8", "--cout", "64", "-k", "3", "--formula-only"])
    assert result.exit_code == 0, result.output
    assert "formula only: nothing built or run, so nothing checked" in result.stdout
    assert "✓" not in result.stdout and "Latency (ms" not in result.stdout
    assert "9,271,584" in result.stdout  # 8*9*126*126 + 64*8*126*126


def test_cli_batch_formula_only(tmp_path: Path) -> None:
    target = tmp_path / "mistakes.json"
    result = CliRunner().invoke(app, ["batch", str(CONFIGS / "mistakes.yaml"), "--formula-only", "-o", str(target)])
    assert result.exit_code == 1  # the mistakes are shape mismatches, found by formula too
    data = json.loads(target.read_text())
    assert all(entry["problems"] for entry in data["entries"])
    seeds = CliRunner().invoke(app, ["batch", str(CONFIGS / "seeds.yaml"), "--formula-only", "-f", "json", "--detail"])
    assert seeds.exit_code == 0
    entries = json.loads(seeds.stdout)["entries"]
    assert [entry["comparison"]["measured"] for entry in entries] == [False] * len(entries)
    # the blog entry: 8*64*9*126*126 dense MACs
    assert entries[0]["comparison"]["dense"]["macs"] == 73_156_608


def test_formula_only_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from convcost.cli import app\n"
        "for args in (['compare', '--cin', '8', '--cout', '64', '-k', '3', '--formula-only', '-f', 'json'],\n"
        f"             ['batch', {str(CONFIGS / 'seeds.yaml')!r}, '--formula-only', '-f', 'json']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as done:\n"
        "        assert done.code in (0, None), done.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"measured": false' in result.stdout  # the compare report says it measured nothing
    assert '"name": "blog-8-64"' in result.stdout  # and the batch ran its entries
