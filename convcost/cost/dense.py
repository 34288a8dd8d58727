"""The dense equivalent of a network: each depthwise → pointwise pair replaced by the dense conv it factorises.
Pure Python over the operations of :mod:`convcost.cost.ops`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from convcost.cost.ops import ActOp, ConvOp, IdentityOp, NormOp, Op

_BETWEEN = (NormOp, ActOp, IdentityOp)


@dataclass(frozen=True)
class Replacement:
    """A depthwise conv and the pointwise conv after it, replaced by the dense conv they factorise."""

    depthwise: str
    pointwise: str
    dense: ConvOp
    dropped: tuple[str, ...]  # the norm/activation ops between the two, gone with the depthwise output


def dense_equivalent(ops: list[Op]) -> tuple[list[Op], list[Replacement]]:
    """The same ops with each depthwise → pointwise pair replaced by one dense conv cin → cout: the depthwise conv's
    kernel, stride, padding and dilation, the pointwise conv's bias; the norm and activation ops between the pair go
    (they acted on the depthwise output, which no longer exists); everything after the pointwise conv stays."""
    result: list[Op] = []
    replacements: list[Replacement] = []
    index = 0
    while index < len(ops):
        op = ops[index]
        pair = _pointwise_after(ops, index, op) if isinstance(op, ConvOp) and op.is_depthwise else None
        if pair is None:
            result.append(op)
            index += 1
            continue
        assert isinstance(op, ConvOp)
        after, pointwise = pair
        name = f"{op.name}+{pointwise.name}"
        dense = replace(
            op, name=name, cout=pointwise.cout, groups=1, bias=pointwise.bias, shared=False, stored_params=None
        )
        result.append(dense)
        dropped = tuple(item.name for item in ops[index + 1 : after])
        replacements.append(Replacement(op.name, pointwise.name, dense, dropped))
        index = after + 1
    return result, replacements


def _pointwise_after(ops: list[Op], index: int, depthwise: ConvOp) -> tuple[int, ConvOp] | None:
    for after in range(index + 1, len(ops)):
        candidate = ops[after]
        if isinstance(candidate, _BETWEEN):
            continue
        if not isinstance(candidate, ConvOp) or not candidate.is_pointwise:
            return None
        return (after, candidate) if (candidate.dims, candidate.cin) == (depthwise.dims, depthwise.cout) else None
    return None
