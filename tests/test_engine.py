"""One engine: a one-layer model and `compare` give the same figures for every kind; --formula-only for models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from convcost.cli import app
from convcost.errors import UsageError
from convcost.results.comparison import Check
from convcost.run.comparison import compare
from convcost.run.model import evaluate_plan
from convcost.run.source import evaluate_source
from convcost.spec import kinds
from convcost.spec.compare import LayerKind
from convcost.spec.kinds import parse_compare
from convcost.spec.model import load_model

CONFIGS = Path(__file__).parent.parent / "configs"

VARIANTS: list[dict[str, Any]] = [
    {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1]},
    {"kernel": [3, 3], "stride": [2, 2], "padding": [0, 0], "bias": False, "norm": "batch", "act": "relu"},
    {"kernel": [3, 5], "stride": [1, 1], "padding": "same", "act": "relu6"},
    {"kernel": [5, 3], "stride": [2, 1], "padding": [2, 0], "dilation": [1, 2], "multiplier": 2, "norm": "batch"},
]


def _layer(kind: LayerKind, variant: dict[str, Any], groups: int) -> dict[str, Any]:
    """The layer's settings, valid for ``kind``: depthwise kinds have cout = multiplier × cin."""
    multiplier = variant.get("multiplier", 1)
    cout = 8 * multiplier if kind in (LayerKind.DEPTHWISE, LayerKind.SHARED) else 16
    used = {"groups": groups} if kind is LayerKind.GROUPED else {"mid": 6} if kind is LayerKind.SPATIAL else {}
    return {"cout": cout, **used, "bias": True, "norm": "none", "act": "none", **variant}


# every kind of the registry, each variant; groups shapes only the grouped kind, so it alone runs at 2 and 4
CASES = [(kind, index, groups) for kind in kinds.registered_kinds() for index in range(len(VARIANTS))
         for groups in ((2, 4) if kind is LayerKind.GROUPED else (2,))]  # fmt: skip


@pytest.mark.parametrize(("kind", "variant_index", "groups"), CASES, ids=[f"{k}-v{v}-g{g}" for k, v, g in CASES])
def test_a_one_layer_model_gives_the_figures_compare_gives(
    kind: LayerKind, variant_index: int, groups: int, tmp_path: Path
) -> None:
    variant = VARIANTS[variant_index]
    layer = _layer(kind, variant, groups)
    vs = "pointwise" if kind is LayerKind.DENSE else str(kind)
    spec = parse_compare({"cin": 8, "size": [9, 11], "batch": 2, "vs": vs, **layer})
    compared = next(item for item in compare(spec).layers if item.kind == str(kind))
    assert compared.ok, compared.checks  # its formulas agree with its measurements (its shape may differ dense's)
    path = tmp_path / "one_layer.yaml"
    # compare's kernel is the dense reference's; a model file's pointwise layer takes none (1×1, or an error)
    own = {key: value for key, value in layer.items() if not (kind is LayerKind.POINTWISE and key == "kernel")}
    path.write_text(yaml.safe_dump({"input": {"channels": 8, "size": [9, 11], "batch": 2},
                                    "layers": [{"name": "only", "kind": str(kind), **own}]}))  # fmt: skip
    model = evaluate_plan(load_model(str(path)), str(path))
    assert model.ok, model.failures
    total = model.total
    assert (total.params, total.macs, total.bias_adds, total.other_ops) == (
        compared.params, compared.macs, compared.bias_adds, compared.other_ops)  # fmt: skip
    assert model.layers[0].min_bytes(4) == compared.min_bytes
    assert model.output_shape == compared.output_shape == compared.output_shape_measured
    assert (total.params_measured, total.macs_flop_counter, total.macs_ptflops, total.ptflops_raw) == (
        compared.params_measured, compared.macs_flop_counter, compared.macs_ptflops, compared.ptflops_raw)  # fmt: skip
    # the same convs, op by op: every compare stage is a conv op of the model with the same figures
    convs = [op for op in model.ops if op.kind == "conv"]
    assert [op.macs for op in convs] == [stage.macs for stage in compared.stages]
    assert [op.output_shape for op in convs] == [stage.output_shape for stage in compared.stages]


def test_check_ok_is_derived_from_the_values() -> None:
    assert Check("x", "params", 3, 3).ok
    assert not Check("x", "params", 3, 4, "a note").ok
    assert not Check("x", "output shape", (1, 2), (1, 3)).ok


def _by_formula(layer: dict[str, Any]) -> dict[str, Any]:
    measured = (
        "output_shape_measured",
        "params_measured",
        "macs_flop_counter",
        "macs_ptflops",
        "ptflops_raw",
        "seen_by",
    )
    ops = [{key: value for key, value in op.items() if key not in measured} for op in layer["ops"]]
    return {**layer, "ops": ops}


def test_model_formula_only_gives_the_measured_totals_of_mobilenet_v2() -> None:
    path = str(CONFIGS / "mobilenet_v2.yaml")
    measured = evaluate_source(path)
    estimated = evaluate_source(path, formula_only=True)
    assert measured.ok and measured.measured and not estimated.measured
    assert estimated.checks == [] and estimated.total.macs_flop_counter is None
    counters = {"params_measured": None, "macs_flop_counter": None, "macs_ptflops": None, "ptflops_raw": None}
    assert estimated.total.to_dict() == {**measured.total.to_dict(), **counters}
    assert measured.total.macs == measured.total.macs_flop_counter == 300_774_272  # MobileNetV2's 300M MACs
    assert [_by_formula(layer.to_dict()) for layer in estimated.layers] == [
        _by_formula(layer.to_dict()) for layer in measured.layers
    ]
    assert estimated.dense_equivalent == measured.dense_equivalent and estimated.by_kind == measured.by_kind
    assert estimated.output_shape == measured.output_shape == (1, 1000)


def test_model_formula_only_refuses_an_import_path() -> None:
    with pytest.raises(UsageError, match="--formula-only needs a model file"):
        evaluate_source("tests.models_for_tests:scaled", input_shape="3x8x8", formula_only=True)


def test_cli_model_formula_only_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from convcost.cli import app\n"
        "try:\n"
        f"    app(['model', {str(CONFIGS / 'mobilenet_v2.yaml')!r}, '--formula-only', '-f', 'json'])\n"
        "except SystemExit as done:\n"
        "    assert done.code in (0, None), done.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["measured"] is False and data["checks"] == [] and data["total"]["macs"] == 300_774_272
    table = CliRunner().invoke(app, ["model", str(CONFIGS / "mobilenet_v2.yaml"), "--formula-only"])
    assert table.exit_code == 0, table.output
    assert "formula only: nothing built or run, so nothing checked" in table.stdout and "✓" not in table.stdout


def _budget(tmp_path: Path, **extra: Any) -> Path:
    check = {"name": "v2", "model": str(CONFIGS / "mobilenet_v2.yaml"), "params": {"max": "3.6M"},
             "macs": {"max": "310M"}, "layers": [{"match": "block*", "params": {"max": "500k"}}], **extra}  # fmt: skip
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump({"checks": [check]}))
    return path


def test_check_formula_only_holds_params_and_macs_without_torch(tmp_path: Path) -> None:
    path = _budget(tmp_path)
    code = (
        "import sys\n"
        "from convcost.cli import app\n"
        "try:\n"
        f"    app(['check', {str(path)!r}, '--formula-only', '-f', 'json'])\n"
        "except SystemExit as done:\n"
        "    assert done.code in (0, None), done.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    estimated = json.loads(result.stdout)
    measured = json.loads(CliRunner().invoke(app, ["check", str(path), "-f", "json"]).stdout)
    assert measured["summary"] == "1 check, 19 limits: 19 passed, 0 errors, 0 warnings"
    assert estimated["summary"] == measured["summary"] + " (by formula: nothing built or run)"
    assert [verdict["found"] for verdict in estimated["verdicts"]] == [v["found"] for v in measured["verdicts"]]


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        ({"latency_ms": {"max": 100}}, [], "checks[0].latency_ms: --formula-only measures no latency"),
        ({"model": "tests.models_for_tests:scaled", "input": "3x8x8", "layers": []}, [],
         "checks[0].model: --formula-only needs a model or batch file"),
        ({}, ["--update-baseline", "--baseline", "base.json"], "--update-baseline: a baseline records measured"),
    ],
)  # fmt: skip
def test_check_formula_only_refuses_what_needs_a_run(
    tmp_path: Path, extra: dict[str, Any], args: list[str], message: str
) -> None:
    path = _budget(tmp_path, **extra)
    result = CliRunner().invoke(app, ["check", str(path), "--formula-only", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_check_formula_only_warns_that_a_baselines_latency_went_uncompared(tmp_path: Path) -> None:
    path = _budget(tmp_path)
    baseline = tmp_path / "base.json"
    written = CliRunner().invoke(app, ["check", str(path), "--update-baseline", "--baseline", str(baseline)])
    assert written.exit_code == 0, written.output
    recorded = json.loads(baseline.read_text())
    recorded["checks"]["v2"]["latency_ms"] = 12.5  # as a baseline written by a check with a latency limit has
    baseline.write_text(json.dumps(recorded))
    result = CliRunner().invoke(app, ["check", str(path), "--formula-only", "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output  # a warning, not a failure: params and MACs growth still held
    assert "warning: v2: latency not compared with the baseline: nothing was measured" in result.stdout
    assert result.stdout.rstrip().endswith("0 errors, 1 warning (by formula: nothing built or run)")
