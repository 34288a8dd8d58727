"""Whole models: per-layer costs by formula, checked against a real forward pass and both MAC counters.

A model file (:mod:`convcost.spec.model`) is planned into operations by formula, built from stock modules
(:mod:`convcost.run.model_build`) and run, every planned operation checked against the module the pass called; an
import path ``package.module:factory`` is traced (:mod:`convcost.run.trace`), each leaf module an operation counted
from the shapes it saw. Both are then counted by :mod:`convcost.run.network`, which ``--formula-only`` uses alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from convcost.cost import ops
from convcost.cost.conventions import Convention
from convcost.cost.ops import ConvOp
from convcost.cost.roofline import Calibration
from convcost.errors import UsageError
from convcost.results.comparison import Check
from convcost.results.model import ModelLayerResult, ModelResult
from convcost.run import build, latency, network, usercode
from convcost.run.context import RunContext
from convcost.run.counting import count_and_check
from convcost.run.inputs import Arguments, described, first_tensor, output_shapes, shape_text, timed_case
from convcost.run.measure import check_device, require_memory
from convcost.run.model_build import model_module
from convcost.run.network import Row
from convcost.run.trace import Trace, _stored_params, _Tracer, matched, trace
from convcost.spec.bounds import MEMORY_SHARE, over_share
from convcost.spec.compare import DType, check_meta
from convcost.spec.inputs import Inputs, InputSpec
from convcost.spec.layers import ModelPlan


def evaluate_plan(
    plan: ModelPlan,
    source: str,
    context: RunContext | None = None,
    meta: bool = False,
    convention: Convention | str = Convention.CONVCOST,
) -> ModelResult:
    """Build, run and count a planned model file, where and how ``context`` says (default: float32 on the CPU,
    untimed, on torch's thread count as it is); the environment is recorded from the context. ``meta``: build and
    run it on the meta device (shapes only, nothing computed or allocated; see :func:`on_meta`). ``convention``:
    the MAC convention of the figures (:mod:`convcost.cost.conventions`); the counters check ours either way."""
    context, calibration = _started(context, meta)
    dtype, device, latency_settings = context.dtype, context.device, context.latency
    shape = plan.input_shape
    if meta:
        with on_meta():
            module = build.prepare(model_module(plan), dtype, "meta")
        tensor = torch.empty(shape, device="meta", dtype=build.TORCH_DTYPES[dtype])
    else:
        check_plan_memory(plan, source, dtype.itemsize)
        module = build.prepare(model_module(plan), dtype, device)
        tensor = build.input_tensor(shape[1], (shape[2], shape[3]), shape[0], dtype, device)
    capture = {str(index) for index in range(len(plan.layers))} if latency_settings else set()
    with on_meta(meta):
        traced = trace(module, tensor, None, capture)
    calls, found = matched(plan.ops, traced, "model", "plan")
    rows = network.plan_rows(plan, calls)
    result = _evaluate(plan.name or source, source, module, ((tensor,), {}), traced, rows, found,
                       network.plan_settings(plan), context, calibration=calibration,
                       convention=convention)  # fmt: skip
    return _marked_meta(result) if meta else result


def check_context(meta: bool, context: RunContext) -> None:
    """UsageError for a device that is not there, or --meta with what needs a real run (latency, another device)."""
    check_meta(meta, context.latency is not None, context.device)
    check_device(context.device)


def _started(context: RunContext | None, meta: bool) -> tuple[RunContext, Calibration | None]:
    """The run's context (by default as :func:`evaluate_plan` says), checked, and its calibration."""
    context = context or RunContext(threads=torch.get_num_threads())
    check_context(meta, context)
    return context, _calibration(context)


@contextlib.contextmanager
def on_meta(meta: bool = True) -> Iterator[None]:
    """Tensors made without a device (a factory's weights, a forward's ``torch.arange``) are made on meta: shapes
    from torch's meta kernels, nothing computed or allocated (nothing changes when not ``meta``)."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        yield


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device, the user's instance untouched: its parameters and buffers are not
    copied but replaced by meta tensors of their shapes (so the copy costs no memory)."""
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(model, memo)


def _marked_meta(result: ModelResult) -> ModelResult:
    result.environment.device = "meta"
    result.environment.device_name = "meta (shapes only: nothing computed)"
    result.notes.append("counted on the meta device (--meta): shapes from torch's meta kernels, nothing computed")
    return result


def load_factory(path: str, meta: bool = False, arguments: dict[str, Any] | None = None) -> nn.Module:
    """Import ``package.module:factory`` and call it with ``arguments`` (``--arg``) as keywords (``meta``: the call
    under ``torch.device("meta")``, the import not, so the module's own tensors stay real); raises UsageError.

    Everything the user's code does runs inside :func:`convcost.run.usercode.guard`: an exception, ``sys.exit`` or a
    KeyboardInterrupt it raises is an error naming ``path``, and what it prints goes to stderr.
    """
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
                from convcost.spec.yamlio import suggest

                hint = suggest(part, [name for name in dir(imported) if not name.startswith("_")])
                raise UsageError(
                    f"{path}: {module_name} has no attribute {part!r}" + (f"; did you mean '{hint}'?" if hint else "")
                )
            target = getattr(target, part)
    if isinstance(target, nn.Module):
        if arguments:
            raise UsageError(f"--arg: {path} is a module instance, not a factory to call with arguments")
        return target
    if not callable(target):
        raise UsageError(f"{path}: {attribute} is not callable")
    # the factory may import the user's other modules lazily: the working directory stays on sys.path for it
    call = f"{attribute}({', '.join(f'{name}={value!r}' for name, value in (arguments or {}).items())})"
    with usercode.guard(path, f"calling {call}"), usercode.working_directory_on_path(), on_meta(meta):
        model = target(**(arguments or {}))
    if not isinstance(model, nn.Module):
        raise UsageError(f"{path}: {attribute}() returned {type(model).__name__}, not an nn.Module")
    return model


def evaluate_import(
    path: str,
    input_shape: tuple[int, ...] | None = None,
    batch: int = 1,
    depth: int | None = None,
    context: RunContext | None = None,
    model: nn.Module | None = None,
    meta: bool = False,
    convention: Convention | str = Convention.CONVCOST,
    inputs: Inputs | None = None,
    arguments: dict[str, Any] | None = None,
) -> ModelResult:
    """Count a model from ``package.module:factory`` (called with ``arguments`` as keywords) on its ``inputs``
    (or one float input of ``input_shape``), each without the batch, where and how ``context`` says (as for
    :func:`evaluate_plan`). ``meta``: on the meta device, the factory called under ``torch.device("meta")`` (a
    given ``model`` is copied there, never moved: see :func:`meta_copy`)."""
    from convcost.run import inputs as made

    context, calibration = _started(context, meta)
    dtype, device = context.dtype, context.device
    if inputs is None:
        if input_shape is None:
            raise UsageError(f"{path}: no input: give input_shape or inputs")
        inputs = Inputs((InputSpec(tuple(input_shape)),))
    shape_text = ", ".join(f"{batch}×{spec.describe()}" for _, spec in inputs.named())
    if not meta:
        # the layers' outputs are unknown before the forward pass: refuse at least an input that cannot fit
        require_memory(
            made.input_bytes(inputs, batch, dtype),
            f"{path}: input",
            f"the input {shape_text} alone",
            "use a smaller --input or --batch",
        )
    loaded = model if model is not None else load_factory(path, meta, arguments)
    where = "meta" if meta else device
    with usercode.guard(path, f"{'copying' if meta else 'moving'} the model to {where} {dtype}"):
        module = build.prepare(meta_copy(loaded) if meta and model is not None else loaded, dtype, where)
    tensors = made.make(inputs, batch, dtype, where)
    settings: dict[str, Any] = {**inputs.settings(batch), "batch": batch, "depth": depth}
    if arguments:
        settings["arguments"] = arguments
    return run_module(path, path.rpartition(":")[2] or path, loaded, module, tensors, settings, depth, context,
                      meta, calibration, convention)  # fmt: skip


def run_module(
    path: str,
    name: str,
    loaded: nn.Module,
    module: nn.Module,
    tensors: Arguments,
    settings: dict[str, Any],
    depth: int | None,
    context: RunContext,
    meta: bool,
    calibration: Calibration | None = None,
    convention: Convention | str = Convention.CONVCOST,
) -> ModelResult:
    """Trace ``module`` (prepared from the user's ``loaded``) on its arguments, count and time it (MACs by
    ``convention``)."""
    capture = set(_Tracer(module, set()).modules) if context.latency is not None else set()
    with usercode.guard(path, f"forward pass on input {described(tensors)}"), on_meta(meta):
        traced = trace(module, tensors[0], tensors[1], capture)
    rows = _group(traced, depth)
    # counting and timing run the model's forward again, inside convcost's own code: an ordinary exception is
    # the model's when its traceback passes through the model's source
    # the user's code: the import path's package and every module class's package, as folders and files
    names = {path.partition(":")[0], *(type(child).__module__ for child in loaded.modules())}
    modules = [sys.modules.get(name) for name in names if name.partition(".")[0] not in ("torch", "convcost")]
    roots = tuple(sorted({root for module in modules if module is not None for root in usercode.source_roots(module)}))
    with usercode.guard(path, "counting or timing the forward pass", only_if_user_frames=roots):
        result = _evaluate(name, path, module, tensors, traced, rows, [], settings, context, imported=True,
                           calibration=calibration, convention=convention)  # fmt: skip
    return _marked_meta(result) if meta else result


def _group(traced: Trace, depth: int | None) -> list[Row]:
    """Rows of the table: one per operation, or (``depth``) one per module ``depth`` levels down."""
    if depth is not None:
        return _group_by_module(traced, depth)
    rows: list[Row] = []
    used: dict[str, int] = {}  # row names key a check's per-layer limits: a module met again later is name#2
    for call in traced.calls:
        key = call.op.name
        if call.module_name is not None and not call.reused:
            key = call.module_name or key
        kind = type(traced.modules[call.module_name]).__name__ if call.module_name is not None else str(call.op.kind)
        count = used[key] = used.get(key, 0) + 1
        name = key if count == 1 else f"{key}#{count}"
        rows.append(Row(name, kind, [call.op], [call], key if key in traced.inputs else None))
    return rows


OWN_OPS = "(own ops)"


def _group_by_module(traced: Trace, depth: int) -> list[Row]:
    """One row per module ``depth`` levels down, in the order of its first op, with every op under it wherever in
    the pass it was recorded (its functional ops, its own parameters, a second call) and the module's own input
    and output shapes. An op in no module that deep is in its own module's row: a leaf module less deep is a row
    as it is; a container's functional ops and own parameters outside its children that deep are the row
    ``container (own ops)`` (``(model) (own ops)`` for the model's), which is not timed alone."""
    rows: dict[str, Row] = {}
    for call in traced.calls:
        parts = call.owner.split(".") if call.owner else []
        module: str | None = ".".join(parts[:depth]) if len(parts) >= depth else None
        if module is None and call.module_name is not None and call.owner:
            module = call.owner  # a leaf (or an opaque container) less deep than depth, by the path it was called by
        key = module if module is not None else f"{call.owner or '(model)'} {OWN_OPS}"
        row = rows.get(key)
        if row is None:
            known = traced.modules.get(module or "") or traced.modules[call.module_name or ""]  # a shared one: its own
            kind = type(known).__name__ if module is not None else "functional"
            timed = module if module is not None and module in traced.inputs else None
            row = rows[key] = Row(key, kind, [], [], timed, traced.shapes.get(module) if module else None)
        row.ops.append(call.op)
        row.measured.append(call)
        if module is None and call.real:  # own ops: from the first one's input to the last one's output
            first = row.shapes[0] if row.shapes else call.op.input_shape
            row.shapes = (first, call.output_shape)
    return list(rows.values())


def _evaluate(
    name: str,
    source: str,
    module: nn.Module,
    arguments: Arguments,
    traced: Trace,
    rows: list[Row],
    found: list[Check],
    settings: dict[str, Any],
    context: RunContext,
    imported: bool = False,
    calibration: Calibration | None = None,
    convention: Convention | str = Convention.CONVCOST,
) -> ModelResult:
    from convcost.cost.roofline import is_grouped_call
    from convcost.results.roofline import line

    first = first_tensor(arguments)
    result = network.network(name, source, tuple(first.shape) if first is not None else (), rows,
                             context.environment(), settings, convention=convention)  # fmt: skip
    total = result.total
    total.params_measured = _stored_params(module)
    last_measured = network.outputs(rows, result.layers)[1]
    # rows by module (--depth) are in the order of their first op: the output is the last op the pass ran
    of_call = {id(call): op for row, layer in zip(rows, result.layers, strict=True)
               for call, op in zip(row.measured, layer.ops, strict=True) if call is not None}  # fmt: skip
    last = next((of_call[id(call)] for call in reversed(traced.calls) if call.real and id(call) in of_call), None)
    if last is not None:
        result.output_shape, last_measured = last.output_shape, last.output_shape_measured
    shapes = output_shapes(traced.output)
    output_shape = traced.output_shape
    if [path for path, _ in shapes] != ["output"]:  # a tuple, a dict, a dataclass, nested: every tensor recorded
        result.outputs = shapes
        listed = ", ".join(f"{path} {shape_text(shape)}" for path, shape in shapes) or "no tensor"
        result.notes.append(f"the model's outputs: {listed}")
        known = [shape for _, shape in shapes]
        output_shape = last_measured if last_measured in known else (known[0] if known else ())
    result.output_shape_measured = output_shape
    expected_output = result.output_shape
    if imported and last_measured != output_shape:
        # the model's forward changed its last traced op's output with something not traced (x.sum(), a view):
        # the ops' own shape checks stand, and there is no formula for the rest
        expected_output = output_shape
        result.notes.append(
            f"the model's output {shape_text(output_shape)} is not its last traced operation's "
            f"({shape_text(last_measured or ())}): something untraced (a view, a reduction) came after it"
        )
    never_called = ", ".join(traced.never_called)
    params_quantity = "params" + (f" (never called, so not counted: {never_called})" if never_called else "")
    figures = [("output shape", expected_output, output_shape),
               (params_quantity, total.params, total.params_measured)]  # fmt: skip
    pairs = [pair for row, layer in zip(rows, result.layers, strict=True)
             for pair in zip(row.measured, layer.ops, strict=True)]  # fmt: skip
    counted, total.macs_flop_counter, total.ptflops_raw = count_and_check(
        traced, "model", pairs, figures, network.uncounted_note(result.ops)
    )
    total.macs_ptflops = total.ptflops_raw - total.bias_adds
    result.checks = found + counted
    timing = context.latency
    if timing is None:
        return result
    cases: dict[str, tuple[nn.Module, torch.Tensor]] = {"(model)": timed_case(module, arguments)}
    timed: dict[str, ModelLayerResult] = {}
    for row, layer in zip(rows, result.layers, strict=True):
        if row.module_name is not None and row.module_name in traced.inputs and row.module_name != "":
            key = f"layer {row.name}"
            cases[key] = (traced.modules[row.module_name], traced.inputs[row.module_name])
            timed[key] = layer
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using padding='same'")
        run = latency.measure_run(cases, timing, watched=["(model)"], reference=calibration, threads=context.threads)
    stats = run.stats
    result.latency = stats["(model)"]
    result.environment.contention = run.contention
    itemsize = DType(result.environment.dtype).itemsize
    result.environment.calibration = calibration
    ops_of = {f"layer {row.name}": row.ops for row in rows}
    for key, layer in timed.items():
        layer.latency = stats[key]
        # one eager call per operation; a grouped spatial conv pays the grouped call (as compare's stages do)
        grouped = sum(isinstance(op, ConvOp) and is_grouped_call(op.groups, op.kernel) for op in ops_of[key])
        layer.roofline = line(layer.macs, layer.min_bytes(itemsize), layer.latency.shown_ms, calibration,
                              len(layer.ops), grouped)  # fmt: skip
    return result


def _calibration(context: RunContext) -> Calibration | None:
    """The cached calibration for a latency run, read before anything is measured (a broken cache stops it)."""
    if context.latency is None:
        return None
    from convcost.run.cache import cached  # looked up when called: tests replace it

    return cached(context.device, context.dtype, context.threads)


def check_plan_memory(plan: ModelPlan, source: str, itemsize: int) -> None:
    """UsageError before anything is allocated when the input and every operation's output cannot fit in memory;
    it names the field that made the network this large (see :func:`memory_culprit`)."""
    outputs = math.prod(plan.input_shape) + sum(math.prod(ops.output_shape(op)) for op in plan.ops)
    weights = sum(ops.cost(op).params for op in plan.ops)
    available = over_share((outputs + weights) * itemsize)
    if available is None:
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
    by_size = ("input.size", "×".join(str(value) for value in plan.input_shape[2:]))
    largest, weight, where = None, False, None
    biggest = math.prod(plan.input_shape) // batch
    for layer in plan.layers:
        for op in layer.ops:
            for size, is_weight in ((math.prod(ops.output_shape(op)) // batch, False),
                                    (ops.cost(op).params, True)):  # fmt: skip
                if size > biggest:
                    biggest, largest, weight, where = size, op, is_weight, layer
    if largest is None or where is None:  # the input itself
        return ("input.channels", str(channels)) if channels > math.prod(plan.input_shape[2:]) else by_size
    shape = ops.output_shape(largest)
    pixels = math.prod(shape[2:]) if len(shape) > 2 else 1
    if not weight and pixels >= shape[1]:
        return by_size
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
