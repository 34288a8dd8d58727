"""The formulas for transformer, decoder and recurrent ops, each against an independent figure: the arithmetic
written out here (``expected``), torch's own output shape and parameter count, and FlopCounterMode's MACs where
it sees the op (torch's formulas, attributed to the op by the dispatch tracer)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from convcost.results.model import OpResult
from convcost.run.model import evaluate_import


def _ops(model: nn.Module, shape: tuple[int, ...], batch: int = 2) -> list[OpResult]:
    result = evaluate_import("tests.test_ops_modern:model", shape, batch=batch, model=model)
    assert result.ok and result.complete, result.failures
    assert result.total.params == sum(parameter.numel() for parameter in model.parameters())
    return [op for op in result.ops if op.macs or op.other_ops or op.params]


def _only(model: nn.Module, shape: tuple[int, ...], batch: int = 2) -> OpResult:
    (op,) = _ops(model, shape, batch)
    assert op.output_shape == op.output_shape_measured  # the formula's shape is torch's
    return op


def model() -> nn.Module:  # the import path the tests name; they pass the instance
    return nn.Identity()


# ---- conv transpose -------------------------------------------------------------------------------------------

TRANSPOSED = [
    # dims, cin, cout, kernel, stride, padding, output_padding, dilation, groups, bias, input spatial
    (2, 4, 6, 3, 2, 1, 1, 1, 1, True, (5, 7)),
    (2, 4, 6, 2, 2, 0, 0, 1, 2, False, (4, 4)),
    (2, 6, 3, 3, 1, 2, 0, 2, 3, True, (6, 5)),
    (1, 3, 5, 4, 3, 1, 2, 1, 1, True, (9,)),
    (3, 2, 4, 2, 2, 0, 0, 1, 1, False, (3, 4, 2)),
]


@pytest.mark.parametrize(("dims", "cin", "cout", "k", "s", "p", "op_", "d", "g", "bias", "spatial"), TRANSPOSED)
def test_conv_transpose(dims: int, cin: int, cout: int, k: int, s: int, p: int, op_: int, d: int, g: int,
                        bias: bool, spatial: tuple[int, ...]) -> None:  # fmt: skip
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
    layer = cls(cin, cout, k, stride=s, padding=p, output_padding=op_, dilation=d, groups=g, bias=bias)
    op = _only(layer, (cin, *spatial))
    # each of the 2·cin·prod(spatial) input elements scatters into (cout / groups)·k^dims outputs
    assert op.macs == 2 * cin * math.prod(spatial) * (cout // g) * k**dims == op.macs_flop_counter
    outputs = [(n - 1) * s - 2 * p + d * (k - 1) + op_ + 1 for n in spatial]
    assert op.output_shape == (2, cout, *outputs)
    assert op.bias_adds == (2 * cout * math.prod(outputs) if bias else 0)


# ---- linear algebra --------------------------------------------------------------------------------------------


class Call(nn.Module):
    """Calls ``function(x, *operands)``; the operands are parameters (a weight) unless ``constant``."""

    def __init__(self, function: Any, *shapes: tuple[int, ...], constant: bool = False) -> None:
        super().__init__()
        self.function = function
        tensors = [torch.randn(shape) for shape in shapes]
        if constant:
            for index, tensor in enumerate(tensors):
                self.register_buffer(f"operand{index}", tensor)
            self.names = [f"operand{index}" for index in range(len(tensors))]
        else:
            self.operands = nn.ParameterList(tensors)
            self.names = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        operands = [getattr(self, name) for name in self.names] if self.names else list(self.operands)
        result: torch.Tensor = self.function(x, *operands)
        return result


MATMULS = [
    # function, operand shapes, input shape (without the batch of 2), MACs by hand for the batch
    (torch.matmul, [(16, 4)], (5, 16), 2 * 5 * 16 * 4),
    (lambda x, w: x @ w, [(3, 16, 4)], (1, 5, 16), 2 * 3 * 5 * 16 * 4),  # the batch broadcast against 3
    (lambda x, w: w @ x, [(7, 5)], (5, 16), 2 * 7 * 5 * 16),  # __rmatmul__ order: w on the left
    (lambda x, w: torch.bmm(x, w.expand(2, -1, -1)), [(16, 3)], (5, 16), 2 * 5 * 16 * 3),
    (lambda x, w: torch.einsum("bij,jk->bik", x, w), [(16, 6)], (5, 16), 2 * 5 * 16 * 6),
    (
        lambda x, w: torch.einsum("bhid,bhjd->bhij", x, w.expand(2, -1, -1, -1)),
        [(2, 7, 8)],
        (2, 5, 8),
        2 * 2 * 5 * 7 * 8,
    ),
    (lambda x, w: torch.einsum("bi,ij", x.flatten(1), w), [(80, 3)], (5, 16), 2 * 80 * 3),  # implicit output
    (lambda x, w, b: F.linear(x, w, b), [(4, 16), (4,)], (5, 16), 2 * 5 * 16 * 4),
    (lambda x, w: torch.baddbmm(torch.zeros(2, 5, 4), x, w.expand(2, -1, -1)), [(16, 4)], (5, 16), 2 * 5 * 16 * 4),
    (lambda x, w: torch.addbmm(torch.zeros(5, 4), x, w.expand(2, -1, -1)), [(16, 4)], (5, 16), 2 * 5 * 16 * 4),
    (lambda x, w: torch.mv(w, x.flatten()), [(3, 160)], (5, 16), 3 * 160),  # batch 2 · 80 = 160 elements
]


@pytest.mark.parametrize(("function", "shapes", "input_shape", "macs"), MATMULS)
def test_matmul_family(function: Any, shapes: list[tuple[int, ...]], input_shape: tuple[int, ...], macs: int) -> None:
    model = Call(function, *shapes)
    ops = _ops(model, input_shape)
    computing = [op for op in ops if op.macs]
    assert [op.macs for op in computing] == [macs]
    (op,) = computing
    assert op.output_shape == op.output_shape_measured
    if "FlopCounterMode" in op.blind_to:  # addbmm and mv: torch's counter has no formula for them, and says so
        assert op.not_seen_by == ["FlopCounterMode", "ptflops"] and op.macs_flop_counter == 0
    else:
        assert op.macs_flop_counter == macs  # torch's formula, independently
    # its weights are parameters, counted once: by the matmul, or by the expand that broadcast them
    assert sum(item.params for item in ops) == sum(math.prod(shape) for shape in shapes)


def test_a_matmul_of_two_activations_has_no_params_and_reads_its_right_operand() -> None:
    model = Call(lambda x, w: x @ x.transpose(-1, -2) @ w, (5, 2), constant=True)
    first, second = (op for op in _ops(model, (5, 16)) if op.macs)
    # (5×16) @ (16×5): 5·16·5 = 400 per item; (5×5) @ (5×2) by a buffer: 5·5·2 = 50 per item
    assert (first.macs, second.macs, first.params, second.params) == (800, 100, 0, 0)
    assert first.other_reads == 2 * 16 * 5


# ---- attention ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, embed: int, heads: int, kdim: int | None = None, vdim: int | None = None, bias: bool = True,
                 bias_kv: bool = False, zero_attn: bool = False, batch_first: bool = True, source: int = 0,
                 need_weights: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.attn = nn.MultiheadAttention(embed, heads, bias=bias, add_bias_kv=bias_kv, add_zero_attn=zero_attn,
                                          kdim=kdim, vdim=vdim, batch_first=batch_first)  # fmt: skip
        self.kdim, self.vdim, self.source, self.batch_first = kdim or embed, vdim or embed, source, batch_first
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source:  # keys and values of another length and width, made from the input
            keys = x.new_ones((x.shape[0], self.source, self.kdim) if self.batch_first else (self.source, x.shape[1],
                                                                                              self.kdim))  # fmt: skip
            values = keys.new_ones((*keys.shape[:-1], self.vdim))
            return self.attn(x, keys, values, need_weights=self.need_weights)[0]
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


ATTENTION = [
    # kwargs, L, S, kdim, vdim
    ({}, 6, 6, 16, 16),
    ({"need_weights": True}, 6, 6, 16, 16),
    ({"bias": False}, 6, 6, 16, 16),
    ({"kdim": 10, "vdim": 12, "source": 9}, 6, 9, 10, 12),
    ({"bias_kv": True, "zero_attn": True}, 6, 6, 16, 16),
    ({"batch_first": False}, 6, 6, 16, 16),
]


@pytest.mark.parametrize(("kwargs", "length", "source", "kdim", "vdim"), ATTENTION)
def test_multihead_attention(kwargs: dict[str, Any], length: int, source: int, kdim: int, vdim: int) -> None:
    model = Attention(16, 4, **kwargs)
    batch_first = kwargs.get("batch_first", True)
    op = _only(model, (length, 16) if batch_first else (2, 16), batch=2 if batch_first else length)
    keys = source + int(kwargs.get("bias_kv", False)) + int(kwargs.get("zero_attn", False))
    # 2 sequences: q and out projections 2·L·16·16 each, k 2·S·kdim·16, v 2·S·vdim·16; scores over all heads
    # 2·L·keys·16 and the weighted sum as many
    projections = 2 * (2 * length * 16 * 16 + source * (kdim + vdim) * 16)
    assert op.macs == projections + 2 * (2 * length * keys * 16)
    assert op.other_ops == 2 * 2 * 4 * length * keys  # softmax and scale: 2 per score, 4 heads
    if kwargs.get("need_weights"):  # the math path (bmm), which FlopCounterMode sees
        assert op.macs_flop_counter == op.macs and op.not_seen_by == []


@pytest.mark.parametrize(("query", "key", "value"), [((2, 3, 6, 8), (2, 3, 9, 8), (2, 3, 9, 5)),
                                                     ((6, 8), (9, 8), (9, 4)),
                                                     ((4, 6, 8), (1, 9, 8), (1, 9, 8))])  # fmt: skip
def test_scaled_dot_product_attention(query: tuple[int, ...], key: tuple[int, ...], value: tuple[int, ...]) -> None:
    class Sdpa(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.reshape(query)
            return F.scaled_dot_product_attention(q, q.new_ones(key), q.new_ones(value))

    op = _only(Sdpa(), (math.prod(query),), batch=1)
    batch = math.prod(query[:-2])
    scores = batch * query[-2] * key[-2]
    assert op.macs == scores * (query[-1] + value[-1])  # Q·Kᵀ: L·S·E per batch item; A·V: L·S·Ev
    assert op.output_shape == (*query[:-1], value[-1])


# ---- norms, upsample, embedding, multiply --------------------------------------------------------------------

NORMS = [
    (nn.LayerNorm(16), (5, 16), 6, 32),  # mean, variance (2), normalise, weight, bias: 6 per element
    (nn.LayerNorm(16, bias=False), (5, 16), 5, 16),
    (nn.LayerNorm([5, 16], elementwise_affine=False), (5, 16), 4, 0),
    (nn.GroupNorm(2, 8), (8, 3, 3), 6, 16),
    (nn.InstanceNorm2d(8), (8, 3, 3), 4, 0),  # no affine by default
    (nn.RMSNorm(16), (5, 16), 3, 16),  # mean of squares, normalise, weight
]


@pytest.mark.parametrize(("layer", "shape", "per_element", "params"), NORMS)
def test_norms_over_features(layer: nn.Module, shape: tuple[int, ...], per_element: int, params: int) -> None:
    op = _only(layer, shape) if params else _ops_all(layer, shape)
    assert (op.macs, op.other_ops, op.params) == (0, per_element * 2 * math.prod(shape), params)


def _ops_all(model: nn.Module, shape: tuple[int, ...]) -> OpResult:
    result = evaluate_import("tests.test_ops_modern:model", shape, batch=2, model=model)
    assert result.ok and result.complete, result.failures
    (op,) = result.ops
    return op


@pytest.mark.parametrize(("layer", "output", "reads"), [
    (nn.Upsample(scale_factor=2, mode="nearest"), (6, 8), 0),
    (nn.Upsample(size=(5, 7), mode="bilinear"), (5, 7), 4),
    (nn.Upsample(scale_factor=1.5, mode="bicubic"), (4, 6), 16),  # floor(3·1.5) = 4, floor(4·1.5) = 6
])  # fmt: skip
def test_upsample(layer: nn.Module, output: tuple[int, int], reads: int) -> None:
    op = _ops_all(layer, (2, 3, 4))
    assert op.output_shape == op.output_shape_measured == (2, 2, *output)
    assert op.other_ops == reads * 2 * 2 * math.prod(output)


def test_embedding_is_params_without_macs() -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(30, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.table(torch.zeros_like(x, dtype=torch.long))

    op = _only(Tokens(), (7,))
    assert (op.params, op.macs, op.other_ops, op.output_shape) == (30 * 6, 0, 0, (2, 7, 6))


def test_a_multiply_between_activations_and_a_layer_scale() -> None:
    class Scales(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * torch.sigmoid(x.mean(-1, keepdim=True))) * self.gamma * 0.5

    ops = [op for op in _ops(Scales(), (5, 16)) if op.kind == "multiply"]
    # both multiplies are over 2·5·16 = 160 elements; the scale by 0.5 is a number, not a multiply
    assert [(op.other_ops, op.params) for op in ops] == [(160, 0), (160, 16)]


# ---- recurrent ----------------------------------------------------------------------------------------------

RECURRENT = [
    # module, input (without batch), gates, layer input widths, hidden, state, directions
    (nn.LSTM(8, 16, batch_first=True), (6, 8), 4, [8], 16, 16, 1),
    (nn.GRU(8, 12, num_layers=2, batch_first=True), (6, 8), 3, [8, 12], 12, 12, 1),
    (nn.RNN(8, 10, bidirectional=True, batch_first=True, bias=False), (6, 8), 1, [8], 10, 10, 2),
    (nn.LSTM(8, 16, num_layers=2, proj_size=6, batch_first=True), (6, 8), 4, [8, 6], 16, 6, 1),
]


@pytest.mark.parametrize(("layer", "shape", "gates", "widths", "hidden", "state", "directions"), RECURRENT)
def test_recurrent(layer: nn.RNNBase, shape: tuple[int, int], gates: int, widths: list[int], hidden: int,
                   state: int, directions: int) -> None:  # fmt: skip
    with warnings.catch_warnings():  # the flags' own warning about TF32 on Intel GPUs, nothing else
        warnings.filterwarnings("ignore", message="TF32 acceleration")
        with torch.backends.mkldnn.flags(enabled=False):  # the unfused path: FlopCounterMode sees its matmuls
            op = _only(layer, shape)
    steps = 2 * shape[0] * directions  # 2 sequences · steps · directions
    projection = hidden * state if state != hidden else 0
    assert op.macs == sum(steps * (gates * hidden * (width + state) + projection) for width in widths)
    assert op.macs_flop_counter == op.macs
    assert op.output_shape == (2, shape[0], directions * state)


@pytest.mark.parametrize(("cell", "gates"), [(nn.LSTMCell(8, 5), 4), (nn.GRUCell(8, 5), 3), (nn.RNNCell(8, 5), 1)])
def test_recurrent_cells(cell: nn.RNNCellBase, gates: int) -> None:
    op = _only(cell, (8,))
    assert op.macs == 2 * gates * 5 * (8 + 5) == op.macs_flop_counter  # one step: x·W_ih + h·W_hh
    assert op.output_shape == (2, 5)


def test_a_parameter_read_by_an_op_without_params_is_counted_once() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Parameter(torch.zeros(16))
            self.table = nn.Parameter(torch.zeros(3, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = self.table.unbind(0)  # a tuple: the parameter is read all the same
            return x * torch.sigmoid(self.gate) + rows[0]

    result = evaluate_import("tests.test_ops_modern:model", (5, 16), batch=2, model=Gated())
    assert result.ok and result.complete, result.failures
    by_kind = {op.kind: op for op in result.ops}
    # the sigmoid of 16 gates is an activation of 16 elements; its parameter is a parameter use of 16
    assert by_kind["activation"].other_ops == 16 and by_kind["parameter use"].params in (16, 48)
    assert result.total.params == 16 + 48


def test_a_head_tied_to_the_embedding_as_a_linear_module_adds_no_params() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(50, 12)
            self.head = nn.Linear(12, 50, bias=False)
            self.head.weight = self.tokens.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.tokens(torch.zeros_like(x, dtype=torch.long)))

    result = evaluate_import("tests.test_ops_modern:model", (7,), model=Tied())
    assert result.ok and result.complete, result.failures
    # the table 50·12 = 600 once; the head 7 tokens · 12 · 50 = 4,200 MACs on the same weight
    assert (result.total.params, result.total.macs) == (600, 4_200)
    head = next(op for op in result.ops if op.name == "head")
    assert (head.params, head.params_measured) == (0, 0)


class _Unknown(nn.Module):
    """An ellipsis einsum on a parameter (no formula), reductions and scans, elementwise work, and a Bessel
    function (arithmetic no formula knows)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(16, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = torch.einsum("...i,ij->...j", x, self.w)
        scanned = x.max(-1).values + x.cumsum(-1)[..., 0] + torch.addcmul(x, x, x)[..., 0] + x.topk(2).values[..., 0]
        return projected.sum() + scanned.sum() + torch.special.bessel_j0(x).sum()


def test_no_call_is_dropped_macs_without_a_formula_are_not_counted_other_work_is() -> None:
    result = evaluate_import("tests.test_ops_modern:model", (5, 16), model=_Unknown())
    assert not result.complete
    uncounted = {op.name: op for op in result.not_counted}
    # the ellipsis einsum has no formula: not counted, with the 16·7 = 112 parameters it read
    assert uncounted["(model).einsum"].params == 112
    assert "(model).special_bessel_j0" in uncounted
    by_name = {op.name: op for op in result.ops}
    # max over the last dim, cumsum, topk: one other op per input element, 5·16 = 80; addcmul one per output
    assert [by_name[f"(model).{name}"].other_ops for name in ("max", "cumsum", "topk")] == [80, 80, 80]
    assert by_name["(model).addcmul"].other_ops == 80
    assert not result.ok  # both counters see the einsum's 5·16·7 = 560 MACs that no formula has
