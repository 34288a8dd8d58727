"""Pure formulas of whole-model operations, each against arithmetic worked out in a comment or against torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convcost.cost import dense as dense_equivalent_of
from convcost.cost import ops as mf
from convcost.cost.formulas import Act, ConvStage, Norm, Padding
from convcost.cost.ops import (
    ActOp,
    AdaptivePoolOp,
    AddOp,
    Category,
    ConvOp,
    FlattenOp,
    LinearOp,
    NormOp,
    PoolOp,
    UncountedOp,
)


def test_conv2d_uses_the_compare_formulas() -> None:
    op = ConvOp("c", (2, 8, 10, 10), cin=8, cout=16, kernel=(3, 3), stride=(2, 2), padding=(1, 1), bias=True)
    # output 10 → floor((10 + 2 − 2 − 1)/2) + 1 = 5; MACs 2·16·5·5 · 8·9 = 57,600; params 16·8·9 + 16 = 1,168
    assert mf.output_shape(op) == (2, 16, 5, 5)
    assert mf.cost(op) == mf.Cost(params=1168, macs=57_600, bias_adds=800)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 17)),
        (nn.Conv1d(6, 6, 5, groups=3, dilation=2, bias=False), (1, 6, 20)),
        (nn.Conv3d(2, 4, (3, 1, 3), stride=(1, 2, 1), padding=(1, 0, 1)), (1, 2, 5, 6, 7)),
        (nn.Conv3d(4, 4, 3, padding="same", groups=4, bias=False), (1, 4, 4, 4, 4)),
    ],
)
def test_conv_1d_3d_against_torch(module: nn.Module, shape: tuple[int, ...]) -> None:
    assert isinstance(module, (nn.Conv1d, nn.Conv3d))
    padding = "same" if module.padding == "same" else tuple(module.padding)
    op = ConvOp("c", shape, module.in_channels, module.out_channels, tuple(module.kernel_size),
                tuple(module.stride), padding, tuple(module.dilation), module.groups,
                module.bias is not None)  # type: ignore[arg-type]  # fmt: skip
    output = module(torch.zeros(shape))
    assert mf.output_shape(op) == tuple(output.shape)
    # independent MACs: every output element reads cin/groups × prod(kernel) weights
    per_output = module.in_channels // module.groups
    for k in module.kernel_size:
        per_output *= k
    assert mf.cost(op).macs == output.numel() * per_output
    assert mf.cost(op).params == sum(p.numel() for p in module.parameters())


def test_linear_norm_act_add() -> None:
    # linear on 3 rows: 3·128·10 = 3,840 MACs; params 128·10 + 10 = 1,290; bias adds 3·10 = 30
    assert mf.cost(LinearOp("fc", (3, 128), 128, 10, True)) == mf.Cost(1290, 3840, 30, 0)
    assert mf.output_shape(LinearOp("fc", (3, 7, 128), 128, 10)) == (3, 7, 10)
    # batchnorm: 2 params per channel, 2 ops per element: 2·(1·8·4·4) = 256
    assert mf.cost(NormOp("bn", (1, 8, 4, 4), 8)) == mf.Cost(params=16, other_ops=256)
    assert mf.cost(ActOp("act", (1, 8, 4, 4), "relu6")) == mf.Cost(other_ops=128)
    assert mf.cost(AddOp("add", (2, 8, 4, 4))) == mf.Cost(other_ops=256)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 3, 0)])
def test_pool_shapes_against_torch(kernel: int, stride: int, padding: int, ceil_mode: bool) -> None:
    module = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    shape = (1, 3, 11, 8)
    op = PoolOp("p", shape, "max", (kernel, kernel), (stride, stride), (padding, padding), (1, 1), ceil_mode)
    out = tuple(module(torch.zeros(shape)).shape)
    assert mf.output_shape(op) == out
    assert mf.cost(op).other_ops == out[1] * out[2] * out[3] * kernel * kernel


def test_adaptive_pool_and_flatten() -> None:
    op = AdaptivePoolOp("gap", (2, 64, 7, 7), "avg", (1, 1))
    # each input element read once: 2·64·49 = 6,272
    assert mf.output_shape(op) == (2, 64, 1, 1) and mf.cost(op).other_ops == 6272
    assert mf.output_shape(FlattenOp("f", (2, 64, 1, 1))) == (2, 64)
    assert mf.output_shape(FlattenOp("f", (2, 3, 4, 5), 2, 3)) == (2, 3, 20)


def test_uncounted_keeps_its_params() -> None:
    op = UncountedOp("ln", (1, 8), "LayerNorm", params=16, output=(1, 8))
    assert mf.cost(op) == mf.Cost(params=16) and mf.category(op) is Category.NOT_COUNTED


def test_categories() -> None:
    shape = (1, 8, 4, 4)
    assert mf.category(ConvOp("a", shape, 8, 8, (3, 3), groups=8)) is Category.DEPTHWISE_CONV
    assert mf.category(ConvOp("a", shape, 8, 16, (1, 1))) is Category.POINTWISE_CONV
    assert mf.category(ConvOp("a", shape, 8, 16, (3, 3), groups=2)) is Category.GROUPED_CONV
    assert mf.category(ConvOp("a", shape, 8, 16, (3, 3))) is Category.DENSE_CONV


def test_registering_twice_is_refused() -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        mf.register(ConvOp, lambda op: op.input_shape)(lambda op: mf.Cost())


def test_dense_equivalent_replaces_the_pair_and_drops_what_was_between() -> None:
    shape = (1, 32, 8, 8)
    depthwise = ConvOp("dw", shape, 32, 32, (3, 3), (2, 2), (1, 1), groups=32)
    ops = [
        depthwise,
        NormOp("dw.bn", (1, 32, 4, 4), 32),
        ActOp("dw.act", (1, 32, 4, 4)),
        ConvOp("pw", (1, 32, 4, 4), 32, 64, (1, 1)),
        NormOp("pw.bn", (1, 64, 4, 4), 64),
    ]
    replaced, pairs = dense_equivalent_of.dense_equivalent(ops)
    assert [op.name for op in replaced] == ["dw+pw", "pw.bn"]
    assert pairs[0].dropped == ("dw.bn", "dw.act")
    dense = replaced[0]
    # dense 3×3 stride 2, 32 → 64 on 8×8: output 4×4; MACs 64·16·32·9 = 294,912; params 64·32·9 = 18,432
    assert mf.output_shape(dense) == (1, 64, 4, 4)
    assert mf.cost(dense) == mf.Cost(params=18_432, macs=294_912)


def test_dense_equivalent_leaves_a_lone_depthwise_alone() -> None:
    ops = [
        ConvOp("dw", (1, 8, 4, 4), 8, 8, (3, 3), padding=(1, 1), groups=8),
        AddOp("add", (1, 8, 4, 4)),  # something other than norm/act in between breaks the pair
        ConvOp("pw", (1, 8, 4, 4), 8, 16, (1, 1)),
    ]
    replaced, pairs = dense_equivalent_of.dense_equivalent(ops)
    assert replaced == ops and pairs == []


@pytest.mark.parametrize("padding", [(1, 0), "same"])
@pytest.mark.parametrize("norm_act", [(Norm.BATCH, Act.RELU6), (Norm.NONE, Act.NONE), (Norm.BATCH, Act.NONE)])
def test_stage_ops_are_a_stages_conv_norm_and_act_ops(padding: Padding, norm_act: tuple[Norm, Act]) -> None:
    # the ops written out by hand, and the stage's output shape from the conv op's own formula
    norm, act = norm_act
    stage = ConvStage("s", 8, 8, (3, 2), (2, 1), padding, (2, 1), groups=8, bias=False, norm=norm, act=act)
    ops, shape = mf.stage_ops(stage, (2, 8, 9, 7), "p.")
    conv = ConvOp("p.s", (2, 8, 9, 7), 8, 8, (3, 2), (2, 1), padding, (2, 1), groups=8, bias=False)
    expected: list[mf.Op] = [conv]
    if norm is Norm.BATCH:
        expected.append(NormOp("p.s.norm", mf.output_shape(conv), 8))
    if act is not Act.NONE:
        expected.append(ActOp("p.s.act", mf.output_shape(conv), "relu6"))
    assert ops == expected and shape == mf.output_shape(conv)
    assert [(hash(op), repr(op)) for op in ops] == [(hash(op), repr(op)) for op in expected]


def test_fast_init_keeps_the_frozen_dataclass_contract() -> None:
    """fast_init changes how an instance is filled, nothing a caller sees: the signature, defaults, equality, hash
    and immutability are the dataclass's own (checked against an undecorated twin)."""
    import dataclasses
    import inspect

    from convcost.cost.formulas import ConvStage, fast_init

    @dataclasses.dataclass(frozen=True)
    class Plain:
        name: str
        shape: tuple[int, ...] = (1, 1)
        bias: bool = True

    @fast_init
    @dataclasses.dataclass(frozen=True)
    class Fast:
        name: str
        shape: tuple[int, ...] = (1, 1)
        bias: bool = True

    assert str(inspect.signature(Fast)) == str(inspect.signature(Plain))
    for args, kwargs in [(("a",), {}), (("a", (2, 3)), {"bias": False}), ((), {"name": "b", "shape": ()})]:
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
        assert fast == Fast(*args, **kwargs) and hash(fast) == hash(Fast(*args, **kwargs))
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.name = "c"  # type: ignore[misc]
    for bad_args, bad_kwargs in [((), {}), (("a", (1,), True, 4), {}), (("a",), {"colour": 1})]:
        with pytest.raises(TypeError):
            Plain(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            Fast(*bad_args, **bad_kwargs)
    # the hot classes: every field a parameter, in order, with the field's default
    stage_fields = dataclasses.fields(ConvStage)
    parameters = list(inspect.signature(ConvStage).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in stage_fields]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in stage_fields
    ]

    @dataclasses.dataclass(frozen=True)
    class Listed:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="needs dataclass's own __init__"):
        fast_init(Listed)
