"""The compare pipeline: spec → stages → modules → measurements → a Comparison (never prints)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch import nn

from convcost.cost.formulas import ConvStage
from convcost.cost.ops import stage_ops
from convcost.cost.roofline import Calibration
from convcost.cost.stats import Estimate, within
from convcost.results.comparison import Check, Comparison, LayerResult, Ratios, StageResult
from convcost.run import build, latency
from convcost.run.context import RunContext, threads_for
from convcost.run.counting import count_and_check
from convcost.run.estimate import assemble, formula_stage
from convcost.run.latency import LatencySettings
from convcost.run.measure import check_device
from convcost.run.trace import matched, trace
from convcost.spec import kinds
from convcost.spec.compare import CompareSpec, LayerKind


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


def measure_stage(
    stage: ConvStage, module: nn.Module, tensor: torch.Tensor, subject: str
) -> tuple[StageResult, list[Check], torch.Tensor]:
    """Trace and count one stage on ``tensor`` as a network of its ops; returns its result, its checks and its
    output (the next stage's input)."""
    shape, traced = tuple(tensor.shape), trace(module, tensor)
    calls, stage_checks = matched(stage_ops(stage, shape)[0], traced, subject, "stage")
    result, op_results = formula_stage(stage, shape, tensor.element_size(), calls)
    result.output_shape_measured = traced.output_shape
    result.params_measured = sum(parameter.numel() for parameter in module.parameters())
    figures = [("output shape", result.output_shape, result.output_shape_measured),
               ("weight shape", result.weight_shape, traced.calls[0].weight_shape),
               ("params", result.params, result.params_measured)]  # fmt: skip
    counted, result.macs_flop_counter, result.ptflops_raw = count_and_check(
        traced, subject, list(zip(calls, op_results, strict=True)), figures
    )
    stage_checks += counted
    result.macs_ptflops = result.ptflops_raw - result.bias_adds
    return result, stage_checks, traced.output


def compare(
    spec: CompareSpec,
    latency_settings: LatencySettings | None = None,
    calibration: Calibration | None = None,
    threads: int | None = None,
) -> Comparison:
    """Compare the dense conv of ``spec`` with each alternative in ``spec.vs``; latency when settings are given.

    Every stage and layer gets a roofline (bytes, intensity, achieved rates); with a ``calibration`` of this
    machine (see :mod:`convcost.calibrate`) also its bound, the fraction achieved and a verdict. Without
    latency settings and ``threads`` the forward passes run on torch's thread count as it is, timed ones on 1
    thread; either way the process's thread count and allocator are as before afterwards (the run context
    applies and restores them).
    """
    default = 1 if latency_settings is not None else torch.get_num_threads()
    context = RunContext(spec.device, spec.dtype, threads_for(threads, latency_settings, default), latency_settings)
    with context.applied():
        return _compare(spec, context, calibration)


def _compare(spec: CompareSpec, context: RunContext, calibration: Calibration | None) -> Comparison:
    latency_settings = context.latency
    check_device(spec.device)
    kinds.check_memory(spec)
    planned = kinds.plan(spec)
    measured = {str(kind): measure_layer(str(kind), stages, spec) for kind, stages in planned.items()}
    run = None
    if latency_settings is not None:
        cases = {kind: (module, tensor) for kind, (_, module, tensor) in measured.items()}
        if latency_settings.stages:
            for kind, (layer, module, tensor) in measured.items():
                cases.update(latency.stage_cases(kind, [stage.name for stage in layer.stages], module, tensor))
        reference = calibration
        if reference is None:  # this machine's cached calibration, for the probe; none when the cache is broken
            from convcost.run.cache import CalibrationCacheError, cached

            with contextlib.suppress(CalibrationCacheError):
                reference = cached(spec.device, spec.dtype, context.threads)
        pairs = [(str(LayerKind.DENSE), kind) for kind in measured if kind != LayerKind.DENSE]
        run = latency.measure_run(
            cases, latency_settings, pairs, watched=list(measured), reference=reference, threads=context.threads
        )
        stats = run.stats
        for kind, (layer, _, _) in measured.items():
            layer.latency = stats[kind]
            for stage in layer.stages:
                stage.latency = stats.get(f"{kind}.{stage.name}")
    layers = {kind: layer for kind, (layer, _, _) in measured.items()}
    comparison = assemble(spec, layers, context.environment(), calibration, measured=True)
    if run is not None:
        comparison.environment.contention = run.contention
        comparison.ratios = [_with_intervals(ratio, run.ratios.get((str(LayerKind.DENSE), ratio.vs)), latency_settings,
                                             stats[str(LayerKind.DENSE)].converged and stats[ratio.vs].converged)
                             for ratio in comparison.ratios]  # fmt: skip
    return comparison


def _with_intervals(ratio: Ratios, found: Estimate | None, settings: LatencySettings | None, timed: bool) -> Ratios:
    """The ratio with the speedup's interval, its best and typical figures (from the matched bootstrap); converged
    only when both its layers' timings are (``timed``: fewer than 30 rounds never are) and its interval is too."""
    if found is None or ratio.latency is None or settings is None:
        return ratio
    return replace(
        ratio,
        latency_interval=found.best_interval,
        latency_best=found.best,
        latency_typical=found.typical,
        latency_typical_interval=found.typical_interval,
        latency_converged=timed and within(found.best_interval, found.best, settings.target),
    )
