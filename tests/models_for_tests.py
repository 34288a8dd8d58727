"""Plain torch models for the model tests: built here, independently of convcost's builders.

Used as import paths (``tests.models_for_tests:mobilenet_v2``) and as the hook-counted ground truth.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int, act: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def mobilenet_v1(width: float = 1.0) -> nn.Sequential:
    """MobileNet v1 as in the paper's Table 1."""

    def c(channels: int) -> int:
        return int(channels * width)

    layers: list[nn.Module] = [_conv_bn(3, c(32), 3, 2, 1, nn.ReLU)]
    cin = c(32)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for cout, stride in plan:
        layers += [_conv_bn(cin, cin, 3, stride, cin, nn.ReLU), _conv_bn(cin, c(cout), 1, 1, 1, nn.ReLU)]
        cin = c(cout)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1, 1, nn.ReLU6))
        layers += [_conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6), _conv_bn(hidden, cout, 1, 1, 1, None)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 as in the paper's Table 2, pooling and flattening in forward (as torchvision does)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, 1, nn.ReLU6)]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
            for index in range(n):
                layers.append(InvertedResidual(cin, c, s if index == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1, 1, nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2() -> MobileNetV2:
    return MobileNetV2()


def _torchvision_make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible`` (copied here, not imported from convcost)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class _TorchvisionInvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1, 1, nn.ReLU6))
        layers += [_conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6), _conv_bn(hidden, cout, 1, 1, 1, None)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def torchvision_mobilenet_v2(width: float = 1.0) -> nn.Sequential:
    """torchvision's MobileNetV2 at width multiplier ``width``: every channel count rounded to a multiple of 8,
    the last conv at ``1280 · max(1, width)`` (torchvision: ``last_channel * max(1.0, width_mult)``)."""
    cin = _torchvision_make_divisible(32 * width)
    last = _torchvision_make_divisible(1280 * max(1.0, width))
    layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2, 1, nn.ReLU6)]
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
        cout = _torchvision_make_divisible(c * width)
        for index in range(n):
            layers.append(_TorchvisionInvertedResidual(cin, cout, s if index == 0 else 1, t))
            cin = cout
    layers += [_conv_bn(cin, last, 1, 1, 1, nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, 1000)]
    return nn.Sequential(*layers)


class Attention(nn.Module):
    """Self-attention then a linear layer: the attention's matmuls run inside MultiheadAttention's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x)
        return self.fc(y)


def attention() -> Attention:
    return Attention()


class Scaled(nn.Module):
    """A container with a parameter of its own (a per-channel scale) applied after its conv: a valid model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


def scaled() -> Scaled:
    return Scaled()


def weight_normed() -> nn.Sequential:
    from torch.nn.utils.parametrizations import weight_norm

    return nn.Sequential(weight_norm(nn.Conv2d(3, 8, 3)), nn.ReLU())


class Unused(nn.Module):
    """A conv, and a linear layer and a parameter list that forward never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.spare = nn.Linear(4, 4)
        self.extra = nn.ParameterList([nn.Parameter(torch.ones(3))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def unused() -> Unused:
    return Unused()


class Functional(nn.Module):
    """Matmuls and a transposed conv called functionally, and two scalar sums added (not a residual add)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.weight = nn.Parameter(torch.randn(16, 16))
        self.kernel = nn.Parameter(torch.randn(4, 4, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)  # 1×5×16
        a = torch.addmm(torch.zeros(16), y[0], self.weight)
        b = nn.functional.scaled_dot_product_attention(y, y, y)
        c = torch.baddbmm(torch.zeros(1, 5, 5), y, y.transpose(1, 2))
        d = nn.functional.conv_transpose2d(y.reshape(1, 4, 4, 5), self.kernel)
        e = torch.tensordot(y, self.weight, dims=1)
        return a.sum() + b.sum() + c.sum() + d.sum() + e.sum()


def functional() -> Functional:
    return Functional()


class TinyResidual(nn.Module):
    """A conv, a residual block with a functional ReLU, a LayerNorm (no formula) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.norm = nn.LayerNorm([8, 6, 6])
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.norm(x)
        x = x.mean((2, 3))
        return self.head(x)


def tiny_residual() -> TinyResidual:
    return TinyResidual()


class Shapes1d3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(4, 6, 3, stride=2, padding=1)
        self.conv3d = nn.Conv3d(1, 2, (3, 3, 3), padding="same", bias=False)
        self.pool = nn.MaxPool1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.conv1d(x))  # 4×16 → 6×8 → 6×4
        z = self.conv3d(y.unsqueeze(1).unsqueeze(1).expand(-1, 1, 2, -1, -1))  # 1×2×6×4 → 2×2×6×4
        return z


def shapes_1d_3d() -> Shapes1d3d:
    return Shapes1d3d()


class FunctionalConv(nn.Module):
    """A conv called functionally on its own weight: no leaf module does it, so it is not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight)


def functional_conv() -> FunctionalConv:
    return FunctionalConv()


def not_a_module() -> int:
    return 42


def broken() -> nn.Module:
    raise RuntimeError("weights not found")
