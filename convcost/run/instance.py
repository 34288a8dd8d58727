"""``convcost.count(model, inputs)``: the cost of an ``nn.Module`` instance, the same result ``convcost model``
renders, without touching the user's object.

The instance is never moved, converted or put into eval mode: a deep copy is (on ``meta=True``, a copy whose
parameters are meta tensors of their shapes, so it costs no memory; see :func:`convcost.run.model.meta_copy`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from convcost.cost.conventions import Convention
from convcost.errors import FieldIssue, SpecError, UsageError, gathered
from convcost.results.model import ModelResult
from convcost.run import build, usercode
from convcost.run.context import LatencySettings, RunContext, threads_for
from convcost.run.inputs import Arguments, input_bytes, make
from convcost.run.measure import require_memory
from convcost.run.model import _calibration, check_context, meta_copy, run_module
from convcost.run.source import parse_convention
from convcost.spec import bounds
from convcost.spec.compare import DType, positive_int
from convcost.spec.inputs import Inputs, InputSpec, parse_input_spec

Given = Any  # a shape (a tuple of ints, or "3x224x224" / "16:int64" text), a tensor, or a tuple/list/dict of them


def count(
    model: nn.Module,
    inputs: Given = None,
    *,
    batch: int = 1,
    latency: bool | LatencySettings = False,
    dtype: str = "float32",
    device: str = "cpu",
    depth: int | None = None,
    threads: int | None = None,
    name: str | None = None,
    meta: bool = False,
    convention: str = "convcost",
) -> ModelResult:
    """Params, MACs (and with ``latency``, times) of ``model`` on ``inputs``, checked against both counters.

    ``inputs``: a shape without the batch (``(3, 224, 224)``, or text ``"16:int64"``), a tensor (used with its own
    batch), or a tuple/list (positional arguments) or dict (keyword arguments) of them; ``batch`` is prepended to
    every shape. ``threads``: default torch's thread count now. ``convention``: the MAC convention of the totals,
    ``"convcost"`` (ours) or ``"fvcore"``. Raises SpecError or UsageError (ConvcostError).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"count: model must be an nn.Module instance, got {type(model).__name__}")
    issues: list[FieldIssue] = []
    batch = gathered(issues, batch, lambda: positive_int(batch), ("batch",))
    whole = isinstance(depth, int) and not isinstance(depth, bool)
    if depth is not None and not (whole and bounds.DEPTH.contains(depth)):
        issues.append(FieldIssue(("depth",), f"must be a whole number {bounds.DEPTH.describe()}, got {depth!r}"))
    given = _given(inputs, issues)
    chosen = gathered(issues, Convention.CONVCOST, lambda: parse_convention(convention))
    if issues:
        raise SpecError(issues)
    settings = LatencySettings() if latency is True else (latency or None)
    context = RunContext.of(dtype, device, threads_for(threads, settings, torch.get_num_threads()), settings)
    check_context(meta, context)
    type_name = type(model).__qualname__
    path = f"{type(model).__module__}:{type_name}"
    with context.applied():
        calibration = _calibration(context)
        specs = Inputs(tuple(value for value in given[0] if isinstance(value, InputSpec)),
                       {key: value for key, value in given[1].items() if isinstance(value, InputSpec)})  # fmt: skip
        if not meta:
            require_memory(input_bytes(specs, batch, context.dtype), "inputs", "the inputs alone",
                           "use smaller inputs or batch")  # fmt: skip
        where = "meta" if meta else context.device
        with usercode.guard(path, f"copying the model to {where} {context.dtype}"):
            module = build.prepare(meta_copy(model) if meta else copy.deepcopy(model), context.dtype, where)
        arguments = _tensors(given, batch, context.dtype, where)
        settings_record = {**_settings(arguments), "depth": depth}
        return run_module(path, name or type_name, model, module, arguments, settings_record, depth, context, meta,
                          calibration, chosen)  # fmt: skip


def _given(inputs: Given, issues: list[FieldIssue]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs as positional and keyword values, each an InputSpec or a tensor."""
    if inputs is None:
        issues.append(FieldIssue(("inputs",), "required: a shape such as (3, 224, 224), a tensor, or a tuple or "
                                              "dict of them"))  # fmt: skip
        return (), {}
    if _is_shape(inputs) or isinstance(inputs, (torch.Tensor, str)):
        inputs = (inputs,)
    if isinstance(inputs, dict):
        keyword = {str(key): _one(value, ("inputs", str(key)), issues) for key, value in inputs.items()}
        for key in keyword:
            if not key.isidentifier():
                issues.append(FieldIssue(("inputs", key), "must be a Python name (a keyword argument)"))
        return (), keyword
    if isinstance(inputs, (tuple, list)):
        return tuple(_one(value, ("inputs", index), issues) for index, value in enumerate(inputs)), {}
    issues.append(FieldIssue(("inputs",), f"expected a shape, a tensor, or a tuple or dict of them, got "
                                          f"{type(inputs).__name__}"))  # fmt: skip
    return (), {}


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list, torch.Size)) and bool(value) and all(
        isinstance(side, int) and not isinstance(side, bool) for side in value)  # fmt: skip


def _one(value: Any, loc: tuple[str | int, ...], issues: list[FieldIssue]) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, str) or _is_shape(value):
        text = value if isinstance(value, str) else "x".join(str(side) for side in value)
        return gathered(issues, None, lambda: parse_input_spec(text), loc)
    issues.append(FieldIssue(loc, f"expected a shape (a tuple of ints) or a tensor, got {bounds.shown(value)}"))
    return None


def _tensors(given: tuple[tuple[Any, ...], dict[str, Any]], batch: int, dtype: DType, device: str) -> Arguments:
    """Shapes made into tensors; a given tensor moved to the run's device (a float one in the run's dtype) as a
    new tensor, the user's own left as it is (on meta: an empty tensor of its shape)."""

    def tensor(value: Any) -> torch.Tensor:
        if isinstance(value, InputSpec):
            made: tuple[torch.Tensor, ...] = make(Inputs((value,)), batch, dtype, device)[0]
            return made[0]
        own: torch.Tensor = value
        chosen = build.TORCH_DTYPES[dtype] if own.is_floating_point() else own.dtype
        if device == "meta":
            return torch.empty(own.shape, dtype=chosen, device="meta")
        return own.detach().to(device=device, dtype=chosen, copy=True)

    return tuple(tensor(value) for value in given[0]), {key: tensor(value) for key, value in given[1].items()}


def _settings(arguments: Arguments) -> dict[str, Any]:
    """As ``convcost model`` records inputs: one float tensor its shape without the batch, else every input's."""
    args, kwargs = arguments
    if len(args) == 1 and not kwargs and args[0].is_floating_point() and args[0].dim() > 0:
        return {"input": list(args[0].shape[1:]), "batch": args[0].shape[0]}
    named = [(f"args[{index}]", value) for index, value in enumerate(args)] + list(kwargs.items())
    shapes = {key: {"shape": list(value.shape), "dtype": None if value.is_floating_point() else
                    str(value.dtype).removeprefix("torch.")} for key, value in named}  # fmt: skip
    first = named[0][1] if named else None
    return {"inputs": shapes, "batch": first.shape[0] if first is not None and first.dim() else None}
