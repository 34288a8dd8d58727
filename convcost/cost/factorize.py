"""What a factorised conv costs: the stock convs that replace a dense one, by formula (no torch here).

Each replacement (:func:`separable`, :func:`spatial`, :func:`grouped`, and the reverse, :func:`merged`) is a list
of :class:`~convcost.cost.ops.ConvOp` counted by the one registry of :mod:`convcost.cost.ops`, so its params and
MACs follow the convention stated in :mod:`convcost.cost.formulas`. The first conv of a separable or spatial pair
has no bias, the second the original's; a merged conv has one when either had one (or a BatchNorm was folded).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from convcost.cost import ops
from convcost.cost.ops import ConvOp


@dataclass(frozen=True)
class Factorized:
    """A conv and what replaces it, with both costs by formula."""

    before: tuple[ConvOp, ...]
    after: tuple[ConvOp, ...]

    @property
    def params_before(self) -> int:
        return sum(ops.cost(op).params for op in self.before)

    @property
    def params_after(self) -> int:
        return sum(ops.cost(op).params for op in self.after)

    @property
    def macs_before(self) -> int:
        return sum(ops.cost(op).macs for op in self.before)

    @property
    def macs_after(self) -> int:
        return sum(ops.cost(op).macs for op in self.after)

    @property
    def saving(self) -> float | None:
        """MACs now ÷ MACs after (None when the replacement has no MACs)."""
        return self.macs_before / self.macs_after if self.macs_after else None


def factorizable(op: ConvOp) -> str | None:
    """Why ``op`` is not a candidate (None when it is): a 2-d dense conv with a kernel larger than 1×1."""
    if op.dims != 2:
        return f"a {op.dims}-d conv (only Conv2d is factorised)"
    if op.groups != 1:
        return "already depthwise" if op.is_depthwise else f"already grouped ({op.groups} groups)"
    if all(k == 1 for k in op.kernel):
        return "a 1×1 conv: nothing spatial to factorise"
    return None


def full_rank(op: ConvOp) -> tuple[int, int]:
    """(multiplier, rank) at which separable and spatial reproduce ``op`` exactly: min(K, R·S), min(C·R, K·S)."""
    (r, s) = op.kernel[0], op.kernel[1]
    return min(op.cout, r * s), min(op.cin * r, op.cout * s)


def separable(op: ConvOp, multiplier: int) -> Factorized:
    """Depthwise R×S with depth multiplier ``multiplier``, then 1×1 carrying the bias."""
    depthwise = replace(op, name=f"{op.name}.0", cout=multiplier * op.cin, groups=op.cin, bias=False,
                        stored_params=None)  # fmt: skip
    middle = ops.output_shape(depthwise)
    pointwise = ConvOp(name=f"{op.name}.1", input_shape=middle, cin=multiplier * op.cin, cout=op.cout,
                       kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), bias=op.bias)  # fmt: skip
    return Factorized((op,), (depthwise, pointwise))


def spatial(op: ConvOp, rank: int) -> Factorized:
    """R×1 to ``rank`` channels, then 1×S carrying the bias; stride, padding and dilation split per axis."""
    (r, s), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    same = op.padding == "same"  # stride 1 only: 'same' on each axis pads that axis as the R×S conv does
    first_pad = "same" if same else (op.padding[0], 0)
    second_pad = "same" if same else (0, op.padding[1])
    column = ConvOp(name=f"{op.name}.0", input_shape=op.input_shape, cin=op.cin, cout=rank, kernel=(r, 1),
                    stride=(sh, 1), padding=first_pad, dilation=(dh, 1), bias=False)  # type: ignore[arg-type]  # fmt: skip
    row = ConvOp(name=f"{op.name}.1", input_shape=ops.output_shape(column), cin=rank, cout=op.cout, kernel=(1, s),
                 stride=(1, sw), padding=second_pad, dilation=(1, dw), bias=op.bias)  # type: ignore[arg-type]  # fmt: skip
    return Factorized((op,), (column, row))


def grouped(op: ConvOp, groups: int) -> Factorized:
    """The same conv with ``groups`` groups (cin and cout must divide: see :func:`groups_fit`)."""
    return Factorized((op,), (replace(op, groups=groups, stored_params=None),))


def groups_fit(op: ConvOp, groups: int) -> str | None:
    """Why ``groups`` cannot split ``op`` (None when it can)."""
    if op.cin % groups or op.cout % groups:
        return f"{groups} groups do not divide cin {op.cin} and cout {op.cout}"
    return None


def merged(depthwise: ConvOp, pointwise: ConvOp, bias: bool) -> Factorized:
    """A depthwise conv and the 1×1 conv after it as one dense conv (``bias``: the merged conv has one)."""
    dense = replace(depthwise, name=depthwise.name, cout=pointwise.cout, groups=1, bias=bias, stored_params=None)
    return Factorized((depthwise, pointwise), (dense,))
