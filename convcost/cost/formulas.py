"""Pure-integer cost formulas for convolution stages. No torch here.

The counting convention, stated once for all of convcost:

* **MACs** are the multiply-accumulates of the conv (or linear) weights for the whole batch:
  ``output elements × (cin / groups) × R × S``. Bias additions are *not* MACs.
* **Bias adds** are one addition per output element of a conv with bias, reported in their own column.
* **Other ops** are normalisation and activation work, reported separately and never folded into MACs:
  inference BatchNorm is a scale and a shift, 2 ops per element; ReLU and ReLU6 are 1 op per element.
* **FLOPs** = 2 × MACs, a separate named field (never "flops" meaning MACs).
* **Params** are the trainable parameters: conv weights, conv bias, BatchNorm weight and bias.
  BatchNorm running statistics are buffers, not parameters.
* **Bytes** moved at minimum: every op that reads and writes memory (the conv, its norm, its activation) reads its
  input and parameters once and writes its output once; views move nothing.

Each conv stage is described by a :class:`ConvStage`; a layer kind expands into a list of stages
(see :mod:`convcost.spec.kinds`). A stage is counted as the ops it runs (:func:`convcost.cost.ops.stage_ops`: a
conv op, a norm op, an activation op), so one set of formulas in :mod:`convcost.cost.ops` covers every kind of
``compare`` and every layer of a model.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any, Literal, TypeVar

Pair = tuple[int, int]
Padding = Pair | Literal["same"]

NORM_OPS_PER_ELEMENT = 2
ACT_OPS_PER_ELEMENT = 1
T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen dataclass an ``__init__`` that fills the instance's ``__dict__`` in one call, where the
    generated one calls ``object.__setattr__`` once per field: the same signature and defaults, still frozen after,
    2× faster to build (the formula path builds a stage and several ops per conv)."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init: {cls.__name__} has a __post_init__")
    names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
    defaults: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.default_factory is not MISSING or not item.init:
            raise TypeError(f"fast_init: {cls.__name__}.{item.name} needs dataclass's own __init__")
        if item.default is not MISSING:
            defaults[f"_{item.name}"] = item.default
    signature = ", ".join(name + (f"=_{name}" if f"_{name}" in defaults else "") for name in names)
    body = ", ".join(f"{name}={name}" for name in names)
    code: dict[str, Any] = {}
    exec(f"def __init__(self, {signature}):\n    self.__dict__.update({body})", defaults, code)
    code["__init__"].__annotations__ = cls.__init__.__annotations__  # the same signature for introspection
    cls.__init__ = code["__init__"]  # type: ignore[method-assign]
    return cls


class Norm(str, Enum):
    """Normalisation after a conv stage."""

    NONE = "none"
    BATCH = "batch"

    def __str__(self) -> str:
        return self.value


class Act(str, Enum):
    """Activation after a conv stage (after its norm, if any)."""

    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"

    def __str__(self) -> str:
        return self.value


@fast_init
@dataclass(frozen=True)
class ConvStage:
    """One Conv2d (optionally followed by a norm and an activation) in user terms."""

    name: str
    cin: int
    cout: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Padding = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    shared: bool = False  # one R×S kernel per multiplier slot, shared by every group
    norm: Norm = Norm.NONE
    act: Act = Act.NONE
    notes: tuple[str, ...] = field(default=())

    @property
    def multiplier(self) -> int:
        """Outputs per group divided by inputs per group (the depth multiplier of a depthwise stage)."""
        return self.cout // self.groups

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.cin and self.groups > 1


def explicit_padding(stage: ConvStage) -> tuple[Pair, Pair]:
    """Padding as ((top, bottom), (left, right)); ``same`` pads like ``nn.Conv2d(padding='same')``."""
    if stage.padding == "same":
        pads: list[Pair] = []
        for k, d in zip(stage.kernel, stage.dilation, strict=True):
            total = d * (k - 1)
            # torch puts the odd pixel on the bottom/right side
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]
    ph, pw = stage.padding
    return (ph, ph), (pw, pw)


def output_length(length: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """One spatial dimension of a conv output: floor((L + pads − d·(k−1) − 1) / s) + 1."""
    return (length + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def output_size(stage: ConvStage, size: Pair) -> Pair:
    """Spatial output size (H, W) of a stage for an input of spatial size ``size``."""
    (sh, sw) = stage.stride
    if stage.padding == "same":  # pads d·(k−1) in all (explicit_padding): the length at stride 1
        return (size[0] - 1) // sh + 1, (size[1] - 1) // sw + 1
    (kh, kw), (dh, dw), (ph, pw) = stage.kernel, stage.dilation, stage.padding
    return (size[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (size[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def weight_shape(stage: ConvStage) -> tuple[int, int, int, int]:
    """Shape of the weight tensor the conv applies: (cout, cin/groups, R, S)."""
    return (stage.cout, stage.cin // stage.groups, stage.kernel[0], stage.kernel[1])


def channel_map(stage: ConvStage) -> list[tuple[range, range]]:
    """For each group, (output channels, input channels they read)."""
    out_per_group = stage.cout // stage.groups
    in_per_group = stage.cin // stage.groups
    return [
        (
            range(g * out_per_group, (g + 1) * out_per_group),
            range(g * in_per_group, (g + 1) * in_per_group),
        )
        for g in range(stage.groups)
    ]


def textbook_separable_ratio(cout: int, kernel: Pair, multiplier: int = 1) -> float:
    """The MobileNet paper's dense ÷ separable MAC ratio, 1/(m/K + m/(R·S)), for equal output sizes.

    Dense: N·K·C·R·S; separable: N·(m·C·R·S + K·m·C); the ratio is K·R·S / (m·(R·S + K)).
    """
    rs = kernel[0] * kernel[1]
    return 1.0 / (multiplier / cout + multiplier / rs)


def separable_ratio_bound(kernel: Pair, multiplier: int = 1) -> float:
    """The limit of the textbook ratio as K grows: R·S / m."""
    return kernel[0] * kernel[1] / multiplier
