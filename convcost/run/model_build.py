"""A planned model → stock torch.nn modules, one child per layer, keyed by position."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convcost.cost.formulas import Act
from convcost.cost.ops import LinearOp
from convcost.run import build
from convcost.spec.layers import LinearLayer, ModelPlan, PlannedLayer, PoolLayer

ACTIVATIONS: dict[Act, type[nn.Module]] = {Act.RELU: nn.ReLU, Act.RELU6: nn.ReLU6}


class Residual(nn.Module):
    """``x + body(x)``: the one module that is not stock torch, because an add is not a module.

    It holds ``body`` as a child, so every conv inside stays a stock module that both counters see.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = x + self.body(x)
        return output


def layer_module(layer: PlannedLayer) -> nn.Module:
    """The module of one planned layer."""
    if layer.stages:
        body = build.layer(layer.stages)
        return Residual(body) if layer.residual else body
    spec = layer.spec
    if isinstance(spec, PoolLayer):
        if spec.global_:
            return nn.AdaptiveMaxPool2d(1) if spec.mode == "max" else nn.AdaptiveAvgPool2d(1)
        assert spec.kernel is not None and spec.padding != "same"
        stride = spec.stride or spec.kernel
        if spec.mode == "max":
            return nn.MaxPool2d(spec.kernel, stride, spec.padding)
        return nn.AvgPool2d(spec.kernel, stride, spec.padding)
    if isinstance(spec, LinearLayer):
        op = layer.ops[0]
        assert isinstance(op, LinearOp)
        linear = nn.Linear(op.input_shape[-1], op.out_features, bias=spec.bias)
        if spec.act is Act.NONE:
            return linear
        return nn.Sequential(OrderedDict(linear=linear, act=ACTIVATIONS[spec.act]()))
    if layer.kind == "flatten":
        return nn.Flatten()
    raise ValueError(f"no builder for layer kind {layer.kind}")  # pragma: no cover


def model_module(plan: ModelPlan) -> nn.Sequential:
    """The whole model: ``nn.Sequential`` with child ``str(i)`` for layer i (names may contain dots)."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict((str(index), layer_module(layer)) for index, layer in enumerate(plan.layers)))
