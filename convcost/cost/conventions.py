"""MAC conventions: which operations' work a MAC total includes. Pure integers, no torch.

* **convcost** (the default): MACs are the multiply-accumulates of conv and linear weights (see
  :mod:`convcost.cost.ops`); norms, activations, pools and adds are "other ops", bias adds apart.
* **fvcore** (also timm's, which reports fvcore's figure): fvcore's ``FlopCountAnalysis`` counts "one fused
  multiply-add as one flop" with the handles of ``fvcore/nn/flop_count.py``: conv and linear as ours, and also
  inference batchnorm at input elements × 2 when affine (× 1 without) and ``adaptive_avg_pool2d`` at one per
  input element. It ignores activations, adds, max and window pools, flatten and views. (fvcore also counts
  group/layer norm at input elements × 5 when affine, nearest upsampling at one per output element and bilinear
  at four: their entries belong beside those kinds' formulas, which this table does not have yet.)

Each convention is a table keyed by operation kind, giving the MACs the convention adds to ours for one op of
that kind; a kind the table does not name adds nothing (a new kind is one entry).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from convcost.cost.ops import AdaptivePoolOp, NormOp, Op, OpKind, elements


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


EXTRA_MACS: dict[Convention, dict[OpKind, Extra]] = {
    Convention.CONVCOST: {},
    Convention.FVCORE: {
        OpKind.NORM: _fvcore_batchnorm,
        OpKind.ADAPTIVE_POOL: _fvcore_adaptive_pool,
    },
}


def extra_macs(op: Op, convention: Convention | str = Convention.CONVCOST) -> int:
    """The MACs ``convention`` adds to ours for ``op`` (0 for the default convention and for unlisted kinds)."""
    extra = EXTRA_MACS[Convention(convention)].get(op.kind)
    return 0 if extra is None else extra(op)
