"""MAC conventions: which operations' work a MAC total includes. Pure integers, no torch.

* **convcost** (the default): MACs are the multiply-accumulates of conv and linear weights (see
  :mod:`convcost.cost.ops`); norms, activations, pools and adds are "other ops", bias adds apart.
* **fvcore** (also timm's, which reports fvcore's figure): what fvcore's ``FlopCountAnalysis`` counts with the
  handles of ``fvcore/nn/flop_count.py`` ("one fused multiply-add as one flop"): conv and linear as ours, plus
  the norms, average pools and upsampling it has handles for; the ops it has no handle for (fused attention,
  recurrent nets, some matmuls) are taken off. Each ``_fvcore_*`` function below names its fvcore handle.

Each convention is a table keyed by operation kind, giving the MACs the convention adds to ours (or takes off)
for one op of that kind; a kind the table does not name adds nothing (a new kind is one entry).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from convcost.cost import ops
from convcost.cost.ops import AdaptivePoolOp, NormOp, Op, OpKind, elements
from convcost.cost.ops_nn import AttentionOp, FeatureNormOp, MatmulOp, UpsampleOp, attention_core


class Convention(StrEnum):
    """Which MAC convention the totals use."""

    CONVCOST = "convcost"
    FVCORE = "fvcore"


Extra = Callable[[Op], int]


def _fvcore_batchnorm(op: Op) -> int:
    # fvcore's batchnorm_flop_jit, eval: input elements × (2 if affine else 1)
    affine = op.affine if isinstance(op, NormOp) else True
    return elements(op.input_shape) * (2 if affine else 1)


def _fvcore_adaptive_pool(op: Op) -> int:
    # fvcore handles aten::adaptive_avg_pool2d only: one per input element; max and 1d/3d pools count nothing
    if isinstance(op, AdaptivePoolOp) and op.mode == "avg" and len(op.output_size) == 2:
        return elements(op.input_shape)
    return 0


def _fvcore_feature_norm(op: Op) -> int:
    # norm_flop_counter: input elements × (5 if it has a weight else 4); fvcore has no handle for aten::rms_norm
    if not isinstance(op, FeatureNormOp) or op.function == "rmsnorm":
        return 0
    return elements(op.input_shape) * (5 if op.weight else 4)


def _fvcore_upsample(op: Op) -> int:
    # elementwise_flop_counter(0, 1) for upsample_nearest2d, (0, 4) for upsample_bilinear2d; no other mode
    if not isinstance(op, UpsampleOp) or len(op.size) != 2:
        return 0
    per_output = {"nearest": 1, "bilinear": 4}.get(op.mode, 0)
    return per_output * elements(ops.output_shape(op))


def _fvcore_attention(op: Op) -> int:
    # no handle for scaled_dot_product_attention: its MACs are not in fvcore's total (a MultiheadAttention asked
    # for its weights runs bmm instead, which fvcore counts)
    return 0 if not isinstance(op, AttentionOp) or op.need_weights else -attention_core(op)


def _fvcore_matmul(op: Op) -> int:
    # no handle for aten::mv, addmv, baddbmm, addbmm; an einsum is numpy's optimised count ÷ 2, which for a
    # product with no index summed (an outer product) is half of ours (fvcore's einsum_flop_jit)
    if not isinstance(op, MatmulOp):
        return 0
    macs = ops.cost(op).macs
    if op.function in ("mv", "addmv", "baddbmm", "addbmm"):
        return -macs
    if op.equation:
        inputs, output = op.equation.split("->")
        if not set(inputs.replace(",", "")) - set(output):
            return macs // 2 - macs
    return 0


def _fvcore_recurrent(op: Op) -> int:
    # no handle for aten::lstm, gru or rnn: the whole op is missing from fvcore's total
    return -ops.cost(op).macs


EXTRA_MACS: dict[Convention, dict[OpKind, Extra]] = {
    Convention.CONVCOST: {},
    Convention.FVCORE: {
        OpKind.NORM: _fvcore_batchnorm,
        OpKind.ADAPTIVE_POOL: _fvcore_adaptive_pool,
        OpKind.FEATURE_NORM: _fvcore_feature_norm,
        OpKind.UPSAMPLE: _fvcore_upsample,
        OpKind.ATTENTION: _fvcore_attention,
        OpKind.RECURRENT: _fvcore_recurrent,
        OpKind.MATMUL: _fvcore_matmul,
    },
}


def extra_macs(op: Op, convention: Convention | str = Convention.CONVCOST) -> int:
    """The MACs ``convention`` adds to ours for ``op``, negative where it leaves out what we count (0 for the
    default convention and for unlisted kinds)."""
    extra = EXTRA_MACS[Convention(convention)].get(op.kind)
    return 0 if extra is None else extra(op)
