"""Result dataclasses of ``convcost model``: per-op, per-layer, totals, by kind, dense equivalent. No rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convcost.cost import ops
from convcost.cost.ops import Op, OpKind, UncountedOp
from convcost.cost.roofline import Roofline, record
from convcost.results.comparison import SCHEMA_VERSION, Check, Environment, LatencyStats

Shape = tuple[int, ...]


@dataclass
class OpResult:
    """One operation: formula figures with what the forward pass measured beside them."""

    name: str
    kind: str  # OpKind value
    category: str  # the by-kind breakdown category
    detail: str  # e.g. "3×3 s2 32→64 g32"
    input_shape: Shape
    output_shape: Shape  # formula (measured, for an op with no formula)
    output_shape_measured: Shape | None
    params: int
    params_measured: int | None
    macs: int
    bias_adds: int
    other_ops: int
    counted: bool = True
    # each counter's figure for the aten ops this op ran, in the traced pass (None: not run, or not traced)
    macs_flop_counter: int | None = None  # FlopCounterMode's FLOPs ÷ 2
    ptflops_raw: int | None = None  # ptflops' own figure (with the bias adds it folds in)
    blind_to: tuple[str, ...] = ()  # counters that ran part of this op without a formula for it (fused attention)
    other_reads: int = 0  # elements read besides its input and params (a matmul's right operand): for bytes
    extra_macs: int = 0  # what the result's MAC convention adds to ours (in ``macs``; see convcost.cost.conventions)
    weight_shape: Shape | None = None  # the weight it applies, by formula (None: it has none)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def ptflops_folded(self) -> int:
        """The bias adds ptflops folds into its figure: all of a conv's (one aten op with its bias); of a linear,
        a matmul or an op that runs several aten ops (attention's projections, an LSTM's steps) those whose aten op
        carries the bias (addmm), not those torch adds apart, so it depends on torch's path: at most ours."""
        if not self.ptflops_raw:
            return 0
        if self.kind in PARTLY_FOLDED:
            return min(self.bias_adds, max(0, self.ptflops_raw - self.own_macs))
        return self.bias_adds

    @property
    def own_macs(self) -> int:
        """The MACs by our convention (what the counters are checked against)."""
        return self.macs - self.extra_macs

    @property
    def macs_ptflops(self) -> int | None:
        """ptflops' figure less the bias adds it folds in (what is compared with our MACs), where it saw any."""
        if self.ptflops_raw is None:
            return None
        return self.ptflops_raw - self.ptflops_folded if self.ptflops_raw else 0

    @property
    def seen_by(self) -> list[str]:
        """The counters that counted MACs for this op and saw all of it."""
        figures = {FLOP_COUNTER: self.macs_flop_counter, PTFLOPS: self.ptflops_raw}
        return [counter for counter, figure in figures.items() if figure and counter not in self.blind_to]

    @property
    def not_seen_by(self) -> list[str]:
        """The counters that ran this op and could not count all of it, where our formula has MACs: they counted
        nothing (SDPA on the CPU), or ran an aten op they do not map (``blind_to``)."""
        if not self.own_macs or self.macs_flop_counter is None:
            return []
        return [counter for counter in (FLOP_COUNTER, PTFLOPS) if counter not in self.seen_by]

    def to_dict(self) -> dict[str, Any]:
        return record(self, _OP_KEYS)


_OP_KEYS = (
    "name kind category detail input_shape output_shape output_shape_measured params params_measured macs flops "
    "bias_adds other_ops counted extra_macs macs_flop_counter macs_ptflops ptflops_raw seen_by not_seen_by"
)


FLOP_COUNTER, PTFLOPS = "FlopCounterMode", "ptflops"
# the op kinds (OpKind values) whose bias adds ptflops folds in part, by torch's path: a linear on a 2-d or contiguous
# input is one addmm (bias folded), on a non-contiguous one a matmul and a separate add (not folded)
PARTLY_FOLDED = {str(kind) for kind in (OpKind.ATTENTION, OpKind.RECURRENT, OpKind.LINEAR, OpKind.MATMUL)}


@dataclass
class Call:
    """One operation the forward pass performed, with what it measured."""

    op: Op
    output_shape: Shape | None
    params_measured: int | None
    module_name: str | None  # the module called (None for a functional op)
    owner: str  # that module, or the container that called the functional op ("" for the model)
    reused: bool = False  # a module called before: its weights are already counted
    real: bool = True  # False for the "(own parameters)" rows that trace() adds after the calls
    weight_shape: Shape | None = None  # the weight it applied, where its op has one (a conv, a linear)
    # what each counter's own formulas counted for the aten ops this call ran (convcost.run.dispatch)
    flop_counter_flops: int | None = None
    ptflops_raw: int | None = None
    blind_to: tuple[str, ...] = ()  # the counters that ran aten ops with MACs they do not map inside this call
    shared_params: int = 0  # its parameters an earlier op counted (a tied weight), not counted again


def op_result(op: Op, call: Call | None, extra: int = 0) -> OpResult:
    """An op's figures by formula, with what its call measured beside them (None where it did not run); ``extra``:
    the MACs the result's convention adds to ours (:func:`convcost.cost.conventions.extra_macs`)."""
    cost = ops.cost(op)
    counted = not isinstance(op, UncountedOp)
    return OpResult(
        name=op.name,
        kind=str(op.kind),
        category=str(ops.category(op)),
        detail=ops.describe(op),
        input_shape=op.input_shape,
        output_shape=ops.output_shape(op) if counted else (call.output_shape or () if call else ()),
        output_shape_measured=call.output_shape if call is not None else None,
        params=0 if call is not None and call.reused else max(cost.params - (call.shared_params if call else 0), 0),
        params_measured=call.params_measured if call is not None else None,
        macs=cost.macs + extra,
        bias_adds=cost.bias_adds,
        other_ops=cost.other_ops,
        counted=counted,
        macs_flop_counter=None if call is None or call.flop_counter_flops is None else call.flop_counter_flops // 2,
        ptflops_raw=None if call is None else call.ptflops_raw,
        blind_to=() if call is None else call.blind_to,
        other_reads=op.other_reads(),
        extra_macs=extra,
        weight_shape=op.weight_shape(),
    )


@dataclass
class ModelLayerResult:
    """A row of the per-layer table: a layer of a model file, or a module of an imported model."""

    name: str
    kind: str
    ops: list[OpResult]
    latency: LatencyStats | None = None
    roofline: Roofline | None = None  # with latency: bytes, achieved rates; bound and verdict when calibrated
    # a module's row (--depth): the module's own input and output as its first call saw them
    module_shapes: tuple[Shape, Shape | None] | None = None

    @property
    def input_shape(self) -> Shape:
        if self.module_shapes is not None and self.module_shapes[0]:
            return self.module_shapes[0]
        return self.ops[0].input_shape

    @property
    def output_shape(self) -> Shape:
        if self.module_shapes is not None and self.module_shapes[1]:
            return self.module_shapes[1]
        return self.ops[-1].output_shape

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def bias_adds(self) -> int:
        return sum(op.bias_adds for op in self.ops)

    @property
    def other_ops(self) -> int:
        return sum(op.other_ops for op in self.ops)

    @property
    def counted(self) -> bool:
        return all(op.counted for op in self.ops)

    def min_bytes(self, itemsize: int) -> int:
        """Bytes moved at minimum, by :func:`convcost.cost.ops.moved_elements` (views move nothing)."""
        return itemsize * sum(
            ops.moved_elements(op.kind, op.input_shape, op.output_shape, op.params, op.other_reads) for op in self.ops
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **record(self, "name kind input_shape output_shape params macs"),
            "flops": 2 * self.macs,
            **record(self, "bias_adds other_ops counted latency roofline ops"),
        }


@dataclass
class ModelTotals:
    """The whole model by formula, with the counters' figures from the real run."""

    params: int
    macs: int
    bias_adds: int
    other_ops: int
    params_measured: int | None = None
    macs_flop_counter: int | None = None
    macs_ptflops: int | None = None  # ptflops with its bias adds removed
    ptflops_raw: int | None = None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return record(self, _TOTAL_KEYS)


_TOTAL_KEYS = "params macs flops bias_adds other_ops params_measured macs_flop_counter macs_ptflops ptflops_raw"


@dataclass(frozen=True)
class KindShare:
    """One category of the breakdown by layer kind."""

    kind: str
    ops: int
    params: int
    macs: int
    params_share: float  # fraction of the model's params, 0–1
    macs_share: float

    def to_dict(self) -> dict[str, Any]:
        return record(self)


@dataclass(frozen=True)
class PairReplaced:
    depthwise: str
    pointwise: str
    dense: str  # e.g. "3×3 32→64"
    params: int  # of the dense conv
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return record(self)


@dataclass
class DenseEquivalent:
    """The same network with every depthwise → pointwise pair replaced by the dense conv it factorises."""

    params: int
    macs: int
    other_ops: int
    pairs: list[PairReplaced]

    def to_dict(self) -> dict[str, Any]:
        extra = {"flops": 2 * self.macs, "other_ops": self.other_ops, "pairs_replaced": len(self.pairs)}
        return {**record(self, "params macs"), **extra, **record(self, "pairs")}


@dataclass
class ModelResult:
    """What ``convcost model`` computes for one model."""

    name: str
    source: str  # the model file, or package.module:factory
    input_shape: Shape
    output_shape: Shape
    output_shape_measured: Shape | None
    layers: list[ModelLayerResult]
    total: ModelTotals
    dense_equivalent: DenseEquivalent
    by_kind: list[KindShare]
    environment: Environment
    checks: list[Check] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # width multiplier, divisor, ...
    latency: LatencyStats | None = None  # end to end
    notes: list[str] = field(default_factory=list)
    measured: bool = True  # False: by formula only, nothing built or run (--formula-only)
    convention: str = "convcost"  # the MAC convention of every MACs figure (convcost.cost.conventions)
    # every tensor of an output that is not one tensor (a tuple, a dict, a dataclass): where it is, its shape
    outputs: list[tuple[str, Shape]] = field(default_factory=list)

    @property
    def ops(self) -> list[OpResult]:
        return [op for layer in self.layers for op in layer.ops]

    @property
    def not_counted(self) -> list[OpResult]:
        return [op for op in self.ops if not op.counted]

    @property
    def failures(self) -> list[str]:
        return [check.message() for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        """Every check passed (the counters agree where they can see); not that every op was counted."""
        return not self.failures

    @property
    def complete(self) -> bool:
        """Every op was counted by our formula: no "not counted" op."""
        return not self.not_counted

    def not_seen(self, counter: str) -> list[OpResult]:
        """The ops with MACs by our formula that ``counter`` ran and counted nothing for."""
        return [op for op in self.ops if counter in op.not_seen_by]

    def _outputs(self) -> list[dict[str, Any]]:
        return [{"path": path, "shape": list(shape)} for path, shape in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            **record(self, "name source"),
            **({} if self.measured else {"measured": False}),  # absent from measured runs, as it always was
            **record(self, "settings convention environment input_shape output_shape output_shape_measured"),
            **({"outputs": self._outputs()} if self.outputs else {}),
            **record(self, "ok complete failures"),
            "total": {**self.total.to_dict(), "ops_not_counted": len(self.not_counted)},
            **record(self, "dense_equivalent by_kind latency"),
            "not_counted": [{"name": op.name, "type": op.detail, "params": op.params} for op in self.not_counted],
            **record(self, "notes checks layers"),
        }
