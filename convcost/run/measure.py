"""Real forward passes: output shapes, parameter counts and two independent MAC counters.

The two counters, and why each is set up the way it is:

* ``torch.utils.flop_counter.FlopCounterMode`` counts FLOPs of ``aten.convolution`` as 2 × MACs, without bias.
  It runs under ``torch.no_grad`` (not ``inference_mode``: a parametrized weight vanishes under that mix).
* ptflops, with its **aten** backend chosen explicitly: the default pytorch backend hooks module classes and
  misses functional calls such as ``F.conv2d``; the aten backend sees every convolution. ptflops adds one op per
  output element for the bias into its MAC figure, so we keep its raw figure and compare ``raw − bias adds``.
  On failure it prints to stdout and returns ``None``; we capture the print and raise MeasurementError.
  It registers forward hooks on the children of the model it is given and never removes them, so it only ever
  sees a throw-away wrapper.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.cost import formulas, ops
from convcost.cost.formulas import ConvStage, Pair
from convcost.cost.ops import ConvOp, Op
from convcost.cost.ops import stage_ops as ops_of_stage
from convcost.errors import MeasurementError
from convcost.results.comparison import Check, StageResult, checks
from convcost.results.model import OpResult
from convcost.run.estimate import formula_stage
from convcost.run.network import Call, weight_shape
from convcost.run.trace import Trace, trace, without_fast_paths


def count_flop_counter(module: nn.Module, tensor: torch.Tensor) -> tuple[int, torch.Tensor]:
    """MACs by FlopCounterMode (its FLOPs ÷ 2) and the module's output."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = module(tensor)
    flops = counter.get_total_flops()
    return flops // 2, output


def count_ptflops(module: nn.Module, tensor: torch.Tensor) -> int:
    """ptflops' raw figure (aten backend): conv MACs plus bias adds."""
    from ptflops.aten_engine import get_flops_aten

    wrapper = nn.Sequential(nn.Sequential(module))
    captured = io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        macs, _ = get_flops_aten(
            wrapper,
            tuple(tensor.shape[1:]),
            print_per_layer_stat=False,
            input_constructor=lambda _: tensor,
            verbose=False,
        )
    if macs is None:
        detail = next((line for line in captured.getvalue().splitlines() if line.strip()), "no detail")
        raise MeasurementError(f"ptflops failed: {detail.strip()}")
    return int(macs)


def count(
    module: nn.Module,
    tensor: torch.Tensor,
    subject: str,
    results: list[tuple[Call | None, OpResult]],
    figures: list[tuple[str, Any, Any]],
    note: str = "",
) -> tuple[list[Check], int, int]:
    """The one count path of every network, a compare stage as a model: each op's figures by formula against what
    its call measured (only those that disagree are kept), then both counters on the whole ``module`` and the
    ``subject``'s checks, ``figures`` and its MACs against both. Returns the checks and the counters' figures
    (FlopCounterMode's MACs, ptflops' raw figure)."""
    found: list[Check] = []
    for call, op in results:
        if call is None:
            continue
        own: list[tuple[str, Any, Any]] = []
        if op.counted and op.output_shape_measured is not None:
            own.append(("output shape", op.output_shape, op.output_shape_measured))
        if isinstance(call.op, ConvOp) and call.weight_shape is not None:
            own.append(("weight shape", weight_shape(call.op), call.weight_shape))
        if op.params_measured is not None:
            own.append(("params", op.params, op.params_measured))
        found += [check for check in checks(op.name, own) if not check.ok]
    with without_fast_paths():
        flop_counter, _ = count_flop_counter(module, tensor)
        ptflops_raw = count_ptflops(module, tensor)
    macs, bias_adds = sum(op.macs for _, op in results), sum(op.bias_adds for _, op in results)
    found += checks(subject, figures, (macs, flop_counter, ptflops_raw, bias_adds), note)
    return found, flop_counter, ptflops_raw


def matched(planned: list[Op], traced: Trace, subject: str, what: str) -> tuple[list[Call | None], list[Check]]:
    """Each planned op's call when the forward pass called the planned ops in order; else none, and the check that
    says the built module is not the ``what`` planned."""
    kinds, built = [str(op.kind) for op in planned], [str(call.op.kind) for call in traced.calls]
    if built == kinds:
        return list(traced.calls), []
    return [None] * len(planned), [Check(subject, "operations built", " → ".join(kinds), " → ".join(built),
                                         f"the built module does not match the {what}")]  # fmt: skip


def measure_stage(
    stage: ConvStage, module: nn.Module, tensor: torch.Tensor, subject: str
) -> tuple[StageResult, list[Check], torch.Tensor]:
    """Trace and count one stage on ``tensor`` as a network of its ops; returns its result, its checks and its
    output (the next stage's input)."""
    shape, traced = tuple(tensor.shape), trace(module, tensor)
    calls, stage_checks = matched(ops_of_stage(stage, shape), traced, subject, "stage")
    result, op_results = formula_stage(stage, shape, tensor.element_size(), calls)
    result.output_shape_measured = traced.output_shape
    result.params_measured = sum(parameter.numel() for parameter in module.parameters())
    figures = [("output shape", result.output_shape, result.output_shape_measured),
               ("weight shape", result.weight_shape, traced.calls[0].weight_shape),
               ("params", result.params, result.params_measured)]  # fmt: skip
    counted, result.macs_flop_counter, result.ptflops_raw = count(
        module, tensor, subject, list(zip(calls, op_results, strict=True)), figures
    )
    stage_checks += counted
    result.macs_ptflops = result.ptflops_raw - result.bias_adds
    return result, stage_checks, traced.output


def available_memory() -> int | None:
    """Bytes the OS says are available (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


# Refuse a run whose tensors alone would take more than this share of available memory.
MEMORY_SHARE = 0.5


def check_memory(
    layers: list[list[ConvStage]], size: Pair, batch: int, itemsize: int, channels: dict[str, int] | None = None
) -> None:
    """Raise SpecError before allocating when the layers' tensors cannot fit in memory, on the field that made
    them this large: ``batch`` when they fit at batch 1, else ``size`` or the largest of ``channels`` (the spec's
    cin, cout, mid, multiplier × cin), whichever the largest tensor has more of."""
    from convcost.errors import FieldIssue, SpecError

    needed = weights = 0
    largest_pixels = largest_channels = largest = 0
    for stages in layers:
        stage_size = size
        for stage in stages:
            shape = (batch, stage.cin, *stage_size)
            needed += ops.stage_cost(stage, shape, itemsize)[1]
            weights += ops.cost(ops.ConvOp.from_stage(stage, shape)).params * itemsize  # the conv's weights, bias
            tensor = max(stage.cin, stage.cout) * stage_size[0] * stage_size[1]
            if tensor > largest:
                largest, largest_pixels = tensor, stage_size[0] * stage_size[1]
                largest_channels = max(stage.cin, stage.cout)
            stage_size = formulas.output_size(stage, stage_size)
    available = over_share(needed)
    if available is None:
        return
    field = "size"
    if batch > 1 and weights + (needed - weights) / batch <= MEMORY_SHARE * available:
        field = "batch"
    elif channels and (weights > needed - weights or largest_channels > largest_pixels):
        field = max(channels, key=lambda name: channels[name])
    message = (
        f"these layers need at least {needed / 2**30:,.1f} GiB of tensors, more than half of the "
        f"{available / 2**30:,.1f} GiB available: use a smaller {field.replace('_', ' ')}"
    )
    raise SpecError([FieldIssue((field,), message)])


def over_share(needed: int) -> int | None:
    """The bytes available when ``needed`` bytes exceed the share of them a run may take, else None (it fits, or
    the OS does not say): the one test of every memory guard."""
    available = available_memory()
    return available if available is not None and needed > MEMORY_SHARE * available else None


def require_memory(needed: int, field: str, what: str, advice: str) -> None:
    """Raise UsageError (``field: what need ... ; advice``) when ``needed`` bytes exceed the share allowed."""
    from convcost.errors import UsageError

    available = over_share(needed)
    if available is not None:
        raise UsageError(
            f"{field}: {what} need at least {needed / 2**30:.1f} GiB, more than half of the "
            f"{available / 2**30:.1f} GiB available; {advice}"
        )


def check_device(device: str) -> None:
    from convcost.errors import UsageError

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine (torch " + torch.__version__ + ")")
