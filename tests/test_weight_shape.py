"""The per-op weight-shape check: the planned op's weight by formula against the built module's, for model files
and compare's one-layer networks alike. A build that transposes a kernel keeps params, MACs and the output shape
(an R×1 kernel padded (p, 0) and a 1×R one padded (0, p)), so only this check can catch it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

import convcost
from convcost.cli import app
from convcost.cost.formulas import ConvStage
from convcost.cost.opbase import Op
from convcost.cost.ops import ConvOp, LinearOp
from convcost.cost.ops_nn import ConvTransposeOp
from convcost.run import build, model_build
from convcost.run.comparison import compare
from convcost.run.model import evaluate_plan
from convcost.spec.kinds import parse_compare
from convcost.spec.layers import PlannedLayer
from convcost.spec.model import load_model

# dense 8→16 with a 3×1 kernel, padding (1, 0), on 8×9×9: weight 16·8·3·1 = 384 params, output 16×9×9 either way
LAYER = {"kind": "dense", "cout": 16, "kernel": [3, 1], "padding": [1, 0]}
TRANSPOSED = "weight shape: formula 16×8×3×1, measured 16×8×1×3"


def _transposed(stage_module: Callable[[ConvStage], nn.Module]) -> Callable[[ConvStage], nn.Module]:
    """``build.stage_module`` with each stage's conv built with its kernel and padding transposed."""

    def swapped(stage: ConvStage) -> nn.Module:
        module = stage_module(stage)
        conv = next(child for child in module.modules() if isinstance(child, nn.Conv2d))
        (r, s), (p, q) = conv.kernel_size, conv.padding
        new = nn.Conv2d(conv.in_channels, conv.out_channels, (s, r), conv.stride, (q, p), conv.dilation, conv.groups,
                        conv.bias is not None)  # fmt: skip
        if module is conv:
            return new
        for name, child in module.named_children():
            if child is conv:
                setattr(module, name, new)
        return module

    return swapped


@pytest.fixture
def transposed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "stage_module", _transposed(build.stage_module))


def _one_layer(folder: Path, layer: dict[str, object]) -> Path:
    path = folder / "one.yaml"
    path.write_text(yaml.safe_dump({"input": {"channels": 8, "size": 9}, "layers": [{"name": "only", **layer}]}))
    return path


def test_a_transposed_kernel_fails_the_model_run(transposed: None, tmp_path: Path) -> None:
    path = _one_layer(tmp_path, LAYER)
    result = evaluate_plan(load_model(str(path)), str(path))
    assert not result.ok
    assert result.failures == [f"only.dense: {TRANSPOSED}"]


def test_a_transposed_kernel_fails_a_separable_layer_of_a_model(transposed: None, tmp_path: Path) -> None:
    # the depthwise 3×1 conv stage (8×1×3×1) is transposed, then the pointwise 1×1 conv (16×8×1×1), which no
    # transposition changes
    path = _one_layer(tmp_path, {**LAYER, "kind": "separable"})
    result = evaluate_plan(load_model(str(path)), str(path))
    assert result.failures == ["only.depthwise: weight shape: formula 8×1×3×1, measured 8×1×1×3"]


def test_a_transposed_kernel_fails_the_check_command(transposed: None, tmp_path: Path) -> None:
    _one_layer(tmp_path, LAYER)
    budget = tmp_path / "budgets.yaml"
    budget.write_text(f"checks:\n  - {{name: one, model: {tmp_path / 'one.yaml'}, params: {{max: 1k}}}}\n")
    result = CliRunner().invoke(app, ["check", str(budget)])
    assert result.exit_code == 1, result.output
    assert f"one: only.dense: {TRANSPOSED}" in result.stdout


def test_a_transposed_kernel_still_fails_compare_once(transposed: None) -> None:
    spec = parse_compare({"cin": 8, "cout": 16, "kernel": [3, 1], "padding": [1, 0], "size": 9, "vs": "pointwise"})
    comparison = compare(spec)
    # the stage's check and its one conv's per-op check say the same thing: said once
    assert [check.message() for check in comparison.dense.checks if not check.ok] == [f"dense: {TRANSPOSED}"]
    assert all(check.ok for check in comparison.alternatives[0].checks)  # a 1×1 kernel transposed is the same


def test_a_transposed_kernel_fails_the_compare_command(transposed: None) -> None:
    arguments = ["compare", "--cin", "8", "--cout", "16", "-k", "3x1", "--padding", "1x0", "--size", "9",
                 "--vs", "pointwise", "--no-latency"]  # fmt: skip
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1, result.output
    # said under the stages and again at the end, as every failed check is; once each, not once per op and stage
    assert [line for line in result.stdout.splitlines() if line.startswith("✗")] == [f"✗ dense: {TRANSPOSED}"] * 2


class _TransposedLinear(nn.Linear):
    """A linear layer that stores its weight in × out and applies its transpose: params, MACs and output shape as
    ``nn.Linear``'s, but not the weight shape its attributes say."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.weight = nn.Parameter(self.weight.detach().T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.T, self.bias)


def test_a_transposed_linear_weight_fails_the_model_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 8×3×3 flattened = 72 features → 10: planned weight 10×72, the built one stores 72×10 (720 params either way)
    layer_module = model_build.layer_module

    def transposed(layer: PlannedLayer) -> nn.Module:
        module = layer_module(layer)
        assert isinstance(module, nn.Linear) or layer.kind == "flatten"
        return _TransposedLinear(module.in_features, module.out_features) if isinstance(module, nn.Linear) else module

    monkeypatch.setattr(model_build, "layer_module", transposed)
    path = tmp_path / "linear.yaml"
    layers = [{"kind": "flatten"}, {"name": "head", "kind": "linear", "cout": 10}]
    path.write_text(yaml.safe_dump({"input": {"channels": 8, "size": 3}, "layers": layers}))
    result = evaluate_plan(load_model(str(path)), str(path))
    assert result.failures == ["head: weight shape: formula 10×72, measured 72×10"]


def test_an_instance_is_checked_against_its_own_attributes_only() -> None:
    # an nn.Module instance has no plan: its op is read from the module (in_features, out_features), so the check
    # catches a weight that disagrees with them, and nothing a plan would have said
    result = convcost.count(nn.Sequential(nn.Flatten(), _TransposedLinear(72, 10)), (8, 3, 3))
    assert result.failures == ["1: weight shape: formula 10×72, measured 72×10"]
    assert convcost.count(nn.Sequential(nn.Conv2d(8, 16, (1, 3), padding=(0, 1))), (8, 9, 9)).ok


@pytest.mark.parametrize(
    ("op", "module"),
    [
        (ConvOp("c1", (1, 4, 9), 4, 6, (3,), groups=2), nn.Conv1d(4, 6, 3, groups=2)),  # 6 × 4/2 × 3
        (ConvOp("c2", (1, 4, 9, 9), 4, 6, (3, 1)), nn.Conv2d(4, 6, (3, 1))),  # 6 × 4 × 3 × 1
        # 8 × 4/4 × 3 × 1 × 2
        (ConvOp("c3", (1, 4, 9, 9, 9), 4, 8, (3, 1, 2), groups=4), nn.Conv3d(4, 8, (3, 1, 2), groups=4)),
        # a transposed conv's is cin × cout/groups × kernel = 4 × 6/2 × 3 × 2
        (ConvTransposeOp("t", (1, 4, 9, 9), 4, 6, (3, 2), groups=2), nn.ConvTranspose2d(4, 6, (3, 2), groups=2)),
        (LinearOp("l", (2, 72), 72, 10), nn.Linear(72, 10)),  # out × in = 10 × 72
    ],
)  # fmt: skip
def test_weight_shape_formulas_are_torchs(op: Op, module: nn.Module) -> None:
    assert isinstance(module.weight, torch.Tensor)
    assert op.weight_shape() == tuple(module.weight.shape)
