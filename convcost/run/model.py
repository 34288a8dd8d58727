"""Whole models: per-layer costs by formula, checked against a real forward pass and both MAC counters.

Two sources, one pipeline:

* a model file (:mod:`convcost.model_spec`) is planned into operations by formula alone, built from stock
  modules (:mod:`convcost.model_build`), run, and every planned operation is checked against the module the
  forward pass actually called;
* an import path ``package.module:factory`` is run once with hooks on every leaf module; each leaf becomes an
  operation counted by formula from the shapes it saw. A leaf type with no formula is "not counted", with its
  parameters, never a silent zero. Adds, adaptive pools and activations called functionally in a container's
  ``forward`` (a residual ``x + f(x)``) are seen through a ``TorchFunctionMode``; functional convs and matmuls
  there are listed as not counted (the counter checks then show what they cost).

Hooks and modes are removed in ``finally``. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convcost.cost import ops as model_formulas
from convcost.cost.ops import (
    ActOp,
    AdaptivePoolOp,
    AddOp,
    ConvOp,
    FlattenOp,
    IdentityOp,
    LinearOp,
    NormOp,
    Op,
    PoolOp,
    Shape,
    UncountedOp,
)
from convcost.cost.roofline import Calibration
from convcost.errors import UsageError
from convcost.results.comparison import Check
from convcost.results.model import (
    DenseEquivalent,
    KindShare,
    ModelLayerResult,
    ModelResult,
    ModelTotals,
    OpResult,
    PairReplaced,
)
from convcost.run import build, latency, measure
from convcost.run.latency import LatencySettings
from convcost.run.measure import (
    MEMORY_SHARE,
    check_device,
    count_flop_counter,
    count_ptflops,
    environment,
    require_memory,
)
from convcost.spec.compare import DType
from convcost.spec.model import ModelPlan

# ---- leaf modules → operations ------------------------------------------------------------------------

FromModule = Callable[[str, Any, Shape], Op]
_FROM_MODULE: dict[type[nn.Module], FromModule] = {}


def register_module(*types: type[nn.Module]) -> Callable[[FromModule], FromModule]:
    """Register how a module type becomes an operation; registering a type twice is a programming error."""

    def decorate(function: FromModule) -> FromModule:
        for module_type in types:
            if module_type in _FROM_MODULE:
                raise RuntimeError(f"module type {module_type.__name__} is already registered")
            _FROM_MODULE[module_type] = function
        return function

    return decorate


def _lookup(module: nn.Module) -> FromModule | None:
    # the MRO, so a parametrized Conv2d (a subclass torch makes on the fly) is still a Conv2d
    for cls in type(module).__mro__:
        if cls in _FROM_MODULE:
            return _FROM_MODULE[cls]
    return None


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    return tuple(int(v) for v in value)


def _stored_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _parametrized(module: nn.Module) -> bool:
    parametrizations = getattr(module, "parametrizations", None)
    return parametrizations is not None and len(parametrizations) > 0


@register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(name: str, module: nn.Conv1d | nn.Conv2d | nn.Conv3d, shape: Shape) -> Op:
    dims = len(module.kernel_size)
    if len(shape) != dims + 2:
        return _uncounted(name, module, shape, f"unbatched {type(module).__name__}")
    padding: tuple[int, ...] | str = module.padding
    if padding == "valid":
        padding = (0,) * dims
    shared = False
    parametrizations = getattr(module, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        # a shared depthwise kernel stores one kernel per multiplier slot (see convcost.run.build.TiledKernel); other
        # parametrizations (weight_norm stores original0 and original1) are counted by what they store
        original = getattr(parametrizations["weight"], "original", None)
        shared = isinstance(original, torch.Tensor) and original.shape[0] != module.out_channels
    return ConvOp(
        name=name,
        input_shape=shape,
        cin=module.in_channels,
        cout=module.out_channels,
        kernel=_tuple(module.kernel_size, dims),
        stride=_tuple(module.stride, dims),
        padding="same" if padding == "same" else _tuple(padding, dims),
        dilation=_tuple(module.dilation, dims),
        groups=module.groups,
        bias=module.bias is not None,
        shared=shared,
        stored_params=_stored_params(module) if _parametrized(module) and not shared else None,
    )


@register_module(nn.Linear)
def _linear(name: str, module: nn.Linear, shape: Shape) -> Op:
    stored = _stored_params(module) if _parametrized(module) else None
    return LinearOp(name, shape, module.in_features, module.out_features, module.bias is not None, stored)


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batchnorm(name: str, module: nn.BatchNorm2d, shape: Shape) -> Op:
    return NormOp(name, shape, module.num_features, module.affine)


_ACTIVATION_NAMES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
    nn.ELU: "elu",
    nn.Mish: "mish",
    nn.PReLU: "prelu",
}


@register_module(*_ACTIVATION_NAMES)
def _activation(name: str, module: nn.Module, shape: Shape) -> Op:
    function = next(value for cls, value in _ACTIVATION_NAMES.items() if isinstance(module, cls))
    return ActOp(name, shape, function, _stored_params(module))


@register_module(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool(name: str, module: Any, shape: Shape) -> Op:
    dims = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}[
        next(cls for cls in type(module).__mro__ if cls in _FROM_MODULE)
    ]
    kernel = _tuple(module.kernel_size, dims)
    mode: Literal["max", "avg"] = "max" if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) else "avg"
    return PoolOp(
        name,
        shape,
        mode,
        kernel,
        _tuple(module.stride or module.kernel_size, dims),
        _tuple(module.padding, dims),
        _tuple(getattr(module, "dilation", 1), dims),
        bool(module.ceil_mode),
    )


_ADAPTIVE = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


@register_module(*_ADAPTIVE)
def _adaptive_pool(name: str, module: Any, shape: Shape) -> Op:
    dims = int(type(module).__name__[-2])
    mode = "max" if "Max" in type(module).__name__ else "avg"
    return _adaptive(name, shape, mode, module.output_size, dims)


def _adaptive(name: str, shape: Shape, mode: str, output_size: Any, dims: int) -> Op:
    sizes = (output_size,) * dims if isinstance(output_size, int) else tuple(output_size)
    spatial = shape[-dims:]
    out = tuple(int(size) if size is not None else spatial[index] for index, size in enumerate(sizes))
    return AdaptivePoolOp(name, shape, "max" if mode == "max" else "avg", out)


@register_module(nn.Flatten)
def _flatten(name: str, module: nn.Flatten, shape: Shape) -> Op:
    return FlattenOp(name, shape, module.start_dim, module.end_dim)


@register_module(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
def _identity(name: str, module: nn.Module, shape: Shape) -> Op:
    return IdentityOp(name, shape)


# Modules whose forward does its work functionally on their own weights, without calling their children (so the
# hooks of the children see nothing): each is one "not counted" operation with all its parameters.
_OPAQUE: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)


@register_module(*_OPAQUE)
def _opaque(name: str, module: nn.Module, shape: Shape) -> Op:
    return _uncounted(name, module, shape, type(module).__name__)


def _uncounted(name: str, module: nn.Module | None, shape: Shape, type_name: str, output: Shape = ()) -> Op:
    return UncountedOp(name, shape, type_name, _stored_params(module) if module is not None else 0, output)


# ---- tracing a forward pass ---------------------------------------------------------------------------

_ADDS = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_FUNCTIONAL_ACTIVATIONS = {
    "relu",
    "relu_",
    "relu6",
    "hardswish",
    "hardsigmoid",
    "silu",
    "sigmoid",
    "tanh",
    "gelu",
    "leaky_relu",
}
_FUNCTIONAL_UNCOUNTED = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "linear",
    "bilinear",
    "matmul",
    "__matmul__",
    "__rmatmul__",
    "mm",
    "bmm",
    "mv",
    "addmm",
    "addmm_",
    "addbmm",
    "baddbmm",
    "addmv",
    "einsum",
    "tensordot",
    "scaled_dot_product_attention",
    "multi_head_attention_forward",
}


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


@dataclass
class Trace:
    calls: list[Call]
    output_shape: Shape
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # first input of each captured module
    modules: dict[str, nn.Module] = field(default_factory=dict)
    never_called: list[str] = field(default_factory=list)  # "block.unused (Linear, 20 params)"


class _FunctionalOps(TorchFunctionMode):
    """Sees adds, pools, activations and matmuls that a container calls between its children."""

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None) -> Any:
        output = func(*args, **(kwargs or {}))
        if self.tracer.leaf_depth == 0:
            self.tracer.functional(getattr(func, "__name__", ""), args, kwargs or {}, output)
        return output


class _Tracer:
    def __init__(self, model: nn.Module, capture: set[str]) -> None:
        self.model = model
        self.capture = capture
        self.leaf_depth = 0
        self.stack: list[str] = []
        self.calls: list[Call] = []
        self.inputs: dict[str, torch.Tensor] = {}
        self.modules: dict[str, nn.Module] = {}
        self.call_counts: dict[str, int] = {}
        self.pending: dict[int, tuple[str, Shape]] = {}
        self.container_starts: list[tuple[int, Shape]] = []  # calls recorded and input shape at each container
        self.handles: list[Any] = []
        self.leaves: dict[str, nn.Module] = {}
        self.opaque: set[str] = set()  # containers counted as one uncounted op (see _opaque_container)
        self._find_leaves(model, "")

    def _find_leaves(self, module: nn.Module, name: str) -> None:
        self.modules[name] = module
        children = list(module.named_children())
        if _lookup(module) is not None or not children:
            self.leaves[name] = module
            return
        for child_name, child in children:
            self._find_leaves(child, f"{name}.{child_name}" if name else child_name)

    def attach(self) -> None:
        for name, module in self.modules.items():
            leaf = name in self.leaves
            self.handles.append(module.register_forward_pre_hook(self._pre(name, leaf)))
            self.handles.append(module.register_forward_hook(self._post(name, leaf)))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _pre(self, name: str, leaf: bool) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if name in self.capture and name not in self.inputs and first is not None and len(args) == 1:
                self.inputs[name] = first.detach()
            if leaf:
                self.leaf_depth += 1
                self.pending[id(module)] = (name, tuple(first.shape) if first is not None else ())
            else:
                self.stack.append(name)
                self.container_starts.append((len(self.calls), tuple(first.shape) if first is not None else ()))

        return hook

    def _post(self, name: str, leaf: bool) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            measured = _first_shape(output)
            if not leaf:
                self.stack.pop()
                start, container_shape = self.container_starts.pop()
                if not any(call.module_name is not None for call in self.calls[start:]):
                    self._opaque_container(name, module, container_shape, measured, start)
                return
            self.leaf_depth -= 1
            _, shape = self.pending.pop(id(module))
            count = self.call_counts[name] = self.call_counts.get(name, 0) + 1
            label = (name or "(model)") + (f"#{count}" if count > 1 else "")
            convert = _lookup(module)
            if not shape:
                op = _uncounted(label, module, shape, f"{type(module).__name__} (no tensor input)", measured or ())
            elif convert is None:
                op = _uncounted(label, module, shape, type(module).__name__, measured or ())
            else:
                op = convert(label, module, shape)
            # a module called again applies the same weights: they are counted at its first call
            self.calls.append(Call(op, measured, _stored_params(module) if count == 1 else 0, name, name, count > 1))

        return hook

    def _opaque_container(self, name: str, module: nn.Module, shape: Shape, measured: Shape | None, start: int) -> None:
        """A container whose forward called none of its modules did its work functionally: one uncounted op."""
        if _stored_params(module) == 0:
            return  # e.g. only adds and activations: the functional ops recorded already say what it did
        count = self.call_counts[name] = self.call_counts.get(name, 0) + 1
        label = (name or "(model)") + (f"#{count}" if count > 1 else "")
        params = _stored_params(module) if count == 1 else 0
        detail = f"{type(module).__name__} (no formula, its children not called)"
        op = UncountedOp(label, shape, detail, params, measured or ())
        self.opaque.add(name)
        self.calls.insert(start, Call(op, measured, op.params, name, name, count > 1))

    def functional(self, function: str, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        parent = self.stack[-1] if self.stack and self.stack[-1] else "(model)"
        shape = tuple(output.shape)
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        op: Op | None = None
        if function in _ADDS:
            other = args[1] if len(args) > 1 else kwargs.get("other")
            # a residual add: two tensors of one non-scalar shape (not a.sum() + b.sum(), not a broadcast)
            if first is not None and isinstance(other, torch.Tensor) and first.dim() > 0 and first.shape == other.shape:
                op = AddOp(self._label(f"{parent}.add"), shape)
        elif function.startswith("adaptive_") and first is not None:
            dims = int(function[-2])
            mode: Literal["max", "avg"] = "max" if "max" in function else "avg"
            op = AdaptivePoolOp(self._label(f"{parent}.{function}"), tuple(first.shape), mode, shape[-dims:])
        elif function in _FUNCTIONAL_ACTIVATIONS and first is not None:
            op = ActOp(self._label(f"{parent}.{function.rstrip('_')}"), tuple(first.shape), function.rstrip("_"))
        elif function in _FUNCTIONAL_UNCOUNTED:
            op = UncountedOp(
                self._label(f"{parent}.{function}"),
                tuple(first.shape) if first is not None else (),
                f"functional {function}",
                0,
                shape,
            )
        if op is not None:
            self.calls.append(Call(op, shape, 0, None, self.stack[-1] if self.stack else ""))

    def _label(self, name: str) -> str:
        count = self.call_counts[name] = self.call_counts.get(name, 0) + 1
        return name + (f"#{count}" if count > 1 else "")


@contextlib.contextmanager
def without_fast_paths() -> Iterator[None]:
    """Turn off torch's fused inference paths while counting.

    In ``eval()`` under ``no_grad``, ``nn.MultiheadAttention`` and the transformer layers call one fused kernel
    (``_native_multi_head_attention``) that neither FlopCounterMode nor ptflops counts: attention would be a
    silent zero. With the fast path off they run their matmuls one by one, where both counters see them.
    Torch's warning that an even kernel with padding 'same' copies its input is silenced here: it is expected.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using padding='same'")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _first_shape(output: Any) -> Shape | None:
    """The shape of a module's output: a tensor's, or the first tensor's of a tuple (attention's output, weights)."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return tuple(output[0].shape)
    return None


def _under(name: str, ancestors: set[str]) -> bool:
    return any(name == ancestor or not ancestor or name.startswith(ancestor + ".") for ancestor in ancestors)


def trace(model: nn.Module, tensor: torch.Tensor, capture: set[str] | None = None) -> Trace:
    """Run ``model`` once, recording every leaf call and every functional op between leaves."""
    tracer = _Tracer(model, capture or set())
    tracer.attach()
    try:
        with torch.no_grad(), without_fast_paths(), _FunctionalOps(tracer):
            output = model(tensor)
    finally:
        tracer.detach()
    calls = tracer.calls
    for name, module in tracer.modules.items():
        if name in tracer.leaves or _under(name, tracer.opaque):
            continue
        own = sum(parameter.numel() for parameter in module.parameters(recurse=False))
        if own:
            label = f"{name or '(model)'} (own parameters)"
            op = UncountedOp(label, (), f"{type(module).__name__} parameters", own)
            calls.append(Call(op, (), own, None, name, real=False))
    never_called = [
        f"{name} ({type(module).__name__}, {_stored_params(module):,} params)"
        for name, module in tracer.leaves.items()
        if name not in tracer.call_counts and _stored_params(module) and not _under(name, tracer.opaque)
    ]
    output_shape = _first_shape(output) or ()
    return Trace(calls, output_shape, tracer.inputs, tracer.modules, never_called)


# ---- evaluation ----------------------------------------------------------------------------------------


@dataclass
class _Row:
    name: str
    kind: str
    ops: list[Op]
    measured: list[Call | None]
    module_name: str | None  # for per-layer latency


def evaluate_plan(
    plan: ModelPlan,
    source: str,
    latency_settings: LatencySettings | None = None,
    dtype: DType = DType.FLOAT32,
    device: str = "cpu",
    threads: int | None = None,
) -> ModelResult:
    """Build, run and count a planned model file.

    ``threads`` is the thread count recorded in the environment when no latency is measured (latency runs record
    their own).
    """
    from convcost.run.model_build import model_module

    check_device(device)
    calibration = _calibration(latency_settings, device, dtype)
    check_plan_memory(plan, source, dtype.itemsize)
    module = build.prepare(model_module(plan), dtype, device)
    tensor = build.input_tensor(
        plan.input_shape[1], (plan.input_shape[2], plan.input_shape[3]), plan.input_shape[0], dtype, device
    )
    capture = {str(index) for index in range(len(plan.layers))} if latency_settings else set()
    traced = trace(module, tensor, capture)
    checks: list[Check] = []
    calls: list[Call | None] = list(traced.calls)
    planned = plan.ops
    if len(calls) != len(planned) or any(
        call is not None and call.op.kind is not op.kind for call, op in zip(calls, planned, strict=False)
    ):
        checks.append(
            Check(
                "model", "operations built", len(planned), len(calls), False, "the built module does not match the plan"
            )
        )
        calls = [None] * len(planned)
    rows: list[_Row] = []
    position = 0
    for index, layer in enumerate(plan.layers):
        count = len(layer.ops)
        rows.append(_Row(layer.name, layer.kind, layer.ops, calls[position : position + count], str(index)))
        position += count
    settings = {
        "width_multiplier": plan.width_multiplier,
        "channel_divisor": plan.channel_divisor,
        "batch": plan.input_shape[0],
    }
    return _evaluate(
        plan.name or source,
        source,
        module,
        tensor,
        traced,
        rows,
        checks,
        settings,
        latency_settings,
        dtype,
        device,
        threads,
        calibration=calibration,
    )


def check_plan_memory(plan: ModelPlan, source: str, itemsize: int) -> None:
    """UsageError before anything is allocated when the input and every operation's output cannot fit in memory;
    it names the field that made the network this large (see :func:`memory_culprit`)."""
    outputs = math.prod(plan.input_shape) + sum(math.prod(model_formulas.output_shape(op)) for op in plan.ops)
    weights = sum(model_formulas.cost(op).params for op in plan.ops)
    available = measure.available_memory()
    if available is None or (outputs + weights) * itemsize <= MEMORY_SHARE * available:
        return
    fits_at_batch_1 = (outputs // plan.input_shape[0] + weights) * itemsize <= MEMORY_SHARE * available
    field, value = memory_culprit(plan, fits_at_batch_1)
    shape = "×".join(str(value) for value in plan.input_shape)
    require_memory(
        (outputs + weights) * itemsize,
        f"{source}: {field}",
        f"at {field} {value} (input {shape}) the input, weights and every operation's output",
        f"use a smaller {field}",
    )


def memory_culprit(plan: ModelPlan, fits_at_batch_1: bool) -> tuple[str, str]:
    """The field (and its value) that makes a planned model too large for memory, as the file names it.

    The batch when the model fits at batch 1; else the largest tensor decides: a weight or an output with more
    channels than pixels is the channels' fault (the width multiplier, the channel divisor, an inverted
    residual's expand or the layer's cout), an output with more pixels than channels the input size's.
    """
    batch, channels = plan.input_shape[0], plan.input_shape[1]
    if fits_at_batch_1 and batch > 1:
        return "input.batch", str(batch)
    largest, weight = None, False
    biggest = math.prod(plan.input_shape) // batch
    where = None
    for layer in plan.layers:
        for op in layer.ops:
            for size, is_weight in ((math.prod(model_formulas.output_shape(op)) // batch, False),
                                    (model_formulas.cost(op).params, True)):  # fmt: skip
                if size > biggest:
                    biggest, largest, weight, where = size, op, is_weight, layer
    if largest is None or where is None:  # the input itself
        return ("input.channels", str(channels)) if channels > math.prod(plan.input_shape[2:]) else (
            "input.size", "×".join(str(value) for value in plan.input_shape[2:]))  # fmt: skip
    shape = model_formulas.output_shape(largest)
    pixels = math.prod(shape[2:]) if len(shape) > 2 else 1
    if not weight and pixels >= shape[1]:
        return "input.size", "×".join(str(value) for value in plan.input_shape[2:])
    spec = where.spec
    index = where.loc[1] if len(where.loc) > 1 else 0
    scaled = bool(getattr(spec, "scale", False))
    if scaled and plan.width_multiplier > 1:
        return "width_multiplier", f"{plan.width_multiplier:g}"
    cout = getattr(spec, "cout", None)
    if scaled and plan.channel_divisor > 1 and (cout is None or plan.channel_divisor > cout):
        return "channel_divisor", str(plan.channel_divisor)
    expand = getattr(spec, "expand", 1)
    if expand > 1 and ".project" not in largest.name:
        return f"layers[{index}].expand", str(expand)
    if cout is not None:
        return f"layers[{index}].cout", str(cout)
    return "input.channels", str(channels)


def _show(shape: Shape) -> str:
    return "×".join(str(value) for value in shape) or "a scalar"


def parse_input(text: str) -> tuple[int, ...]:
    """``CxHxW`` (or ``C,H,W``, ``CxL``, ``CxDxHxW``) → a tuple of positive ints; raises ValueError."""
    from convcost.spec import bounds

    parts = [part.strip() for part in text.replace("×", "x").replace(",", "x").lower().split("x")]
    ascii_digits = all(part.isascii() and part.isdigit() for part in parts)
    too_long = ascii_digits and any(len(part.lstrip("0")) > bounds.MAX_NUMBER_TEXT for part in parts)
    if not parts or not ascii_digits or (not too_long and min(int(part) for part in parts) < 1):
        raise ValueError(f"expected CxHxW with positive integers (e.g. 3x224x224), got {bounds.shown(text)}")
    if too_long or max(int(part) for part in parts) > bounds.COUNT.high:  # int() only of short digits
        raise ValueError(f"must be CxHxW with each side {bounds.COUNT.describe()}, got {bounds.shown(text)}")
    return tuple(int(part) for part in parts)


def load_factory(path: str) -> nn.Module:
    """Import ``package.module:factory`` and call it; raises UsageError with the reason.

    Everything the user's code does runs inside :func:`convcost.run.usercode.guard`: an exception, ``sys.exit`` or a
    KeyboardInterrupt it raises is an error naming ``path``, and what it prints goes to stderr.
    """
    from convcost.run import usercode

    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"{path}: expected package.module:factory (a callable returning an nn.Module)")
    # like `python -m`, look in the working directory first: the model is usually the user's own code
    with usercode.guard(path, f"importing {module_name}"):
        try:
            imported = usercode.import_module(module_name)
        except ImportError as error:
            raise UsageError(f"{path}: cannot import {module_name}: {error}") from None
    source_file = getattr(imported, "__file__", None)
    if source_file:
        from convcost.spec.files import reading

        reading(source_file)  # the model's source is an input: -o may not name it
    target: Any = imported
    with usercode.guard(path, f"looking up {attribute}"):
        for part in attribute.split("."):
            if not hasattr(target, part):
                names = [name for name in dir(imported) if not name.startswith("_")]
                from convcost.spec.yamlio import suggest

                hint = suggest(part, names)
                raise UsageError(
                    f"{path}: {module_name} has no attribute {part!r}" + (f"; did you mean '{hint}'?" if hint else "")
                )
            target = getattr(target, part)
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise UsageError(f"{path}: {attribute} is not callable")
    # the factory may import the user's other modules lazily: the working directory stays on sys.path for it
    with usercode.guard(path, f"calling {attribute}()"), usercode.working_directory_on_path():
        model = target()
    if not isinstance(model, nn.Module):
        raise UsageError(f"{path}: {attribute}() returned {type(model).__name__}, not an nn.Module")
    return model


def evaluate_import(
    path: str,
    input_shape: tuple[int, ...],
    batch: int = 1,
    depth: int | None = None,
    latency_settings: LatencySettings | None = None,
    dtype: DType = DType.FLOAT32,
    device: str = "cpu",
    model: nn.Module | None = None,
    threads: int | None = None,
) -> ModelResult:
    """Count a model from ``package.module:factory`` on an input of ``input_shape`` (without the batch)."""
    check_device(device)
    calibration = _calibration(latency_settings, device, dtype)
    shape_text = "×".join(str(value) for value in (batch, *input_shape))
    # the layers' outputs are unknown before the forward pass: refuse at least an input that cannot fit
    require_memory(
        batch * math.prod(input_shape) * dtype.itemsize,
        f"{path}: input",
        f"the input {shape_text} alone",
        "use a smaller --input or --batch",
    )
    from convcost.run import usercode

    loaded = model if model is not None else load_factory(path)
    with usercode.guard(path, f"moving the model to {device} {dtype}"):
        module = build.prepare(loaded, dtype, device)
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(batch, *input_shape, generator=generator).to(device=device, dtype=build.TORCH_DTYPES[dtype])
    capture: set[str] = set()
    if latency_settings is not None:
        capture = set(_Tracer(module, set()).modules)
    with usercode.guard(path, f"forward pass on input {shape_text}"):
        traced = trace(module, tensor, capture)
    rows = _group(traced, depth)
    settings: dict[str, Any] = {"input": list(input_shape), "batch": batch, "depth": depth}
    # counting and timing run the model's forward again, inside convcost's own code: an ordinary exception is
    # the model's when its traceback passes through the model's source
    roots = _user_sources(path, loaded)
    with usercode.guard(path, "counting or timing the forward pass", only_if_user_frames=roots):
        return _evaluate(
            path.rpartition(":")[2] or path,
            path,
            module,
            tensor,
            traced,
            rows,
            [],
            settings,
            latency_settings,
            dtype,
            device,
            threads,
            imported=True,
            calibration=calibration,
        )


def _user_sources(path: str, model: nn.Module) -> tuple[str, ...]:
    """The folders and files of the user's code: the import path's package and every module class's package."""
    from convcost.run import usercode

    names = {path.partition(":")[0], *(type(child).__module__ for child in model.modules())}
    roots: set[str] = set()
    for name in names:
        module = sys.modules.get(name)
        if module is not None and name.partition(".")[0] not in ("torch", "convcost"):
            roots.update(usercode.source_roots(module))
    return tuple(sorted(roots))


def _group(traced: Trace, depth: int | None) -> list[_Row]:
    """Rows of the table: one per operation, or one per module ``depth`` levels down."""
    rows: list[_Row] = []
    used: dict[str, int] = {}  # row names key a check's per-layer limits: a module met again later is name#2
    for call in traced.calls:
        key = call.op.name
        if call.module_name is not None and not call.reused:
            key = call.module_name or key
        kind = type(traced.modules[call.module_name]).__name__ if call.module_name is not None else str(call.op.kind)
        parts = call.owner.split(".") if call.owner else []
        if depth is not None and len(parts) >= depth:
            key = ".".join(parts[:depth])
            kind = type(traced.modules[key]).__name__
            if rows and rows[-1].name == key:
                rows[-1].ops.append(call.op)
                rows[-1].measured.append(call)
                continue
        count = used[key] = used.get(key, 0) + 1
        name = key if count == 1 else f"{key}#{count}"
        rows.append(_Row(name, kind, [call.op], [call], key if key in traced.inputs else None))
    return rows


def _evaluate(
    name: str,
    source: str,
    module: nn.Module,
    tensor: torch.Tensor,
    traced: Trace,
    rows: list[_Row],
    checks: list[Check],
    settings: dict[str, Any],
    latency_settings: LatencySettings | None,
    dtype: DType,
    device: str,
    threads: int | None = None,
    imported: bool = False,
    calibration: Calibration | None = None,
) -> ModelResult:
    layers: list[ModelLayerResult] = []
    output_shape: Shape = ()
    last_measured: Shape | None = None
    for row in rows:
        results = []
        for op, call in zip(row.ops, row.measured, strict=True):
            op_result = _op_result(op, call)
            if call is None or call.real:  # the "(own parameters)" rows come after the calls and have no output
                output_shape = op_result.output_shape
                last_measured = op_result.output_shape_measured
            measured_shape = op_result.output_shape_measured
            if call is not None and op_result.counted and measured_shape is not None:
                ok = op_result.output_shape == measured_shape
                if not ok:
                    checks.append(Check(op.name, "output shape", op_result.output_shape, measured_shape, ok))
            if call is not None and op_result.params_measured is not None:
                ok = op_result.params == op_result.params_measured
                if not ok:
                    checks.append(Check(op.name, "params", op_result.params, op_result.params_measured, ok))
            results.append(op_result)
        layers.append(ModelLayerResult(row.name, row.kind, results))
    ops = [op for layer in layers for op in layer.ops]
    params = sum(op.params for op in ops)
    macs = sum(op.macs for op in ops)
    bias_adds = sum(op.bias_adds for op in ops)
    with without_fast_paths():
        flop_counter, _ = count_flop_counter(module, tensor)
        ptflops_raw = count_ptflops(module, tensor)
    params_measured = _stored_params(module)
    total = ModelTotals(
        params=params,
        macs=macs,
        bias_adds=bias_adds,
        other_ops=sum(op.other_ops for op in ops),
        params_measured=params_measured,
        macs_flop_counter=flop_counter,
        macs_ptflops=ptflops_raw - bias_adds,
        ptflops_raw=ptflops_raw,
    )
    not_counted = [op for op in ops if not op.counted]
    uncounted_note = ""
    if not_counted:
        uncounted_note = (
            f"{len(not_counted)} operation(s) not counted: "
            + ", ".join(f"{op.name} ({op.detail}, {op.params:,} params)" for op in not_counted[:5])
            + (" …" if len(not_counted) > 5 else "")
        )
    same_shape = output_shape == traced.output_shape
    output_check = Check("model", "output shape", output_shape, traced.output_shape, same_shape)
    if imported and last_measured != traced.output_shape:
        # the model's forward changed its last traced op's output with something not traced (x.sum(), a view):
        # the ops' own shape checks stand, and there is no formula for the rest
        output_check = Check("model", "output shape", traced.output_shape, traced.output_shape, True)
        result_note = (
            f"the model's output {_show(traced.output_shape)} is not its last traced operation's "
            f"({_show(last_measured or ())}): something untraced (a view, a reduction) came after it"
        )
    else:
        result_note = ""
    never_called = ", ".join(traced.never_called)
    checks += [
        output_check,
        Check(
            "model",
            "params" + (f" (never called, so not counted: {never_called})" if never_called else ""),
            params,
            params_measured,
            params == params_measured,
        ),
        Check("model", "MACs (FlopCounterMode)", macs, flop_counter, macs == flop_counter, uncounted_note),
        Check(
            "model",
            "MACs (ptflops)",
            macs,
            total.macs_ptflops,
            macs == total.macs_ptflops,
            f"ptflops folds {bias_adds:,} bias adds into its figure ({ptflops_raw:,})" if bias_adds else "",
        ),
    ]
    planned_ops = [op for row in rows for op in row.ops]
    result = ModelResult(
        name=name,
        source=source,
        input_shape=tuple(tensor.shape),
        output_shape=output_shape,
        output_shape_measured=traced.output_shape,
        layers=layers,
        total=total,
        dense_equivalent=dense_equivalent(planned_ops),
        by_kind=by_kind(ops, params, macs),
        environment=environment(
            device,
            latency_settings.threads if latency_settings else (threads or torch.get_num_threads()),
            str(dtype),
            bool(latency_settings and latency_settings.channels_last),
            latency.allocator_state(),
        ),
        checks=checks,
        settings=settings,
    )
    if uncounted_note:
        result.notes.append(uncounted_note + ": their cost is not in the totals")
    if result_note:
        result.notes.append(result_note)
    if latency_settings is not None:
        _measure_latency(result, module, tensor, traced, rows, latency_settings, calibration)
    return result


def _op_result(op: Op, call: Call | None) -> OpResult:
    cost = model_formulas.cost(op)
    counted = not isinstance(op, UncountedOp)
    return OpResult(
        name=op.name,
        kind=str(op.kind),
        category=str(model_formulas.category(op)),
        detail=model_formulas.describe(op),
        input_shape=op.input_shape,
        output_shape=model_formulas.output_shape(op) if counted else (call.output_shape or () if call else ()),
        output_shape_measured=call.output_shape if call is not None else None,
        params=0 if call is not None and call.reused else cost.params,
        params_measured=call.params_measured if call is not None else None,
        macs=cost.macs,
        bias_adds=cost.bias_adds,
        other_ops=cost.other_ops,
        counted=counted,
    )


def by_kind(ops: list[OpResult], params: int, macs: int) -> list[KindShare]:
    """Params and MACs by category, most MACs first."""
    groups: dict[str, list[OpResult]] = {}
    for op in ops:
        groups.setdefault(op.category, []).append(op)
    shares = [
        KindShare(
            kind=kind,
            ops=len(members),
            params=sum(op.params for op in members),
            macs=sum(op.macs for op in members),
            params_share=sum(op.params for op in members) / params if params else 0.0,
            macs_share=sum(op.macs for op in members) / macs if macs else 0.0,
        )
        for kind, members in groups.items()
    ]
    return sorted(shares, key=lambda share: (-share.macs, -share.params, share.kind))


def dense_equivalent(ops: list[Op]) -> DenseEquivalent:
    """The model's cost with every depthwise → pointwise pair replaced by its dense conv."""
    replaced, pairs = model_formulas.dense_equivalent(ops)
    costs = [model_formulas.cost(op) for op in replaced]
    return DenseEquivalent(
        params=sum(cost.params for cost in costs),
        macs=sum(cost.macs for cost in costs),
        other_ops=sum(cost.other_ops for cost in costs),
        pairs=[
            PairReplaced(
                pair.depthwise,
                pair.pointwise,
                model_formulas.describe(pair.dense),
                model_formulas.cost(pair.dense).params,
                model_formulas.cost(pair.dense).macs,
            )
            for pair in pairs
        ],
    )


def _measure_latency(
    result: ModelResult,
    module: nn.Module,
    tensor: torch.Tensor,
    traced: Trace,
    rows: list[_Row],
    settings: LatencySettings,
    calibration: Calibration | None,
) -> None:
    if settings.tune_allocator:
        latency.tune_allocator()
    result.environment.allocator = latency.allocator_state()  # process-wide: an earlier call may have tuned it
    cases: dict[str, tuple[nn.Module, torch.Tensor]] = {"(model)": (module, tensor)}
    timed: dict[str, ModelLayerResult] = {}
    for row, layer in zip(rows, result.layers, strict=True):
        if row.module_name is not None and row.module_name in traced.inputs and row.module_name != "":
            key = f"layer {row.name}"
            cases[key] = (traced.modules[row.module_name], traced.inputs[row.module_name])
            timed[key] = layer
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using padding='same'")
        run = latency.measure_run(cases, settings, watched=["(model)"], reference=calibration)
    stats = run.stats
    result.latency = stats["(model)"]
    result.environment.contention = run.contention
    from convcost.cost import roofline

    itemsize = DType(result.environment.dtype).itemsize
    result.environment.calibration = calibration
    ops_of = {f"layer {row.name}": row.ops for row in rows}
    for key, layer in timed.items():
        layer.latency = stats[key]
        # one eager call per operation; a grouped spatial conv pays the grouped call (as compare's stages do)
        grouped = sum(isinstance(op, ConvOp) and roofline.is_grouped_call(op.groups, op.kernel) for op in ops_of[key])
        calls = len(layer.ops)
        overhead = None if calibration is None else roofline.overhead_s(calibration, grouped, calls - grouped)
        layer.roofline = roofline.analyse(
            layer.macs, layer.min_bytes(itemsize), layer.latency.shown_ms, calibration, calls, overhead
        )


def _calibration(settings: LatencySettings | None, device: str, dtype: DType) -> Calibration | None:
    """The cached calibration for a latency run, read before anything is measured (a broken cache stops it)."""
    if settings is None:
        return None
    from convcost.run.calibrate import cached

    return cached(device, dtype, settings.threads)


def matching_layers(result: ModelResult, pattern: str) -> list[ModelLayerResult]:
    """The layers whose name matches a glob (``block*``, ``features.1?``)."""
    return [layer for layer in result.layers if fnmatch.fnmatchcase(layer.name, pattern)]


def share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def is_import_path(source: str) -> bool:
    """``package.module:factory`` rather than a model file."""
    return ":" in source and not source.lower().endswith((".yaml", ".yml")) and not os.path.exists(source)


def evaluate_source(
    source: str,
    input_shape: str | None = None,
    batch: str | int | None = None,
    width_multiplier: str | float | None = None,
    size: str | None = None,
    depth: int | None = None,
    latency_settings: LatencySettings | None = None,
    threads: int = 1,
    dtype: str = "float32",
    device: str = "cpu",
) -> ModelResult:
    """Evaluate a model file or an import path with command-line style settings (strings are validated)."""
    from convcost.spec.compare import run_settings

    chosen_dtype, chosen_device = run_settings(dtype, device)
    previous_threads = torch.get_num_threads()
    try:
        if latency_settings is None:
            torch.set_num_threads(threads)
        return _evaluate_source(
            source, input_shape, batch, width_multiplier, size, depth, latency_settings, threads, chosen_dtype,
            chosen_device,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)  # a library leaves the process as it found it


def _evaluate_source(
    source: str,
    input_shape: str | None,
    batch: str | int | None,
    width_multiplier: str | float | None,
    size: str | None,
    depth: int | None,
    latency_settings: LatencySettings | None,
    threads: int,
    dtype: DType = DType.FLOAT32,
    device: str = "cpu",
) -> ModelResult:
    from convcost.errors import FieldIssue, SpecError
    from convcost.spec.compare import positive_int
    from convcost.spec.model import load_model

    if not is_import_path(source):
        wrong = [flag for flag, value in (("input", input_shape), ("depth", depth)) if value is not None]
        if wrong:
            raise SpecError(
                [FieldIssue((flag,), "is for import paths; a model file gives its own layers") for flag in wrong]
            )
        plan = load_model(source, width_multiplier=_text(width_multiplier), size=size, batch=_text(batch))
        return evaluate_plan(plan, source, latency_settings, dtype=dtype, device=device, threads=threads)
    issues: list[FieldIssue] = []
    for flag, value in (("width_multiplier", width_multiplier), ("size", size)):
        if value is not None:
            issues.append(FieldIssue((flag,), "is for model files; give an import path's input with --input"))
    shape: tuple[int, ...] = ()
    if input_shape is None:
        issues.append(FieldIssue(("input",), "required for an import path: the input CxHxW, e.g. 3x224x224"))
    else:
        try:
            shape = parse_input(input_shape)
        except ValueError as error:
            issues.append(FieldIssue(("input",), str(error)))
    batch_size = 1
    if batch is not None:
        try:
            batch_size = positive_int(batch)
        except ValueError as error:
            issues.append(FieldIssue(("batch",), str(error)))
    if issues:
        raise SpecError(issues)
    return evaluate_import(
        source, shape, batch_size, depth, latency_settings, dtype=dtype, device=device, threads=threads
    )


def _text(value: str | float | int | None) -> str | None:
    return None if value is None else str(value)
