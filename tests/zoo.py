"""Small modern models in plain torch, each with its cost worked out by hand in tests/test_zoo.py: a vision
transformer, a token decoder (GPT-like, causal attention, tied head), a recurrent net, a conv decoder with
squeeze-and-excitation, transposed conv, norms over features and upsampling, and a two-input model."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TinyViT(nn.Module):
    """3×8×8 → 4 patches of 4×4, a class token, position embeddings, one encoder layer, a LayerNorm and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.pos = nn.Parameter(torch.zeros(1, 5, 16))
        self.encoder = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # B×4×16
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self.pos  # B×5×16
        x = self.encoder(x)
        return self.head(self.norm(x[:, 0]))


class TinyGPT(nn.Module):
    """Token ids B×T → logits B×T×50: token and position embeddings, RMSNorm, causal attention by
    ``F.scaled_dot_product_attention``, an MLP, and a head tied to the token embedding (``F.linear``)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(50, 16)
        self.positions = nn.Embedding(8, 16)
        self.norm1 = nn.RMSNorm(16)
        self.qkv = nn.Linear(16, 48, bias=False)
        self.proj = nn.Linear(16, 16, bias=False)
        self.norm2 = nn.RMSNorm(16)
        self.up = nn.Linear(16, 64)
        self.act = nn.GELU()
        self.down = nn.Linear(64, 16)
        self.norm = nn.LayerNorm(16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        batch, length = ids.shape
        x = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, 2, 8).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # B×2 heads×T×8
        x = x + self.proj(y.transpose(1, 2).reshape(batch, length, 16))
        x = x + self.down(self.act(self.up(self.norm2(x))))
        return F.linear(self.norm(x), self.tokens.weight)


class TinyRecurrent(nn.Module):
    """B×6 steps×8 → a 2-layer bidirectional LSTM → its last step → a GRU cell → a head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.cell = nn.GRUCell(32, 12)
        self.head = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # B×6×32
        return self.head(self.cell(out[:, -1]))


class TinyDecoder(nn.Module):
    """4×8×8 → a strided conv, GroupNorm, SiLU, squeeze-and-excitation (a multiply), a transposed conv, an
    InstanceNorm, a skip concatenated, a bilinear upsample and a 1×1 conv → 2×16×16."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.act = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(8, 2, 1)
        self.excite = nn.Conv2d(2, 8, 1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.instance = nn.InstanceNorm2d(4, affine=True)
        self.resize = nn.Upsample(scale_factor=2, mode="bilinear")
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm(self.down(x)))  # 8×4×4
        y = y * torch.sigmoid(self.excite(F.relu(self.squeeze(self.pool(y)))))
        y = self.instance(self.up(y))  # 4×8×8
        return self.out(self.resize(torch.cat((y, x), 1)))  # 8×8×8 → 8×16×16 → 2×16×16


class TwoTowers(nn.Module):
    """Two inputs B×10, one shared encoder, their dot product by a batched matmul: a score per pair."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(10, 6)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        a, b = self.encoder(left), self.encoder(right)
        return (a.unsqueeze(1) @ b.unsqueeze(2)).flatten()


def tiny_vit() -> TinyViT:
    return TinyViT()


def tiny_gpt() -> TinyGPT:
    return TinyGPT()


def tiny_recurrent() -> TinyRecurrent:
    return TinyRecurrent()


def tiny_decoder() -> TinyDecoder:
    return TinyDecoder()


def two_towers() -> TwoTowers:
    return TwoTowers()
