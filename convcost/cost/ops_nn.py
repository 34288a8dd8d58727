"""Formulas for the operations of transformers, decoders and recurrent nets, in the one registry of
:mod:`convcost.cost.ops`. No torch here.

The convention (the one of :mod:`convcost.cost.formulas`, extended):

* **matmul** (``matmul``, ``@``, ``mm``, ``bmm``, ``mv``, ``addmm``, ``baddbmm``, ``addbmm``, a two-operand
  ``einsum``, ``F.linear``): one MAC per product summed, output elements × the contracted length (for an
  ``einsum``, the product of every index size); an added matrix (``addmm``'s input) is one bias add per output
  element. A weight that is a parameter of the model counts as that op's params, once.
* **attention** (``F.scaled_dot_product_attention``, and the core of ``nn.MultiheadAttention``): Q·Kᵀ is
  batch × L × S × E MACs, the weighted sum of V batch × L × S × Ev MACs (batch includes the heads); the softmax
  (with its scale) is 2 other ops per score. ``nn.MultiheadAttention`` adds its q, k, v and output projections as
  linear MACs with their bias adds.
* **norms over features** (LayerNorm, GroupNorm, InstanceNorm, RMSNorm): other ops, as BatchNorm's are; the
  statistics and normalisation are 4 ops per element (RMSNorm: 2), plus 1 per element for a weight and 1 for a
  bias. Their params are the weight and bias.
* **conv transpose**: every input element scatters into (cout / groups) × prod(kernel) outputs: input elements ×
  (cout / groups) × prod(kernel) MACs; a bias is one add per output element.
* **upsample / interpolate**: no MACs; other ops per output element are the input points it weighs: nearest 0,
  linear 2, bilinear 4, trilinear 8, bicubic 16.
* **embedding**: params (rows × dim), no MACs: a lookup reads the rows it returns.
* **recurrent** (RNN, GRU, LSTM and their cells): per time step, layer and direction, gates × hidden × (input +
  hidden) MACs (gates: RNN 1, GRU 3, LSTM 4; LSTM with ``proj_size`` adds hidden × proj), two bias adds per gate
  element, and other ops: one per gate element (its activation) plus 5 per hidden element for the state update of
  a GRU or an LSTM.
* **reduction** (``mean``, ``sum``, ``amax``, …; a global pool written as ``x.mean((2, 3))``): 1 other op per
  input element, as an adaptive pool.
* **elementwise** arithmetic without MACs (``x / 2``, ``exp``, ``where``, ``addcmul``, a multiply or add by a
  number): 1 other op per output element.
* **multiply** between two activations (squeeze-and-excitation's gate, LayerScale's scale): 1 other op per
  output element; a parameter operand counts as params.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from convcost.cost.opbase import Cost, Op, OpKind, Shape, elements, register

# ---- matmul family ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatmulOp(Op):
    """A product of two tensors: ``input_shape`` @ ``right`` (torch.matmul's rules), or an ``einsum``."""

    right: Shape = ()
    equation: str = ""  # a two-operand einsum's, without spaces; empty for a matmul
    added: bool = False  # addmm / baddbmm: a matrix added to the product
    summed_batch: bool = False  # addbmm: the batch of products summed into one matrix
    params: int = 0  # the operands that are parameters of the model (F.linear's weight, ...)
    function: str = "matmul"
    kind: ClassVar[OpKind] = OpKind.MATMUL

    def other_reads(self) -> int:
        return elements(self.right)

    def description(self) -> str:
        if self.equation:
            return f"einsum {self.equation}"
        left, right = "×".join(map(str, self.input_shape)), "×".join(map(str, self.right))
        return f"{self.function} {left} @ {right}"


def _broadcast(left: Shape, right: Shape) -> Shape:
    width = max(len(left), len(right))
    left, right = (1,) * (width - len(left)) + left, (1,) * (width - len(right)) + right
    return tuple(max(a, b) for a, b in zip(left, right, strict=True))


def _einsum_sizes(op: MatmulOp) -> tuple[dict[str, int], str]:
    inputs, output = op.equation.split("->")
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs.split(","), (op.input_shape, op.right), strict=True):
        for letter, size in zip(letters, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return sizes, output


def _matmul_output(op: MatmulOp) -> Shape:
    if op.equation:
        sizes, output = _einsum_sizes(op)
        return tuple(sizes[letter] for letter in output)
    left, right = op.input_shape, op.right
    if len(left) == 1 and len(right) == 1:
        return ()
    if len(right) == 1:
        return left[:-1]
    if len(left) == 1:
        return (*right[:-2], right[-1])
    if op.summed_batch:
        return (left[-2], right[-1])
    return (*_broadcast(left[:-2], right[:-2]), left[-2], right[-1])


@register(MatmulOp, _matmul_output)
def _matmul_cost(op: MatmulOp) -> Cost:
    outputs = elements(_matmul_output(op))
    if op.equation:
        macs = math.prod(_einsum_sizes(op)[0].values())
    else:  # addbmm sums the batch of products into one matrix
        macs = outputs * op.input_shape[-1] * (op.input_shape[0] if op.summed_batch else 1)
    return Cost(params=op.params, macs=macs, bias_adds=outputs if op.added else 0)


# ---- attention ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionOp(Op):
    """Scaled dot-product attention on q ``input_shape`` (…, L, E), k (…, S, E), v (…, S, Ev); with
    ``embed_dim`` > 0, ``nn.MultiheadAttention`` around it (q, k, v in the module's layout)."""

    key: Shape = ()
    value: Shape = ()
    embed_dim: int = 0  # 0: the functional core alone (F.scaled_dot_product_attention)
    heads: int = 1
    batch_first: bool = False
    bias: bool = True
    bias_kv: bool = False  # add_bias_kv: one more key and value
    zero_attn: bool = False  # add_zero_attn: one more (zero) key and value
    params: int = 0
    need_weights: bool = False  # nn.MultiheadAttention asked for the weights: its core runs as bmm, not fused
    kind: ClassVar[OpKind] = OpKind.ATTENTION

    def other_reads(self) -> int:
        return elements(self.key) + elements(self.value)

    def description(self) -> str:
        return f"{self.heads} heads, {self.embed_dim} wide" if self.embed_dim else "scaled dot-product"

    def _module_sizes(self) -> tuple[int, int, int, int, int]:
        """batch, L, S (with the added keys), kdim, vdim of a multi-head attention's inputs."""
        query, key, value = self.input_shape, self.key, self.value
        if len(query) == 2:  # unbatched: (L, E)
            batch, length, source = 1, query[0], key[0]
        elif self.batch_first:
            batch, length, source = query[0], query[1], key[1]
        else:
            batch, length, source = query[1], query[0], key[0]
        source += int(self.bias_kv) + int(self.zero_attn)
        return batch, length, source, key[-1], value[-1]


def attention_core(op: AttentionOp) -> int:
    """The MACs of Q·Kᵀ and of the weighted sum of V alone (without ``nn.MultiheadAttention``'s projections)."""
    if not op.embed_dim:
        return _attention_cost(op).macs
    batch, length, source, _, _ = op._module_sizes()
    return batch * length * source * op.embed_dim * 2


def _attention_output(op: AttentionOp) -> Shape:
    if op.embed_dim:
        return op.input_shape
    return (*_broadcast(op.input_shape[:-2], op.value[:-2]), op.input_shape[-2], op.value[-1])


@register(AttentionOp, _attention_output)
def _attention_cost(op: AttentionOp) -> Cost:
    if not op.embed_dim:
        batch = elements(_broadcast(op.input_shape[:-2], op.key[:-2]))
        length, source, width, value_width = op.input_shape[-2], op.key[-2], op.input_shape[-1], op.value[-1]
        scores = batch * length * source
        return Cost(params=op.params, macs=scores * (width + value_width), other_ops=2 * scores)
    batch, length, source, kdim, vdim = op._module_sizes()
    embed, raw_source = op.embed_dim, source - int(op.bias_kv) - int(op.zero_attn)
    projections = batch * (length * embed * embed + raw_source * (kdim + vdim) * embed + length * embed * embed)
    scores = batch * op.heads * length * source
    core = attention_core(op)  # Q·Kᵀ and the weighted sum, over all heads: E = heads × E/heads
    bias_adds = batch * (2 * length + 2 * raw_source) * embed if op.bias else 0
    return Cost(params=op.params, macs=projections + core, bias_adds=bias_adds, other_ops=2 * scores)


# ---- norms over features --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureNormOp(Op):
    """LayerNorm, GroupNorm, InstanceNorm or RMSNorm: statistics computed from the input itself."""

    function: Literal["layernorm", "groupnorm", "instancenorm", "rmsnorm"] = "layernorm"
    weight: int = 0  # elements of the weight (0: none)
    bias: int = 0
    kind: ClassVar[OpKind] = OpKind.FEATURE_NORM

    def description(self) -> str:
        return self.function


@register(FeatureNormOp, lambda op: op.input_shape)
def _feature_norm_cost(op: FeatureNormOp) -> Cost:
    statistics = 2 if op.function == "rmsnorm" else 4
    per_element = statistics + (1 if op.weight else 0) + (1 if op.bias else 0)
    return Cost(params=op.weight + op.bias, other_ops=per_element * elements(op.input_shape))


# ---- conv transpose ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvTransposeOp(Op):
    """A 1-, 2- or 3-d transposed convolution."""

    cin: int = 1
    cout: int = 1
    kernel: tuple[int, ...] = (1, 1)
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] = (0, 0)
    output_padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    bias: bool = False
    stored_params: int | None = None
    kind: ClassVar[OpKind] = OpKind.CONV_TRANSPOSE

    def description(self) -> str:
        text = "×".join(map(str, self.kernel))
        if any(s != 1 for s in self.stride):
            text += " s" + "×".join(str(s) for s in dict.fromkeys(self.stride))
        return text + f" {self.cin}→{self.cout}" + (f" g{self.groups}" if self.groups > 1 else "")

    def weight_shape(self) -> Shape:
        return (self.cin, self.cout // self.groups, *self.kernel)


def _conv_transpose_output(op: ConvTransposeOp) -> Shape:
    dims = zip(op.input_shape[2:], op.kernel, op.stride, op.padding, op.output_padding, op.dilation, strict=False)
    out = [(length - 1) * s - 2 * p + d * (k - 1) + extra + 1 for length, k, s, p, extra, d in dims]
    return (op.input_shape[0], op.cout, *out)


@register(ConvTransposeOp, _conv_transpose_output)
def _conv_transpose_cost(op: ConvTransposeOp) -> Cost:
    per_input = (op.cout // op.groups) * math.prod(op.kernel)
    params = op.cin * per_input + (op.cout if op.bias else 0) if op.stored_params is None else op.stored_params
    bias_adds = elements(_conv_transpose_output(op)) if op.bias else 0
    return Cost(params=params, macs=elements(op.input_shape) * per_input, bias_adds=bias_adds)


# ---- upsample, embedding, multiply -------------------------------------------------------------------------

UPSAMPLE_READS = {"nearest": 0, "nearest-exact": 0, "linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}


@dataclass(frozen=True)
class UpsampleOp(Op):
    """Upsample / interpolate to ``size`` (the trailing dimensions)."""

    mode: str = "nearest"
    size: tuple[int, ...] = ()
    kind: ClassVar[OpKind] = OpKind.UPSAMPLE

    def description(self) -> str:
        return f"{self.mode} → {'×'.join(map(str, self.size))}"


def _upsample_output(op: UpsampleOp) -> Shape:
    return (*op.input_shape[: len(op.input_shape) - len(op.size)], *op.size)


@register(UpsampleOp, _upsample_output)
def _upsample_cost(op: UpsampleOp) -> Cost:
    return Cost(other_ops=UPSAMPLE_READS.get(op.mode, 0) * elements(_upsample_output(op)))


def upsample_size(
    shape: Shape, size: int | Sequence[int] | None, scale_factor: float | Sequence[float] | None
) -> tuple[int, ...]:
    """The output size of an upsample of ``shape`` (batch and channels first): torch's rule, floor(in × scale)."""
    spatial = shape[2:]
    if size is not None:
        return (int(size),) * len(spatial) if isinstance(size, int) else tuple(int(item) for item in size)
    if scale_factor is None:
        return spatial
    scales = (float(scale_factor),) * len(spatial) if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
    return tuple(math.floor(length * float(scale)) for length, scale in zip(spatial, scales, strict=True))


@dataclass(frozen=True)
class EmbeddingOp(Op):
    """A lookup of ``input_shape`` indices in a table of ``rows`` × ``dim``."""

    rows: int = 1
    dim: int = 1
    params: int | None = None  # None: the table's; 0 when the table is not a parameter
    kind: ClassVar[OpKind] = OpKind.EMBEDDING

    def description(self) -> str:
        return f"{self.rows}×{self.dim}"


@register(EmbeddingOp, lambda op: (*op.input_shape, op.dim))
def _embedding_cost(op: EmbeddingOp) -> Cost:
    return Cost(params=op.rows * op.dim if op.params is None else op.params)


@dataclass(frozen=True)
class MulOp(Op):
    """An elementwise multiply of ``input_shape`` by a tensor of shape ``other`` (broadcast)."""

    other: Shape = ()
    params: int = 0
    kind: ClassVar[OpKind] = OpKind.MUL

    def other_reads(self) -> int:
        return 0 if self.params else elements(self.other)


@register(MulOp, lambda op: _broadcast(op.input_shape, op.other))
def _mul_cost(op: MulOp) -> Cost:
    return Cost(params=op.params, other_ops=elements(_broadcast(op.input_shape, op.other)))


@dataclass(frozen=True)
class ReduceOp(Op):
    """A reduction (``mean``, ``sum``, ``amax``, …) of ``input_shape`` to ``output``: a global pool written as
    ``x.mean((2, 3))``; one other op per input element, as an adaptive pool."""

    function: str = "mean"
    output: Shape = ()
    kind: ClassVar[OpKind] = OpKind.REDUCE

    def description(self) -> str:
        return self.function


@register(ReduceOp, lambda op: op.output)
def _reduce_cost(op: ReduceOp) -> Cost:
    return Cost(other_ops=elements(op.input_shape))


@dataclass(frozen=True)
class ElementwiseOp(Op):
    """Arithmetic without MACs (``x / 2``, ``exp``, ``where``, ``addcmul``, a multiply or add by a number):
    one other op per output element; its output as measured (broadcasting)."""

    function: str = "div"
    output: Shape = ()
    kind: ClassVar[OpKind] = OpKind.ELEMENTWISE

    def description(self) -> str:
        return self.function


@register(ElementwiseOp, lambda op: op.output)
def _elementwise_cost(op: ElementwiseOp) -> Cost:
    return Cost(other_ops=elements(op.output))


@dataclass(frozen=True)
class ParameterUseOp(Op):
    """A parameter of the model that a view or a copy reads (a class token expanded over the batch and
    concatenated, a bias table indexed): its params, no MACs, no other ops; its output as measured."""

    function: str = ""
    params: int = 0
    output: Shape = ()
    kind: ClassVar[OpKind] = OpKind.PARAMETER_USE

    def description(self) -> str:
        return self.function


@register(ParameterUseOp, lambda op: op.output)
def _parameter_use_cost(op: ParameterUseOp) -> Cost:
    return Cost(params=op.params)


# ---- recurrent -------------------------------------------------------------------------------------------------

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class RecurrentOp(Op):
    """An RNN, GRU or LSTM over a sequence (``cell``: one step of it) on ``input_shape``."""

    mode: Literal["rnn", "gru", "lstm"] = "lstm"
    input_size: int = 1
    hidden: int = 1
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj: int = 0  # an LSTM's proj_size
    cell: bool = False
    kind: ClassVar[OpKind] = OpKind.RECURRENT

    def description(self) -> str:
        kind = self.mode.upper() + (" cell" if self.cell else "")
        return f"{kind} {self.input_size}→{self.hidden}" + (f" ×{self.layers}" if self.layers > 1 else "")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state(self) -> int:
        """The width of the hidden state each step returns."""
        return self.proj or self.hidden

    def steps_and_batch(self) -> tuple[int, int]:
        shape = self.input_shape
        if self.cell:
            return 1, shape[0] if len(shape) == 2 else 1
        if len(shape) == 2:
            return shape[0], 1
        return (shape[1], shape[0]) if self.batch_first else (shape[0], shape[1])

    def layer_inputs(self) -> list[int]:
        return [self.input_size] + [self.state * self.directions] * (self.layers - 1)


@register(RecurrentOp, lambda op: (*op.input_shape[:-1], op.hidden if op.cell else op.state * op.directions))
def _recurrent_cost(op: RecurrentOp) -> Cost:
    gates = GATES[op.mode] * op.hidden
    steps, batch = op.steps_and_batch()
    runs = steps * batch * op.directions  # one step of one direction for one sequence
    params = macs = bias_adds = other = 0
    for width in op.layer_inputs():
        weights = gates * (width + op.state) + op.hidden * op.proj
        params += op.directions * (weights + (2 * gates if op.bias else 0))
        macs += runs * weights
        bias_adds += runs * 2 * gates if op.bias else 0
        other += runs * (gates + (5 * op.hidden if op.mode != "rnn" else 0))
    return Cost(params=params, macs=macs, bias_adds=bias_adds, other_ops=other)
