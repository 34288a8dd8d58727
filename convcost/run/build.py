"""Specs → stock torch.nn modules (nn.Conv2d, nn.BatchNorm2d, nn.Sequential), so every counter sees them."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from convcost.cost import formulas
from convcost.cost.formulas import Act, ConvStage, Norm
from convcost.spec.compare import DType


class TiledKernel(nn.Module):
    """Parametrization of a shared-kernel depthwise conv: one kernel per multiplier slot, tiled over channels.

    The stored parameter has shape (m, 1, R, S); the conv sees (m·cin, 1, R, S) where output channel m·c + j
    uses kernel j. The module stays an ``nn.Conv2d`` (parametrize swaps its class for a subclass of it).
    """

    def __init__(self, channels: int, multiplier: int) -> None:
        super().__init__()
        self.channels = channels
        self.multiplier = multiplier

    def forward(self, kernel: torch.Tensor) -> torch.Tensor:
        return kernel.repeat(self.channels, 1, 1, 1)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight[: self.multiplier].clone()


def conv(stage: ConvStage) -> nn.Conv2d:
    """The stage's Conv2d; ``same`` padding becomes nn.Conv2d's own ``padding='same'``."""
    module = nn.Conv2d(
        stage.cin,
        stage.cout,
        stage.kernel,
        stride=stage.stride,
        padding=stage.padding,
        dilation=stage.dilation,
        groups=stage.groups,
        bias=stage.bias,
    )
    if stage.shared:
        parametrize.register_parametrization(module, "weight", TiledKernel(stage.groups, stage.multiplier))
    return module


def stage_module(stage: ConvStage) -> nn.Module:
    """The conv alone, or Sequential(conv, norm, act) when the stage has a norm or an activation."""
    parts: OrderedDict[str, nn.Module] = OrderedDict(conv=conv(stage))
    if stage.norm is Norm.BATCH:
        parts["norm"] = nn.BatchNorm2d(stage.cout)
    if stage.act is not Act.NONE:
        parts["act"] = {Act.RELU: nn.ReLU, Act.RELU6: nn.ReLU6}[stage.act]()
    if len(parts) == 1:
        return parts["conv"]
    return nn.Sequential(parts)


def layer(stages: list[ConvStage]) -> nn.Sequential:
    """A layer: its stages in order, named by stage (``depthwise``, ``pointwise``, ...)."""
    return nn.Sequential(OrderedDict((stage.name, stage_module(stage)) for stage in stages))


TORCH_DTYPES = {DType.FLOAT32: torch.float32, DType.BFLOAT16: torch.bfloat16, DType.FLOAT16: torch.float16}


def prepare(module: nn.Module, dtype: DType, device: str) -> nn.Module:
    """Move to dtype and device, in inference mode (BatchNorm uses running statistics)."""
    return module.to(device=device, dtype=TORCH_DTYPES[dtype]).eval()


def input_tensor(channels: int, size: formulas.Pair, batch: int, dtype: DType, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(batch, channels, size[0], size[1], generator=generator)
    return tensor.to(device=device, dtype=TORCH_DTYPES[dtype])
