"""Figures by formula alone, and the assembly of a Comparison from layer results. No torch here.

``estimate`` is what ``--formula-only`` runs: nothing is built or run, so it never imports torch and costs well
under a millisecond per layer; ``convcost.run.comparison.compare`` measures the same figures and shares the assembly.
"""

from __future__ import annotations

from typing import Any

from convcost.cost import formulas, ops, roofline
from convcost.cost.formulas import ConvStage
from convcost.cost.roofline import Calibration
from convcost.results import roofline as layer_roofline
from convcost.results.comparison import Comparison, Environment, LayerResult, Ratios, Shape, StageResult
from convcost.results.model import Call, OpResult, op_result
from convcost.run.context import RunContext
from convcost.spec import kinds
from convcost.spec.compare import CompareSpec, LayerKind

# A speedup below this fraction of the MAC ratio is "far short" of it, and we say so.
FAR_SHORT = 0.5


def formula_stage(
    stage: ConvStage, input_shape: Shape, itemsize: int, calls: list[Call | None] | None = None
) -> tuple[StageResult, list[OpResult]]:
    """A stage as the ops it runs (:func:`convcost.cost.ops.stage_ops`), each through the one formula→result step
    of every network (:func:`convcost.results.model.op_result`) with its ``calls`` beside it when it ran, and their
    sum; the stage's measured fields are None (the measured run fills them in)."""
    planned = ops.stage_ops(stage, input_shape)[0]
    results = [op_result(op, call) for op, call in zip(planned, calls or [None] * len(planned), strict=True)]
    weight_shape = formulas.weight_shape(stage)
    moved = sum(
        ops.moved_elements(op.kind, op.input_shape, op.output_shape, op.params, op.other_reads) for op in results
    )
    copied = ("name", "cin", "cout", "kernel", "stride", "padding", "dilation", "groups", "bias", "shared")
    unmeasured = ("output_shape_measured", "params_measured", "macs_flop_counter", "macs_ptflops", "ptflops_raw")
    figures: dict[str, Any] = {
        **{name: getattr(stage, name) for name in copied},
        **dict.fromkeys(unmeasured),
        **{name: sum(getattr(op, name) for op in results) for name in ("params", "macs", "bias_adds", "other_ops")},
    }
    stage_result = StageResult(
        **figures,
        norm=str(stage.norm),
        act=str(stage.act),
        notes=list(stage.notes),
        input_shape=input_shape,
        weight_shape=weight_shape,
        stored_weight_shape=(stage.multiplier, *weight_shape[1:]) if stage.shared else weight_shape,
        output_shape=results[-1].output_shape,
        min_bytes=moved * itemsize,
        channel_map={
            "groups": stage.groups,
            "out_per_group": stage.cout // stage.groups,
            "in_per_group": stage.cin // stage.groups,
        },
    )
    return stage_result, results


def estimate(spec: CompareSpec, threads: int = 1) -> Comparison:
    """The same comparison by formula alone: nothing built, nothing run, nothing checked (``measured=False``).

    For large batches where speed matters more than the second opinion; reports mark it as not measured.
    Shape mismatches between alternatives are still found, by formula.
    """
    layers: dict[str, LayerResult] = {}
    for planned_kind, stages in kinds.plan(spec).items():
        shape: Shape = (spec.batch, spec.cin, *spec.size)
        results = []
        for stage in stages:
            result = formula_stage(stage, shape, spec.dtype.itemsize)[0]
            results.append(result)
            shape = result.output_shape
        layers[str(planned_kind)] = LayerResult(
            kind=str(planned_kind),
            stages=results,
            input_shape=(spec.batch, spec.cin, *spec.size),
            output_shape=results[-1].output_shape,
            output_shape_measured=None,
        )
    environment = RunContext(spec.device, spec.dtype, threads).environment(measured=False)
    return assemble(spec, layers, environment, None, measured=False)


def assemble(
    spec: CompareSpec,
    layers: dict[str, LayerResult],
    env: Environment,
    calibration: Calibration | None,
    measured: bool,
) -> Comparison:
    for layer in layers.values():
        layer_roofline.annotate(layer, calibration)
    dense = layers[str(LayerKind.DENSE)]
    alternatives = [layer for kind, layer in layers.items() if kind != LayerKind.DENSE]
    ratios = [_ratios(dense, layer, spec) for layer in alternatives]
    comparison = Comparison(
        name=spec.name,
        spec=spec.model_dump(mode="json", exclude_none=True),
        environment=env,
        dense=dense,
        alternatives=alternatives,
        ratios=ratios,
        notes=[note for ratio, layer in zip(ratios, alternatives, strict=True) if (note := _note(ratio, layer))],
    )
    comparison.environment.calibration = calibration
    comparison.measured = measured
    return comparison


def _ratios(dense: LayerResult, layer: LayerResult, spec: CompareSpec) -> Ratios:
    speedup = None
    if dense.latency is not None and layer.latency is not None and layer.latency.shown_ms > 0:
        speedup = dense.latency.shown_ms / layer.latency.shown_ms
    textbook, bound = None, None
    if layer.kind == LayerKind.SEPARABLE:
        textbook = formulas.textbook_separable_ratio(spec.cout, spec.kernel, spec.multiplier)
        bound = formulas.separable_ratio_bound(spec.kernel, spec.multiplier)
    return Ratios(
        vs=layer.kind,
        params=dense.params / layer.params if layer.params else float("inf"),
        macs=dense.macs / layer.macs if layer.macs else float("inf"),
        latency=speedup,
        shape_match=dense.output_shape == layer.output_shape
        and dense.output_shape_measured == layer.output_shape_measured,
        textbook=textbook,
        bound=bound,
        multiplier=spec.multiplier,
        roofline=roofline.predicted_speedup(dense.roofline, layer.roofline),
    )


def _note(ratio: Ratios, layer: LayerResult) -> str | None:
    """One plain sentence when the measured speedup falls far short of the MAC ratio."""
    if ratio.latency is None or ratio.macs <= 1 or ratio.latency >= FAR_SHORT * ratio.macs:
        return None
    pace = f"only {ratio.latency:.2f}× faster" if ratio.latency >= 1 else f"{1 / ratio.latency:.2f}× slower"
    why = "fewer MACs do not mean proportionally less time"
    limited = layer_roofline.limited_stages(layer)
    if limited:
        why = limited
        if ratio.roofline is not None:
            why += f"; this machine's roofline predicts {ratio.roofline:.2f}×"
    elif any(stage.groups > 1 and stage.groups == stage.cin for stage in layer.stages):
        why = (
            "its depthwise stage does little arithmetic per byte it moves, which usually leaves it limited by "
            "memory bandwidth and per-call overhead rather than MACs (convcost calibrate, then --roofline, tells)"
        )
    return f"{layer.kind} has {ratio.macs:.2f}× fewer MACs than dense but runs {pace}: {why}."
