"""Small plain-torch models with more than one input, integer inputs, keyword inputs and structured outputs.

Their params and MACs are worked out by hand in tests/test_inputs.py and tests/test_count_api.py.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import torch
from torch import nn


class TwoInputs(nn.Module):
    """image 3×8×8 and a vector of 5 features: a conv on the image, a linear on the vector, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)  # 3*4*9 = 108 params
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.vector = nn.Linear(5, 6, bias=False)  # 30 params
        self.head = nn.Linear(10, 2, bias=False)  # 20 params

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        pooled = self.flatten(self.pool(self.conv(image)))
        return self.head(torch.cat([pooled, self.vector(features)], dim=1))


class Tokens(nn.Module):
    """Token ids (int64, length 16) → embedding 100×8 → a linear 8→4 per token."""

    def __init__(self, vocabulary: int = 100, width: int = 8) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)  # 100*8 = 800 params
        self.linear = nn.Linear(width, 4, bias=False)  # 8*4 = 32 params

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embedding(tokens))


class KeywordInputs(nn.Module):
    """forward(image=..., scale=...): keyword-only inputs, as a dict of inputs calls them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)  # 6 params

    def forward(self, *, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(image) * mask.unsqueeze(1).to(image.dtype)


class DictOutput(nn.Module):
    """Two heads on one linear trunk, returned as a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 8, bias=False)  # 48 params
        self.logits = nn.Linear(8, 3, bias=False)  # 24 params
        self.box = nn.Linear(8, 4, bias=False)  # 32 params

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.trunk(x)
        return {"logits": self.logits(hidden), "box": self.box(hidden)}


class TupleOutput(DictOutput):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # type: ignore[override]
        hidden = self.trunk(x)
        return hidden, [self.logits(hidden), self.box(hidden)]


@dataclass
class Prediction:
    logits: torch.Tensor
    box: torch.Tensor


class DataclassOutput(DictOutput):
    def forward(self, x: torch.Tensor) -> Prediction:  # type: ignore[override]
        hidden = self.trunk(x)
        return Prediction(self.logits(hidden), self.box(hidden))


Pair = namedtuple("Pair", ["logits", "box"])


class NamedTupleOutput(DictOutput):
    def forward(self, x: torch.Tensor) -> Pair:  # type: ignore[override]
        hidden = self.trunk(x)
        return Pair(self.logits(hidden), self.box(hidden))


def mlp(width: int = 4, depth: int = 2, bias: bool = True, name: str = "plain") -> nn.Module:
    """A factory with arguments: ``depth`` linears width→width (``name`` only checks that a string arrives)."""
    assert isinstance(name, str) and isinstance(bias, bool), (name, bias)
    return nn.Sequential(*(nn.Linear(width, width, bias=bias) for _ in range(depth)))


def two_inputs() -> nn.Module:
    return TwoInputs()


def tokens() -> nn.Module:
    return Tokens()


def keyword_inputs() -> nn.Module:
    return KeywordInputs()


def dict_output() -> nn.Module:
    return DictOutput()


def tuple_output() -> nn.Module:
    return TupleOutput()


def dataclass_output() -> nn.Module:
    return DataclassOutput()


def namedtuple_output() -> nn.Module:
    return NamedTupleOutput()
