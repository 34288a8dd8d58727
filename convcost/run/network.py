"""A network by formula: its operations, grouped into rows, become per-op, per-layer and total results. No torch.

Every network goes through here: a model file as planned (``convcost model FILE --formula-only`` stops at this
point, without importing torch), and a model file or an import path after its forward pass was traced, when
:mod:`convcost.run.model` adds the counters' figures and the checks to what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convcost.cost import dense
from convcost.cost import ops as formulas
from convcost.cost.conventions import Convention, extra_macs
from convcost.cost.ops import Op, Shape
from convcost.results.comparison import Environment
from convcost.results.model import (
    Call,
    DenseEquivalent,
    KindShare,
    ModelLayerResult,
    ModelResult,
    ModelTotals,
    OpResult,
    PairReplaced,
    op_result,
)
from convcost.spec.layers import ModelPlan


@dataclass
class Row:
    """A row of the per-layer table: its operations and, after a forward pass, the call of each."""

    name: str
    kind: str
    ops: list[Op]
    measured: list[Call | None]
    module_name: str | None  # for per-layer latency
    shapes: tuple[Shape, Shape | None] | None = None  # a module row's own input and output (else its ops')


def plan_rows(plan: ModelPlan, calls: list[Call | None] | None = None) -> list[Row]:
    """One row per layer of a model file; ``calls`` (one per planned op) when it ran."""
    found: list[Call | None] = calls if calls is not None else [None] * len(plan.ops)
    rows, position = [], 0
    for index, layer in enumerate(plan.layers):
        count = len(layer.ops)
        rows.append(Row(layer.name, layer.kind, layer.ops, found[position : position + count], str(index)))
        position += count
    return rows


def plan_settings(plan: ModelPlan) -> dict[str, Any]:
    return {"width_multiplier": plan.width_multiplier, "channel_divisor": plan.channel_divisor,
            "batch": plan.input_shape[0]}  # fmt: skip


def outputs(rows: list[Row], layers: list[ModelLayerResult]) -> tuple[Shape, Shape | None]:
    """The network's output by formula and as measured: its last real op's (the "(own parameters)" rows come
    after the calls and have no output)."""
    shape: Shape = ()
    measured: Shape | None = None
    for row, layer in zip(rows, layers, strict=True):
        for call, result in zip(row.measured, layer.ops, strict=True):
            if call is None or call.real:
                shape, measured = result.output_shape, result.output_shape_measured
    return shape, measured


def network(
    name: str,
    source: str,
    input_shape: Shape,
    rows: list[Row],
    environment: Environment,
    settings: dict[str, Any],
    measured: bool = True,
    convention: Convention | str = Convention.CONVCOST,
) -> ModelResult:
    """The result of a network by formula: no counter figures and no checks yet (the measured run adds them);
    every MACs figure under ``convention``."""
    convention = Convention(convention)
    layers = [ModelLayerResult(row.name, row.kind, [op_result(op, call, extra_macs(op, convention))
                                                    for op, call in zip(row.ops, row.measured, strict=True)],
                               module_shapes=row.shapes)
              for row in rows]  # fmt: skip
    ops = [op for layer in layers for op in layer.ops]
    params, macs = sum(op.params for op in ops), sum(op.macs for op in ops)
    total = ModelTotals(params, macs, sum(op.bias_adds for op in ops), sum(op.other_ops for op in ops))
    result = ModelResult(
        name=name,
        source=source,
        input_shape=input_shape,
        output_shape=outputs(rows, layers)[0],
        output_shape_measured=None,
        layers=layers,
        total=total,
        dense_equivalent=dense_equivalent([op for row in rows for op in row.ops], convention),
        by_kind=by_kind(ops, params, macs),
        environment=environment,
        settings=dict(settings),
        measured=measured,
        convention=convention.value,
    )
    if note := uncounted_note(ops):
        result.notes.append(note + ": their cost is not in the totals")
    return result


def uncounted_note(ops: list[OpResult]) -> str:
    not_counted = [op for op in ops if not op.counted]
    if not not_counted:
        return ""
    return (f"{len(not_counted)} operation(s) not counted: "
            + ", ".join(f"{op.name} ({op.detail}, {op.params:,} params)" for op in not_counted[:5])
            + (" …" if len(not_counted) > 5 else ""))  # fmt: skip


def estimate_plan(
    plan: ModelPlan, source: str, environment: Environment, convention: Convention | str = Convention.CONVCOST
) -> ModelResult:
    """A model file by formula alone (``--formula-only``): nothing built, run or checked (``measured=False``)."""
    return network(plan.name or source, source, plan.input_shape, plan_rows(plan), environment,
                   plan_settings(plan), measured=False, convention=convention)  # fmt: skip


def by_kind(ops: list[OpResult], params: int, macs: int) -> list[KindShare]:
    """Params and MACs by category, most MACs first."""
    groups: dict[str, list[OpResult]] = {}
    for op in ops:
        groups.setdefault(op.category, []).append(op)
    shares = []
    for kind, members in groups.items():
        own_params, own_macs = sum(op.params for op in members), sum(op.macs for op in members)
        share = (own_params / params if params else 0.0, own_macs / macs if macs else 0.0)
        shares.append(KindShare(kind, len(members), own_params, own_macs, *share))
    return sorted(shares, key=lambda share: (-share.macs, -share.params, share.kind))


def dense_equivalent(ops: list[Op], convention: Convention | str = Convention.CONVCOST) -> DenseEquivalent:
    """The network's cost with every depthwise → pointwise pair replaced by its dense conv (MACs under
    ``convention``)."""
    replaced, pairs = dense.dense_equivalent(ops)
    costs = [formulas.cost(op) for op in replaced]
    return DenseEquivalent(
        params=sum(cost.params for cost in costs),
        macs=sum(cost.macs for cost in costs) + sum(extra_macs(op, convention) for op in replaced),
        other_ops=sum(cost.other_ops for cost in costs),
        pairs=[PairReplaced(pair.depthwise, pair.pointwise, formulas.describe(pair.dense),
                            formulas.cost(pair.dense).params, formulas.cost(pair.dense).macs) for pair in pairs],
    )  # fmt: skip
