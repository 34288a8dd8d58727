"""The two MAC counters run for real, each on its own forward pass, and the memory and device guards.

convcost itself counts with the counters' own per-op formulas inside its one traced pass
(:mod:`convcost.run.dispatch`); the functions here run the real counters, the independent reference of the tests
(``tests/test_counters.py``) and of the benchmark.

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

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.cost import formulas, ops
from convcost.cost.formulas import ConvStage, Pair
from convcost.errors import FieldIssue, MeasurementError, SpecError, UsageError


def count_flop_counter(module: nn.Module, tensor: torch.Tensor) -> tuple[int, torch.Tensor]:
    """MACs by FlopCounterMode (its FLOPs ÷ 2) and the module's output."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = module(tensor)
    return counter.get_total_flops() // 2, output


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
    available = over_share(needed)
    if available is not None:
        raise UsageError(
            f"{field}: {what} need at least {needed / 2**30:.1f} GiB, more than half of the "
            f"{available / 2**30:.1f} GiB available; {advice}"
        )


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine (torch " + torch.__version__ + ")")
