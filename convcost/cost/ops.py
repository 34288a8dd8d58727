"""Pure-integer formulas for the operations of a whole model, in a registry keyed by operation kind. No torch.

The counting convention is the one stated in :mod:`convcost.formulas`; for the operations a model adds:

* **conv** (1-, 2- or 3-d, and every conv stage of ``compare``): output elements × (cin / groups) × prod(kernel)
  MACs.
* **linear**: rows × in_features × out_features MACs (rows = input elements / in_features); bias adds apart.
* **batchnorm**: 2 params per channel when affine, 2 other ops per element (inference: a scale and a shift).
* **activation**: 1 other op per output element, whatever the function (ReLU, ReLU6, Hardswish, SiLU, ...);
  PReLU has one parameter per channel.
* **pool**: a window pool does one op per window element per output element; an adaptive (global) pool reads
  each input element once: one op per input element.
* **add** (a residual add, or a broadcast one: position embeddings): 1 other op per output element; a parameter
  added is its params.
* **flatten**, **identity** and dropout (at inference) cost nothing.
* **Bytes moved** at minimum (the roofline's, see :mod:`convcost.roofline`): every operation that really reads
  and writes memory reads its input(s) and its parameters once and writes its output once (an add reads two
  inputs); views (flatten, identity, dropout at inference) move nothing. A conv stage of ``compare`` is its conv,
  norm and activation ops under the same rule (:func:`stage_ops`, :func:`stage_cost`).
* A **parametrized** weight (``torch.nn.utils.parametrize``: weight_norm, a shared kernel) counts the tensors
  the module stores, not the weight it computes; MACs follow the computed weight's shape.
* **matmul, attention, LayerNorm/GroupNorm/InstanceNorm/RMSNorm, conv transpose, upsample, embedding, RNN/GRU/LSTM
  and multiplies** between activations: the convention is stated in :mod:`convcost.cost.ops_nn`.
* An operation with no formula is **not counted**: it keeps its parameter count and is listed as such, never
  reported as a silent zero.

Every operation records its input shape (batch included); its output shape is computed here, and the model
pipeline checks it against the shape seen in a real forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal

from convcost.cost import formulas
from convcost.cost.formulas import ConvStage
from convcost.cost.opbase import Cost, Formula, Op, OpKind, Shape, cost, elements, output_shape, register, registered

__all__ = ["Cost", "Formula", "Op", "OpKind", "Shape", "cost", "elements", "output_shape", "register", "registered"]


@formulas.fast_init
@dataclass(frozen=True)
class ConvOp(Op):
    """A 1-, 2- or 3-d convolution (without its norm and activation, which are ops of their own)."""

    cin: int = 1
    cout: int = 1
    kernel: tuple[int, ...] = (1, 1)
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] | Literal["same"] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    bias: bool = False
    shared: bool = False
    # a parametrized weight (weight_norm, ...) stores other tensors than the weight it computes: their count
    stored_params: int | None = None
    kind: ClassVar[OpKind] = OpKind.CONV

    @property
    def dims(self) -> int:
        return len(self.kernel)

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.cin and self.groups > 1

    @property
    def is_pointwise(self) -> bool:
        return (
            self.groups == 1
            and all(k == 1 for k in self.kernel)
            and all(s == 1 for s in self.stride)
            and self.padding != "same"
            and not any(self.padding)
        )

    def weight_shape(self) -> Shape:
        return (self.cout, self.cin // self.groups, *self.kernel)  # a shared kernel's: the tiled one it applies

    @classmethod
    def from_stage(cls, stage: ConvStage, input_shape: Shape, name: str | None = None) -> ConvOp:
        # positional: a third faster than by keyword, and the formula path makes one per conv stage
        return cls(name or stage.name, input_shape, stage.cin, stage.cout, stage.kernel, stage.stride, stage.padding,
                   stage.dilation, stage.groups, stage.bias, stage.shared, None)  # fmt: skip


@formulas.fast_init
@dataclass(frozen=True)
class LinearOp(Op):
    in_features: int = 1
    out_features: int = 1
    bias: bool = True
    stored_params: int | None = None  # as for ConvOp: a parametrized weight's stored tensors
    kind: ClassVar[OpKind] = OpKind.LINEAR

    def weight_shape(self) -> Shape:
        return (self.out_features, self.in_features)


@formulas.fast_init
@dataclass(frozen=True)
class NormOp(Op):
    """Inference BatchNorm over dimension 1."""

    channels: int = 1
    affine: bool = True
    kind: ClassVar[OpKind] = OpKind.NORM


@formulas.fast_init
@dataclass(frozen=True)
class ActOp(Op):
    function: str = "relu"
    params: int = 0  # PReLU's slopes
    kind: ClassVar[OpKind] = OpKind.ACT


@formulas.fast_init
@dataclass(frozen=True)
class PoolOp(Op):
    """A window pool (max or average) over the trailing spatial dimensions."""

    mode: Literal["max", "avg"] = "max"
    kernel: tuple[int, ...] = (2, 2)
    stride: tuple[int, ...] = (2, 2)
    padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    ceil_mode: bool = False
    kind: ClassVar[OpKind] = OpKind.POOL


@formulas.fast_init
@dataclass(frozen=True)
class AdaptivePoolOp(Op):
    """An adaptive pool to a fixed output size; global pooling is output size 1."""

    mode: Literal["max", "avg"] = "avg"
    output_size: tuple[int, ...] = (1, 1)
    kind: ClassVar[OpKind] = OpKind.ADAPTIVE_POOL


@formulas.fast_init
@dataclass(frozen=True)
class FlattenOp(Op):
    start_dim: int = 1
    end_dim: int = -1
    kind: ClassVar[OpKind] = OpKind.FLATTEN


@formulas.fast_init
@dataclass(frozen=True)
class IdentityOp(Op):
    """Identity, or Dropout at inference."""

    kind: ClassVar[OpKind] = OpKind.IDENTITY


@formulas.fast_init
@dataclass(frozen=True)
class AddOp(Op):
    """A residual add of two tensors of the op's input shape, or a parameter added to one (a position embedding,
    broadcast over the batch): that parameter is its params."""

    params: int = 0
    kind: ClassVar[OpKind] = OpKind.ADD


@dataclass(frozen=True)
class UncountedOp(Op):
    """An operation with no formula: its parameters are known, its cost is not."""

    type_name: str = ""
    params: int = 0
    output: Shape = ()  # as measured: there is no formula for it
    kind: ClassVar[OpKind] = OpKind.NOT_COUNTED


def _conv_output(op: ConvOp) -> Shape:
    shape = op.input_shape
    if op.padding == "same":  # pads d·(k−1) in all (the odd pixel on the bottom/right side): (L − 1) // s + 1
        return (shape[0], op.cout, *[(length - 1) // s + 1 for length, s in zip(shape[2:], op.stride, strict=False)])
    if len(shape) == 4:  # the common case, written out: the formula path counts every conv of a model
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = op.kernel, op.stride, op.padding, op.dilation
        height = (shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        return (shape[0], op.cout, height, (shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
    lengths = map(formulas.output_length, shape[2:], op.kernel, op.stride, [2 * p for p in op.padding], op.dilation)
    return (shape[0], op.cout, *lengths)


# the formulas the formula path runs for every op build their Cost as a tuple: twice as fast as Cost(...)
_cost = tuple.__new__


@register(ConvOp, _conv_output)
def _conv_cost(op: ConvOp) -> Cost:
    """MACs: output elements × (cin / groups) × prod(kernel); a shared kernel stores one kernel per multiplier
    slot (cout / groups of them), which every group applies."""
    cout, bias = op.cout, op.bias
    per_output = (op.cin // op.groups) * math.prod(op.kernel)
    outputs = math.prod(_conv_output(op))
    if op.stored_params is not None:
        params = op.stored_params
    else:
        params = (cout // op.groups if op.shared else cout) * per_output + (cout if bias else 0)
    return _cost(Cost, (params, outputs * per_output, outputs if bias else 0, 0))


@register(LinearOp, lambda op: (*op.input_shape[:-1], op.out_features))
def _linear_cost(op: LinearOp) -> Cost:
    rows = elements(op.input_shape[:-1])
    params = op.in_features * op.out_features + (op.out_features if op.bias else 0)
    return Cost(
        params=params if op.stored_params is None else op.stored_params,
        macs=rows * op.in_features * op.out_features,
        bias_adds=rows * op.out_features if op.bias else 0,
    )


@register(NormOp, lambda op: op.input_shape)
def _norm_cost(op: NormOp) -> Cost:
    params = 2 * op.channels if op.affine else 0
    return _cost(Cost, (params, 0, 0, formulas.NORM_OPS_PER_ELEMENT * math.prod(op.input_shape)))


@register(ActOp, lambda op: op.input_shape)
def _act_cost(op: ActOp) -> Cost:
    return _cost(Cost, (op.params, 0, 0, formulas.ACT_OPS_PER_ELEMENT * math.prod(op.input_shape)))


def _pool_output(op: PoolOp) -> Shape:
    spatial = op.input_shape[-len(op.kernel) :]
    out = []
    for index, length in enumerate(spatial):
        k, s, p, d = op.kernel[index], op.stride[index], op.padding[index], op.dilation[index]
        if op.ceil_mode:
            size = -(-(length + 2 * p - d * (k - 1) - 1) // s) + 1
            # torch: the last window must start inside the input or its left padding
            if (size - 1) * s >= length + p:
                size -= 1
        else:
            size = formulas.output_length(length, k, s, 2 * p, d)
        out.append(size)
    return (*op.input_shape[: -len(op.kernel)], *out)


@register(PoolOp, _pool_output)
def _pool_cost(op: PoolOp) -> Cost:
    return Cost(other_ops=elements(_pool_output(op)) * math.prod(op.kernel))


@register(AdaptivePoolOp, lambda op: (*op.input_shape[: -len(op.output_size)], *op.output_size))
def _adaptive_pool_cost(op: AdaptivePoolOp) -> Cost:
    return Cost(other_ops=elements(op.input_shape))


def _flatten_output(op: FlattenOp) -> Shape:
    rank = len(op.input_shape)
    start = op.start_dim % rank
    end = op.end_dim % rank
    if end < start:
        return op.input_shape
    return (*op.input_shape[:start], elements(op.input_shape[start : end + 1]), *op.input_shape[end + 1 :])


@register(FlattenOp, _flatten_output)
def _flatten_cost(op: FlattenOp) -> Cost:
    return Cost()


@register(IdentityOp, lambda op: op.input_shape)
def _identity_cost(op: IdentityOp) -> Cost:
    return Cost()


@register(AddOp, lambda op: op.input_shape)
def _add_cost(op: AddOp) -> Cost:
    return _cost(Cost, (op.params, 0, 0, math.prod(op.input_shape)))


@register(UncountedOp, lambda op: op.output)
def _uncounted_cost(op: UncountedOp) -> Cost:
    return Cost(params=op.params)


VIEW_KINDS = frozenset({OpKind.FLATTEN, OpKind.IDENTITY, OpKind.PARAMETER_USE})


def moved_elements(kind: OpKind | str, input_shape: Shape, output_shape: Shape, params: int, other: int = 0) -> int:
    """Elements an operation reads and writes at minimum (times the dtype's size: its bytes); views move none.

    ``other`` is what it reads besides its input and parameters (:meth:`Op.other_reads`); an embedding reads its
    indices and the rows it returns, not its whole table."""
    kind = OpKind(kind)
    if kind in VIEW_KINDS:
        return 0
    inputs = elements(input_shape) if input_shape else 0
    outputs = elements(output_shape) if output_shape else 0
    if kind is OpKind.ADD and not params:  # two activations; else one and the parameter
        inputs *= 2
    if kind is OpKind.EMBEDDING:
        return inputs + 2 * outputs
    return inputs + params + other + outputs


def stage_ops(stage: ConvStage, input_shape: Shape, prefix: str = "") -> tuple[list[Op], Shape]:
    """A conv stage as the ops it runs (its conv, then its norm and its activation when it has them) and its output
    shape (the conv's)."""
    return stages_ops((stage,), input_shape, prefix)


def stages_ops(stages: Iterable[ConvStage], shape: Shape, prefix: str = "") -> tuple[list[Op], Shape]:
    """Conv stages as their ops (:func:`stage_ops`), each stage's input the last's output; and the last's output."""
    ops: list[Op] = []
    for stage in stages:
        name = prefix + stage.name
        conv = ConvOp.from_stage(stage, shape, name)
        ops.append(conv)
        shape = _conv_output(conv)
        if stage.norm is _BATCH:
            ops.append(NormOp(name + ".norm", shape, stage.cout, True))
        if (act := _ACT_NAMES[stage.act]) != "none":
            ops.append(ActOp(name + ".act", shape, act, 0))
    return ops, shape


_BATCH = formulas.Norm.BATCH


_ACT_NAMES = {act: act.value for act in formulas.Act}  # a dict lookup; an enum's .value is a descriptor call


def stage_cost(stage: ConvStage, input_shape: Shape, itemsize: int = 1) -> tuple[Cost, int]:
    """The cost of a conv stage, the sum of its ops', and the bytes they move at minimum (at ``itemsize``)."""
    ops, _ = stage_ops(stage, input_shape)
    costs = [cost(op) for op in ops]
    moved = sum(moved_elements(op.kind, op.input_shape, output_shape(op), item.params)
                for op, item in zip(ops, costs, strict=True))  # fmt: skip
    total = Cost(sum(item.params for item in costs), sum(item.macs for item in costs),
                 sum(item.bias_adds for item in costs), sum(item.other_ops for item in costs))  # fmt: skip
    return total, moved * itemsize


class Category(str, Enum):
    """The breakdown by layer kind (``--by-kind``): where a model's params and MACs go."""

    DENSE_CONV = "dense conv"
    POINTWISE_CONV = "1×1 conv"
    DEPTHWISE_CONV = "depthwise conv"
    GROUPED_CONV = "grouped conv"
    LINEAR = "linear"
    NORM = "batchnorm"
    ACT = "activation"
    POOL = "pool"
    ADD = "residual add"
    RESHAPE = "reshape"
    MATMUL = "matmul"
    ATTENTION = "attention"
    FEATURE_NORM = "layer/group norm"
    CONV_TRANSPOSE = "conv transpose"
    UPSAMPLE = "upsample"
    EMBEDDING = "embedding"
    RECURRENT = "recurrent"
    MUL = "multiply"
    REDUCE = "reduction"
    ELEMENTWISE = "elementwise"
    NOT_COUNTED = "not counted"

    def __str__(self) -> str:
        return self.value


def category(op: Op) -> Category:
    """The breakdown category of an op: convs by their shape, the rest by kind."""
    if isinstance(op, ConvOp):
        if op.is_depthwise:
            return Category.DEPTHWISE_CONV
        if op.groups > 1:
            return Category.GROUPED_CONV
        if all(k == 1 for k in op.kernel):
            return Category.POINTWISE_CONV
        return Category.DENSE_CONV
    return _OTHER_CATEGORY.get(op.kind) or Category[op.kind.name]  # the others have their kind's name


_OTHER_CATEGORY = {OpKind.ADAPTIVE_POOL: Category.POOL, OpKind.FLATTEN: Category.RESHAPE,
                   OpKind.IDENTITY: Category.RESHAPE, OpKind.PARAMETER_USE: Category.RESHAPE}  # fmt: skip


def describe(op: Op) -> str:
    """A short description for tables: ``3×3 s2 32→64 g32``."""
    own = op.description()
    if own is not None:
        return own
    if isinstance(op, ConvOp):
        text = "×".join(str(k) for k in op.kernel)
        if any(s != 1 for s in op.stride):
            text += " s" + "×".join(str(s) for s in dict.fromkeys(op.stride))
        text += f" {op.cin}→{op.cout}"
        if op.groups > 1:
            text += f" g{op.groups}"
        return text
    if isinstance(op, LinearOp):
        return f"{op.in_features}→{op.out_features}"
    if isinstance(op, ActOp):
        return op.function
    if isinstance(op, PoolOp):
        return f"{op.mode} {'×'.join(str(k) for k in op.kernel)}"
    if isinstance(op, AdaptivePoolOp):
        return f"{op.mode} → {'×'.join(str(k) for k in op.output_size)}"
    if isinstance(op, UncountedOp):
        return op.type_name
    return str(op.kind)
