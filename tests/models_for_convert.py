"""Small models in plain torch for ``convcost suggest`` and ``convcost convert`` tests (import paths)."""

from __future__ import annotations

import torch
from torch import nn


def small_net() -> nn.Sequential:
    """Three 3×3 convs and a classifier: 3×16×16 in, 10 out (seeded, so every run converts the same weights)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


def separable_blocks() -> nn.Sequential:
    """Two MobileNet-style blocks: one linear (depthwise → BatchNorm → 1×1), one with a ReLU6 between."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)),
        nn.Conv2d(8, 16, 1),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1),
    )  # fmt: skip
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics other than 0 and 1, so that folding them is tested
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)
    return net.eval()
