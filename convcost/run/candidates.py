"""What a conversion replaces: a candidate conv (or depthwise conv, BatchNorm and 1×1 conv) with its cost by formula,
and the formula's view of an ``nn.Conv2d``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from convcost.cost.factorize import Factorized
from convcost.cost.ops import ConvOp


@dataclass
class Candidate:
    """A conv (or depthwise conv, BatchNorm and 1×1 conv) that can be replaced, with its cost by formula."""

    name: str
    modules: list[tuple[str, nn.Module]]  # what is replaced, in order; the first gets the replacement
    factorized: Factorized
    shape_known: bool = False  # the input shape came from a forward pass (else MACs are unknown)
    extra_params: int = 0  # a folded BatchNorm's params (removed with the pair)

    @property
    def params_before(self) -> int:
        return self.factorized.params_before + self.extra_params


def conv_op(name: str, conv: nn.Conv2d, shape: tuple[int, ...] | None) -> ConvOp:
    """The formula's view of ``conv`` (a 1×cin×1×1 stand-in input when the shape is unknown: MACs then unused)."""
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    if padding == "valid":
        padding = (0, 0)
    input_shape = shape or (1, conv.in_channels, *(d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation,
                                                                                     strict=True)))  # fmt: skip
    return ConvOp(name=name, input_shape=input_shape, cin=conv.in_channels, cout=conv.out_channels,
                  kernel=tuple(conv.kernel_size), stride=tuple(conv.stride), padding=padding,  # type: ignore[arg-type]
                  dilation=tuple(conv.dilation), groups=conv.groups, bias=conv.bias is not None)  # fmt: skip
