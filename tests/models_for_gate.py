"""Import-path models for the CI gate's tests (tests/test_check_gate.py): one convcost cannot fully count, one
whose forward raises."""

from __future__ import annotations

import torch
from torch import nn


class ConvThenBilinear(nn.Module):
    """A 1→1 1×1 conv on 1×2×2 (4 MACs, counted), then nn.Bilinear(4, 4, 2) (4·4·2 = 32 MACs, no formula)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 1, 1)
        self.b = nn.Bilinear(4, 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x).flatten(1)
        return self.b(y, y)


def conv_then_bilinear() -> ConvThenBilinear:
    return ConvThenBilinear()


class ForwardRaises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward broke")


def forward_raises() -> ForwardRaises:
    return ForwardRaises()
