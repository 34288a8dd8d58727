"""Plain torch models for the readable-table and convention tests: long dotted names, nested containers, a
container that works functionally, a module whose first child does not see its input, an op with no formula."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _block() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            pointwise_projection=nn.Conv2d(4, 4, 1, bias=False),
            normalisation=nn.BatchNorm2d(4),
            activation=nn.ReLU(),
        )
    )


def long_names() -> nn.Sequential:
    """Names that differ only at their end (…pointwise_projection / …normalisation) or only in the middle
    (residual_block_a / residual_block_b): cutting either end or middle carelessly makes two rows alike."""
    stage = nn.Sequential(OrderedDict(residual_block_a=_block(), residual_block_b=_block()))
    return nn.Sequential(OrderedDict(encoder_stage=stage, decoder_stage=nn.Sequential(OrderedDict(
        residual_block_a=_block()))))  # fmt: skip


class Merge(nn.Module):
    """PatchMerging-like: the first child sees the four strided slices stacked, not the module's own input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(4 * channels)
        self.reduce = nn.Conv2d(4 * channels, 2 * channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
        return self.reduce(self.norm(x))


class Encoder(nn.Module):
    """A container with a parameter of its own and functional work (two adds) around its child."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.blocks = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos.expand_as(x)
        return x + self.blocks(x)


class Nested(nn.Module):
    """stem (conv, bn, relu) → stages (Encoder, Merge) → pool and flatten in forward → head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.stages = nn.Sequential(Encoder(8), Merge(8))
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def nested() -> Nested:
    return Nested()


class Opaque(nn.Module):
    """A module of a type no formula knows, with no children, whose forward runs no operation we know (a Bessel
    function; its parameter unused): not counted, with its parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


def with_opaque() -> nn.Sequential:
    """conv 3→4 3×3 (no bias), a ReLU (zero MACs, counted), the opaque leaf (not counted)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), Opaque())


def small_cnn(affine: bool = True) -> nn.Sequential:
    """conv 3→8 3×3 pad 1 (no bias), batchnorm, ReLU, global average pool, flatten, linear 8→10."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8, affine=affine),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


class PoolTwice(nn.Module):
    """pool (8² → 4²), ReLU, the same pool again (4² → 2²): the last op ran is in the first module's row."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.pool(x)))


def pool_twice() -> PoolTwice:
    return PoolTwice()
