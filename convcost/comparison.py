"""The compare pipeline: spec → stages → modules → measurements → a Comparison (never prints)."""

from __future__ import annotations

import torch
from torch import nn

from convcost import build, formulas, kinds, latency, roofline
from convcost.formulas import ConvStage
from convcost.latency import LatencySettings
from convcost.measure import check_device, check_memory, environment, formula_environment, formula_stage, measure_stage
from convcost.results import Check, Comparison, Environment, LayerResult, Ratios
from convcost.roofline import Calibration
from convcost.spec import CompareSpec, LayerKind

# A speedup below this fraction of the MAC ratio is "far short" of it, and we say so.
FAR_SHORT = 0.5


def measure_layer(kind: str, stages: list[ConvStage], spec: CompareSpec) -> tuple[LayerResult, nn.Module, torch.Tensor]:
    """Build and run one layer stage by stage; returns its result, its module and its input."""
    modules = [build.prepare(build.stage_module(stage), spec.dtype, spec.device) for stage in stages]
    first_input = build.input_tensor(spec.cin, spec.size, spec.batch, spec.dtype, spec.device)
    tensor = first_input
    results, checks = [], []
    for stage, module in zip(stages, modules, strict=True):
        subject = kind if len(stages) == 1 else f"{kind}.{stage.name}"
        result, stage_checks, tensor = measure_stage(stage, module, tensor, subject)
        results.append(result)
        checks.extend(stage_checks)
        # later stages must see the measured output, so a wrong stage cannot hide behind a right formula
    layer = LayerResult(
        kind=kind,
        stages=results,
        input_shape=tuple(first_input.shape),
        output_shape=results[-1].output_shape,
        output_shape_measured=tuple(tensor.shape),
        checks=checks,
    )
    module = nn.Sequential(*modules) if len(modules) > 1 else modules[0]
    return layer, module, first_input


def compare(
    spec: CompareSpec, latency_settings: LatencySettings | None = None, calibration: Calibration | None = None
) -> Comparison:
    """Compare the dense conv of ``spec`` with each alternative in ``spec.vs``; latency when settings are given.

    Every stage and layer gets a roofline (bytes, intensity, achieved rates); with a ``calibration`` of this
    machine (see :mod:`convcost.calibrate`) also its bound, the fraction achieved and a verdict.
    """
    check_device(spec.device)
    planned = kinds.plan(spec)
    check_memory(list(planned.values()), spec.size, spec.batch, spec.dtype.itemsize)
    if latency_settings is not None and latency_settings.tune_allocator:
        latency.tune_allocator()
    allocator = latency.allocator_state()  # mallopt is process-wide: an earlier call may have tuned it
    measured: dict[str, tuple[LayerResult, nn.Module, torch.Tensor]] = {}
    for planned_kind, stages in planned.items():
        measured[str(planned_kind)] = measure_layer(str(planned_kind), stages, spec)
    if latency_settings is not None:
        cases = {kind: (module, tensor) for kind, (_, module, tensor) in measured.items()}
        if latency_settings.stages:
            for kind, (layer, module, tensor) in measured.items():
                cases.update(latency.stage_cases(kind, [stage.name for stage in layer.stages], module, tensor))
        stats = latency.measure(cases, latency_settings)
        for kind, (layer, _, _) in measured.items():
            layer.latency = stats[kind]
            for stage in layer.stages:
                stage.latency = stats.get(f"{kind}.{stage.name}")
    threads = latency_settings.threads if latency_settings else torch.get_num_threads()
    return _assemble(
        spec,
        {kind: layer for kind, (layer, _, _) in measured.items()},
        environment(
            spec.device,
            threads,
            str(spec.dtype),
            bool(latency_settings and latency_settings.channels_last),
            allocator,
        ),
        calibration,
        measured=True,
    )


def estimate(spec: CompareSpec) -> Comparison:
    """The same comparison by formula alone: nothing built, nothing run, nothing checked (``measured=False``).

    For large batches where speed matters more than the second opinion; reports mark it as not measured.
    Shape mismatches between alternatives are still found, by formula.
    """
    planned = kinds.plan(spec)
    layers: dict[str, LayerResult] = {}
    for planned_kind, stages in planned.items():
        shape: tuple[int, int, int, int] = (spec.batch, spec.cin, *spec.size)
        results = []
        for stage in stages:
            result = formula_stage(stage, shape, spec.dtype.itemsize)
            results.append(result)
            batch, channels, height, width = result.output_shape
            shape = (batch, channels, height, width)
        layers[str(planned_kind)] = LayerResult(
            kind=str(planned_kind),
            stages=results,
            input_shape=(spec.batch, spec.cin, *spec.size),
            output_shape=results[-1].output_shape,
            output_shape_measured=None,
        )
    return _assemble(spec, layers, formula_environment(spec), None, measured=False)


def _assemble(
    spec: CompareSpec,
    layers: dict[str, LayerResult],
    env: Environment,
    calibration: Calibration | None,
    measured: bool,
) -> Comparison:
    for layer in layers.values():
        roofline.annotate(layer, calibration)
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
    if dense.latency is not None and layer.latency is not None and layer.latency.median_ms > 0:
        speedup = dense.latency.median_ms / layer.latency.median_ms
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
    limited = roofline.limited_stages(layer)
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


def failed_checks(comparison: Comparison) -> list[Check]:
    return [check for layer in comparison.layers for check in layer.checks if not check.ok]
