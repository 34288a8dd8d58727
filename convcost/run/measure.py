"""The two MAC counters run for real, each on its own forward pass, and the memory and device guards.

convcost itself counts with the counters' own per-op formulas inside its one traced pass
(:mod:`convcost.run.dispatch`); these real counters are the independent reference of the tests
(``tests/test_counters.py``) and of the benchmark. Why each is set up as it is (README: every number, two ways):
FlopCounterMode runs under ``torch.no_grad``, not ``inference_mode`` (a parametrized weight vanishes under that
mix); ptflops runs its **aten** backend (the default one misses ``F.conv2d``), prints to stdout on failure and
returns ``None`` (captured, raised as MeasurementError), and never removes the hooks it registers on the children
of the model it is given, so it only ever sees a throw-away wrapper.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.errors import MeasurementError, UsageError
from convcost.spec.bounds import over_share


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
