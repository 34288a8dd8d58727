"""Model files' schema (the layers a file may hold) and the plan they become: layers of operations. No torch here.

Loading, validating and planning a file is :mod:`convcost.spec.model`; the plan's types are here, below it, so
the engine that evaluates a plan needs neither YAML nor the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from convcost.cost import ops as model_formulas
from convcost.cost.formulas import Act, ConvStage
from convcost.cost.ops import (
    Op,
    Shape,
)
from convcost.errors import Loc as Loc
from convcost.spec import bounds
from convcost.spec.compare import (
    ActField,
    LayerKind,
    NormField,
    PaddingField,
    PositiveInt,
    PositivePair,
    SizeField,
    StageOverrides,
    StrictBool,
    bounded_int,
)


def _positive_number(value: Any) -> float:
    """A positive number within bounds.WIDTH (a width multiplier α, a min_width)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a positive number, got boolean {str(value).lower()}")
    try:
        return bounds.real(value, bounds.WIDTH, "a positive number")
    except ValueError as error:
        try:
            number = value if isinstance(value, int) else float(value)  # an int compares exactly at any size
        except (TypeError, ValueError):
            number = None
        if number is None or number <= 0:
            raise ValueError(f"must be a positive number, got {bounds.shown(value)}") from None
        raise error from None


PositiveNumber = Annotated[float, BeforeValidator(_positive_number)]


class ModelInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: PositiveInt
    size: SizeField
    batch: PositiveInt = 1


class LayerDefaults(BaseModel):
    """Settings for every conv layer that does not give its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bias: StrictBool | None = None
    norm: NormField | None = None
    act: ActField | None = None


class ModelSpec(BaseModel):
    """A model file; ``layers`` are validated one by one against the model of their ``kind``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    input: ModelInput
    width_multiplier: PositiveNumber = 1.0
    channel_divisor: PositiveInt = 1
    defaults: LayerDefaults = LayerDefaults()
    layers: list[dict[str, Any]] = Field(min_length=1)


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = None
    repeat: bounded_int(bounds.REPEAT) = 1  # type: ignore[valid-type]


class ConvLayer(_Layer, StageOverrides):
    """A layer of any kind ``compare`` knows; ``cin`` comes from the layer before."""

    kind: LayerKind
    cout: PositiveInt | None = None  # depthwise/shared: multiplier × cin when not given
    kernel: PositivePair | None = None  # pointwise: 1×1
    stride: PositivePair = (1, 1)
    padding: PaddingField | None = None
    dilation: PositivePair = (1, 1)
    groups: PositiveInt = 1
    multiplier: PositiveInt = 1
    bias: StrictBool | None = None
    mid: PositiveInt | None = None
    norm: NormField | None = None
    act: ActField | None = None
    scale: StrictBool = True
    min_width: PositiveNumber | None = None  # scale by max(width_multiplier, min_width): widen only


class InvertedResidualLayer(_Layer):
    """MobileNetV2's block: 1×1 expand by ``expand``, depthwise k×k with stride, 1×1 linear projection."""

    kind: Literal["inverted_residual"]
    cout: PositiveInt
    expand: bounded_int(bounds.EXPAND) = 6  # type: ignore[valid-type]
    kernel: PositivePair = (3, 3)
    stride: PositivePair = (1, 1)
    bias: StrictBool | None = None
    norm: NormField | None = None
    act: ActField | None = None
    residual: StrictBool = True  # add the input when stride is 1 and channels match
    scale: StrictBool = True
    min_width: PositiveNumber | None = None


class PoolLayer(_Layer):
    kind: Literal["pool"]
    mode: Literal["max", "avg"] | None = None  # a global pool averages unless told otherwise
    global_: StrictBool = Field(default=False, alias="global")
    kernel: PositivePair | None = None
    stride: PositivePair | None = None  # default: the kernel
    padding: PaddingField = (0, 0)


class FlattenLayer(_Layer):
    kind: Literal["flatten"]


class LinearLayer(_Layer):
    kind: Literal["linear"]
    cout: PositiveInt
    bias: StrictBool = True
    act: ActField = Act.NONE
    scale: StrictBool = False  # a classifier's outputs are classes, not channels


LAYER_MODELS: dict[str, type[_Layer]] = {
    **{str(kind): ConvLayer for kind in LayerKind},
    "inverted_residual": InvertedResidualLayer,
    "pool": PoolLayer,
    "flatten": FlattenLayer,
    "linear": LinearLayer,
}


@dataclass
class PlannedLayer:
    """One layer of the stack, after repeat: its operations and what it is built from."""

    name: str
    kind: str
    loc: Loc  # where it is written, for error lines
    ops: list[Op]
    stages: list[ConvStage] = field(default_factory=list)  # conv kinds and inverted residuals
    residual: bool = False
    spec: _Layer | None = None

    @property
    def input_shape(self) -> Shape:
        return self.ops[0].input_shape

    @property
    def output_shape(self) -> Shape:
        return model_formulas.output_shape(self.ops[-1])


@dataclass
class ModelPlan:
    name: str | None
    input_shape: Shape
    layers: list[PlannedLayer]
    width_multiplier: float
    channel_divisor: int

    @property
    def ops(self) -> list[Op]:
        return [op for layer in self.layers for op in layer.ops]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape
