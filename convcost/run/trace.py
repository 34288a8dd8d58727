"""Tracing a forward pass: every leaf module and every functional op between leaves becomes an operation.

Each leaf module type is registered (:mod:`convcost.run.modules`) with how it becomes an operation of
:mod:`convcost.cost.ops`, counted by formula from the shapes it saw. A module type with no formula is traced into:
the functional calls its ``forward`` makes (``F.linear``, ``@``, ``einsum``, attention, norms, adds, multiplies,
:mod:`convcost.run.functional`) are seen through a ``TorchFunctionMode`` and counted; a parameter of the model one
of them uses is its params. What is left is "not counted", with its parameters, never a silent zero: a module
with no children whose forward ran no op we know, a container whose parameters no op used, functional calls with
no formula. Hooks and modes are removed in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convcost.cost.ops import Op, Shape, UncountedOp
from convcost.cost.ops_nn import ElementwiseOp
from convcost.results.comparison import Check
from convcost.results.model import Call
from convcost.run.dispatch import AtenCounts, CounterFigures
from convcost.run.functional import (
    ELEMENTWISE,
    REDUCTIONS,
    UNCOUNTED,
    functional_op,
    operands,
    parameter_use,
    without_fast_paths,
)
from convcost.run.modules import _lookup, _stored_params, _uncounted, from_call

__all__ = ["Trace", "_stored_params", "matched", "trace", "without_fast_paths"]


@dataclass
class Trace:
    calls: list[Call]
    output_shape: Shape
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # first input of each captured module
    modules: dict[str, nn.Module] = field(default_factory=dict)
    never_called: list[str] = field(default_factory=list)  # "block.unused (Linear, 20 params)"
    output: Any = None  # what the forward pass returned
    counted: AtenCounts = field(default_factory=AtenCounts)  # both counters' figures for the whole forward pass
    unattributed: AtenCounts = field(default_factory=AtenCounts)  # the part of them outside every traced op
    shapes: dict[str, tuple[Shape, Shape | None]] = field(default_factory=dict)  # each module's own, first call


class _FunctionalOps(TorchFunctionMode):
    """Sees every torch function a container calls between its children (:meth:`_Tracer.functional`)."""

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
        name = getattr(func, "__name__", "")
        call = self.tracer.functional(name, args, kwargs or {}, output, figures.arithmetic)
        _claim(call, figures, counters)
        return output


def _claim(call: Call | None, figures: AtenCounts, counters: CounterFigures) -> None:
    """The counters' figures of a traced op go to its call; without one, to the scope around it."""
    if call is not None:
        call.flop_counter_flops = (call.flop_counter_flops or 0) + figures.flop_counter_flops
        call.ptflops_raw = (call.ptflops_raw or 0) + figures.ptflops_raw
        call.blind_to = tuple(sorted({*call.blind_to, *figures.blind}))
    else:
        counters.current().add(figures)


class _Tracer:
    def __init__(self, model: nn.Module, capture: set[str]) -> None:
        self.capture = capture
        self.leaf_depth = 0
        self.stack: list[str] = []  # the containers running, by the path they were called by
        self.objects: list[nn.Module] = []  # and the modules themselves
        self.module_calls: dict[str, int] = {}  # calls of each module, by its (first) name
        self.calls: list[Call] = []
        self.inputs: dict[str, torch.Tensor] = {}
        self.modules: dict[str, nn.Module] = {}
        self.call_counts: dict[str, int] = {}
        self.pending: dict[int, tuple[str, Shape, Op | None]] = {}
        self.container_starts: list[tuple[int, Shape]] = []  # calls recorded and input shape at each container
        self.handles: list[Any] = []
        self.leaves: dict[str, nn.Module] = {}  # modules with a formula
        self.childless: set[str] = set()  # modules with no formula and no children: traced into like containers
        self.entered: set[str] = set()  # every module the forward pass called
        self.unknown_in: set[str] = set()  # childless modules that ran arithmetic no formula knows
        self.consumed: set[int] = set()  # the parameters (by id) some op counted already
        self.used = 0  # the parameters' elements the functional op being recorded used first: its measured params
        self.opaque: set[str] = set()  # containers counted as one uncounted op (see _opaque_container)
        self.counters = CounterFigures()  # both counters' figures of each op, in the same pass
        self.seen: set[int] = set()
        self.shapes: dict[str, tuple[Shape, Shape | None]] = {}  # each module's input and output, first call
        self._find_leaves(model, "")

    def _find_leaves(self, module: nn.Module, name: str) -> None:
        if id(module) in self.seen:
            return  # a module shared by two parents (CoaT's position encoder) has its first name and one set of hooks
        self.seen.add(id(module))
        self.modules[name] = module
        children = list(module.named_children())
        if _lookup(module) is not None:
            self.leaves[name] = module
            return
        if not children:
            self.childless.add(name)
        for child_name, child in children:
            self._find_leaves(child, f"{name}.{child_name}" if name else child_name)

    def attach(self) -> None:
        for name, module in self.modules.items():
            leaf = name in self.leaves
            self.handles.append(module.register_forward_pre_hook(self._pre(name, leaf), with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post(name, leaf)))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def consume(self, tensor: Any) -> int:
        """A parameter's elements the first time an op uses it, else 0 (an activation, or counted already)."""
        if not isinstance(tensor, nn.Parameter) or id(tensor) in self.consumed:
            return 0
        self.consumed.add(id(tensor))
        self.used += tensor.numel()
        return tensor.numel()

    def unconsumed(self, module: nn.Module, recurse: bool = True) -> int:
        return sum(p.numel() for p in module.parameters(recurse=recurse) if id(p) not in self.consumed)

    def _pre(self, name: str, leaf: bool) -> Callable[[nn.Module, Any, dict[str, Any]], None]:
        def hook(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if name in self.capture and name not in self.inputs and first is not None and len(args) == 1:
                self.inputs[name] = first.detach()
            self.entered.add(name)
            self.counters.begin()  # a leaf's work is its op's; a container keeps what none of its ops claims
            shape = tuple(first.shape) if first is not None else ()
            path = self._called_as(name, module)
            if leaf:
                self.leaf_depth += 1
                convert = from_call(module)
                op = convert(self._module_label(path, peek=True), module, tuple(args), kwargs) if convert else None
                self.pending[id(module)] = (path, shape, op)
            else:
                self.stack.append(path)
                self.objects.append(module)
                self.container_starts.append((len(self.calls), shape))

        return hook

    def _called_as(self, name: str, module: nn.Module) -> str:
        """The path ``module`` is called by: its name, but for a module shared by two parents (one set of hooks,
        its first name), the running parent's path and the child's name there."""
        if self.objects:
            for child_name, child in self.objects[-1].named_children():
                if child is module:
                    return f"{self.stack[-1]}.{child_name}" if self.stack[-1] else child_name
        return name

    def _module_label(self, name: str, peek: bool = False) -> str:
        count = self.call_counts.get(name, 0) + 1
        if not peek:
            self.call_counts[name] = count
        return (name or "(model)") + (f"#{count}" if count > 1 else "")

    def _post(self, name: str, leaf: bool) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            measured = _first_shape(output)
            figures = self.counters.end()
            if not leaf:
                self.stack.pop()
                self.objects.pop()
                start, container_shape = self.container_starts.pop()
                self.shapes.setdefault(name, (container_shape, measured))
                opaque = None
                # a module that ran no op we know: not counted, unless it only moved data (Permute, a window
                # partition, StochasticDepth at inference) or, with children, has no parameters left
                unknown = name in self.unknown_in
                if unknown or (not self.calls[start:] and (figures.arithmetic or self.unconsumed(module))):
                    opaque = self._opaque_container(name, module, container_shape, measured, start)
                _claim(opaque, figures, self.counters)
                return
            self.leaf_depth -= 1
            path, shape, op = self.pending.pop(id(module))
            self.shapes.setdefault(name, (shape, measured))
            label = self._module_label(path)
            convert = _lookup(module)
            if op is None and shape and convert:  # (an op already: built from the call's arguments in the pre-hook)
                op = convert(label, module, shape)
            elif op is None and not shape:
                op = _uncounted(label, module, shape, f"{type(module).__name__} (no tensor input)", measured or ())
            elif op is None:
                op = _uncounted(label, module, shape, type(module).__name__)
            # a module called again applies the same weights: they are counted at its first call
            calls = self.module_calls[name] = self.module_calls.get(name, 0) + 1
            first_call = calls == 1
            # a weight an earlier op counted (a head tied to the token embedding) is not this module's again
            shared = sum(p.numel() for p in module.parameters() if id(p) in self.consumed) if first_call else 0
            stored = _stored_params(module) - shared if first_call else 0
            call = Call(op, measured, stored, name, path, not first_call, shared_params=shared)
            self.consumed.update(id(parameter) for parameter in module.parameters())
            weight = getattr(module, "weight", None) if op.weight_shape() is not None else None
            call.weight_shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None  # as applied
            _claim(call, figures, self.counters)
            self.calls.append(call)

        return hook

    def _opaque_container(
        self, name: str, module: nn.Module, shape: Shape, measured: Shape | None, start: int
    ) -> Call | None:
        """A module whose forward ran no op we know: one uncounted op with the parameters no op used. A module with
        no children always is one (its work is unknown); a container without parameters left is not (it only
        reshaped, or called what has no cost)."""
        params = self.unconsumed(module)
        if name not in self.childless and params == 0:
            return None
        label = self._module_label(name)
        detail = type(module).__name__ + ("" if name in self.childless else " (no formula, its children not called)")
        op = UncountedOp(label, shape, detail, params, measured or ())
        self.consumed.update(id(parameter) for parameter in module.parameters())
        self.opaque.add(name)
        call = Call(op, measured, params, name, name, self.call_counts[name] > 1)
        self.calls.insert(start, call)
        return call

    def functional(
        self, function: str, args: Any, kwargs: dict[str, Any], output: Any, arithmetic: bool = False
    ) -> Call | None:
        """The op a functional call between leaves performed, recorded as a call (None when it is not one); a
        parameter of the model the call read that its op did not count is a parameter use, recorded after it.
        A call with no formula that did arithmetic (``arithmetic``: an aten op that does more than move data ran)
        is not counted, never dropped."""
        first_output = output
        if isinstance(output, (tuple, list)):  # torch.split, unbind, max(dim): their first tensor
            first_output = next((item for item in output if isinstance(item, torch.Tensor)), None)
        if not isinstance(first_output, torch.Tensor):
            return None
        parent = self.stack[-1] if self.stack and self.stack[-1] else "(model)"
        owner = self.stack[-1] if self.stack else ""

        def label(short: str) -> str:
            return self._module_label(f"{parent}.{short}")

        self.used = 0
        shape = tuple(first_output.shape)
        op = None
        if output is first_output or function in REDUCTIONS:
            op = functional_op(function, tuple(args), kwargs, first_output, label, self.consume)
        first = next((item for item in args if isinstance(item, torch.Tensor)), None)
        first_shape = tuple(first.shape) if first is not None else ()
        known = function in UNCOUNTED  # MACs with no formula here: not counted, with its parameters
        if op is None and function in ELEMENTWISE and first is not None:  # an add or multiply by a number
            op = ElementwiseOp(label(function.strip("_")), first_shape, function.strip("_"), shape)
        elif op is None and not known and arithmetic and owner and owner in self.childless:
            self.unknown_in.add(owner)  # work no formula knows in a module of its own: the module is not counted
            return None
        elif op is None and (known or arithmetic):
            params = sum(self.consume(item) for item in operands(args, kwargs))
            detail = f"functional {function}" if known else f"functional {function} (no formula)"
            op = UncountedOp(label(function), first_shape, detail, params, shape)
        call = None
        if op is not None:
            call = Call(op, shape, self.used, None, owner)
            self.calls.append(call)
        self.used = 0
        parameters = parameter_use(function, tuple(args), kwargs, first_output, label, self.consume)
        if parameters is not None:
            use = Call(parameters, shape, self.used, None, owner)
            self.calls.append(use)
            call = call or use
        return call


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
        skipped = name in tracer.childless and name not in tracer.entered  # never called: named below
        if name in tracer.leaves or skipped or _under(name, tracer.opaque):
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False) if id(p) not in tracer.consumed)
        if own:
            op = UncountedOp(f"{name or '(model)'} (own parameters)", (), f"{type(module).__name__} parameters", own)
            calls.append(Call(op, (), own, None, name, real=False))
    never_called = [
        f"{name} ({type(module).__name__}, {_stored_params(module):,} params)"
        for name, module in tracer.modules.items()
        if (name in tracer.leaves or name in tracer.childless)
        and name not in tracer.entered
        and _stored_params(module)
        and not _under(name, tracer.opaque)
    ]
    output_shape = _first_shape(output) or ()
    counters = tracer.counters
    return Trace(calls, output_shape, tracer.inputs, tracer.modules, never_called, output, counters.total,
                 counters.unattributed, tracer.shapes)  # fmt: skip


def matched(planned: list[Op], traced: Trace, subject: str, what: str) -> tuple[list[Call | None], list[Check]]:
    """Each planned op's call when the forward pass called the planned ops in order; else none, and the check that
    says the built module is not the ``what`` planned."""
    kinds, built = [str(op.kind) for op in planned], [str(call.op.kind) for call in traced.calls]
    if built == kinds:
        return list(traced.calls), []
    return [None] * len(planned), [Check(subject, "operations built", " → ".join(kinds), " → ".join(built),
                                         f"the built module does not match the {what}")]  # fmt: skip
