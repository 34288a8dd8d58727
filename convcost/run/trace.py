"""Tracing a forward pass: every leaf module and every functional op between leaves becomes an operation.

Each leaf module type is registered with how it becomes an operation of :mod:`convcost.cost.ops` (counted by
formula from the shapes it saw). A leaf type with no formula is "not counted", with its parameters, never a
silent zero. Adds, adaptive pools and activations called functionally in a container's ``forward`` (a residual
``x + f(x)``) are seen through a ``TorchFunctionMode``; functional convs and matmuls there are listed as not
counted (the counter checks then show what they cost). Hooks and modes are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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
from convcost.results.comparison import Check
from convcost.results.model import Call
from convcost.run.dispatch import CounterFigures, Figures

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
_FUNCTIONAL_ACTIVATIONS = {"relu", "relu_", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu",
                           "leaky_relu"}  # fmt: skip
_FUNCTIONAL_UNCOUNTED = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                         "linear", "bilinear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "addmm",
                         "addmm_", "addbmm", "baddbmm", "addmv", "einsum", "tensordot", "scaled_dot_product_attention",
                         "multi_head_attention_forward"}  # fmt: skip


@dataclass
class Trace:
    calls: list[Call]
    output_shape: Shape
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # first input of each captured module
    modules: dict[str, nn.Module] = field(default_factory=dict)
    never_called: list[str] = field(default_factory=list)  # "block.unused (Linear, 20 params)"
    output: Any = None  # what the forward pass returned
    counted: Figures = field(default_factory=Figures)  # both counters' figures for the whole forward pass
    unattributed: Figures = field(default_factory=Figures)  # the part of them outside every traced op


class _FunctionalOps(TorchFunctionMode):
    """Sees adds, pools, activations and matmuls that a container calls between its children."""

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None) -> Any:
        if self.tracer.leaf_depth != 0:
            return func(*args, **(kwargs or {}))
        counters = self.tracer.counters
        counters.begin()
        try:
            output = func(*args, **(kwargs or {}))
        finally:
            figures = counters.end()
        call = self.tracer.functional(getattr(func, "__name__", ""), args, kwargs or {}, output)
        _claim(call, figures, counters)
        return output


def _claim(call: Call | None, figures: Figures, counters: CounterFigures) -> None:
    """The counters' figures of a traced op go to its call; without one, to the scope around it."""
    if call is not None:
        call.flop_counter_flops = (call.flop_counter_flops or 0) + figures.flop_counter_flops
        call.ptflops_raw = (call.ptflops_raw or 0) + figures.ptflops_raw
        call.blind_to = tuple(sorted({*call.blind_to, *figures.blind}))
    else:
        counters.current().add(figures)


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
        self.counters = CounterFigures()  # both counters' figures of each op, in the same pass
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
            self.counters.begin()  # a leaf's work is its op's; a container keeps what none of its ops claims
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
            figures = self.counters.end()
            if not leaf:
                self.stack.pop()
                start, container_shape = self.container_starts.pop()
                opaque = None
                if not any(call.module_name is not None for call in self.calls[start:]):
                    opaque = self._opaque_container(name, module, container_shape, measured, start)
                _claim(opaque, figures, self.counters)
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
            call = Call(op, measured, _stored_params(module) if count == 1 else 0, name, name, count > 1)
            weight = module.weight if isinstance(op, ConvOp) else None
            if isinstance(weight, torch.Tensor):
                call.weight_shape = tuple(weight.shape)  # the weight applied (a parametrization computes it)
            _claim(call, figures, self.counters)
            self.calls.append(call)

        return hook

    def _opaque_container(
        self, name: str, module: nn.Module, shape: Shape, measured: Shape | None, start: int
    ) -> Call | None:
        """A container whose forward called none of its modules did its work functionally: one uncounted op."""
        if _stored_params(module) == 0:
            return None  # e.g. only adds and activations: the functional ops recorded already say what it did
        count = self.call_counts[name] = self.call_counts.get(name, 0) + 1
        label = (name or "(model)") + (f"#{count}" if count > 1 else "")
        params = _stored_params(module) if count == 1 else 0
        detail = f"{type(module).__name__} (no formula, its children not called)"
        op = UncountedOp(label, shape, detail, params, measured or ())
        self.opaque.add(name)
        call = Call(op, measured, op.params, name, name, count > 1)
        self.calls.insert(start, call)
        return call

    def functional(self, function: str, args: Any, kwargs: dict[str, Any], output: Any) -> Call | None:
        """The op a functional call between leaves performed, recorded as a call (None when it is not one)."""
        if not isinstance(output, torch.Tensor):
            return None
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
        if op is None:
            return None
        call = Call(op, shape, 0, None, self.stack[-1] if self.stack else "")
        self.calls.append(call)
        return call

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


def trace(
    model: nn.Module, args: torch.Tensor | tuple[Any, ...], kwargs: dict[str, Any] | None = None,
    capture: set[str] | None = None,
) -> Trace:  # fmt: skip
    """Run ``model(*args, **kwargs)`` once (``args`` one tensor or a tuple), recording every leaf call and every
    functional op between leaves."""
    positional = (args,) if isinstance(args, torch.Tensor) else args
    tracer = _Tracer(model, capture or set())
    tracer.attach()
    try:
        with torch.no_grad(), without_fast_paths(), tracer.counters, _FunctionalOps(tracer):
            output = model(*positional, **(kwargs or {}))
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
    counters = tracer.counters
    return Trace(calls, output_shape, tracer.inputs, tracer.modules, never_called, output, counters.total,
                 counters.unattributed)  # fmt: skip


def matched(planned: list[Op], traced: Trace, subject: str, what: str) -> tuple[list[Call | None], list[Check]]:
    """Each planned op's call when the forward pass called the planned ops in order; else none, and the check that
    says the built module is not the ``what`` planned."""
    kinds, built = [str(op.kind) for op in planned], [str(call.op.kind) for call in traced.calls]
    if built == kinds:
        return list(traced.calls), []
    return [None] * len(planned), [Check(subject, "operations built", " → ".join(kinds), " → ".join(built),
                                         f"the built module does not match the {what}")]  # fmt: skip
