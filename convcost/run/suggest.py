"""``convcost suggest`` and ``convcost convert``: a model loaded as ``convcost model`` loads it, every candidate
conv replaced (to know its weight error), sorted by MAC saving, optionally timed before and after. Nothing here
prints."""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from convcost.errors import UsageError
from convcost.results.convert import ConvertResult
from convcost.run import latency, usercode
from convcost.run.context import RunContext
from convcost.run.convert import Seen, convert_spec, example_input
from convcost.run.latency import LatencySettings
from convcost.spec.convert import ConvertSpec, parse_convert
from convcost.spec.files import write_atomic
from convcost.spec.model import ModelSource


def load_model_and_input(source: str, checked: ModelSource) -> tuple[nn.Module, tuple[int, ...]]:
    """MODEL, as :func:`convcost.spec.model.model_source` validated it before torch, as a module (a model file's
    built from stock modules, an import path's factory called with the ``--arg`` keywords) and the input shape."""
    from convcost.run.model import load_factory
    from convcost.run.model_build import model_module

    plan, shape, arguments = checked
    return (model_module(plan) if plan is not None else load_factory(source, arguments=arguments)), shape


def suggest(
    model: nn.Module,
    inputs: torch.Tensor | tuple[int, ...],
    to: str = "separable",
    multiplier: int | None = None,
    rank: int | None = None,
    min_saving: float | str | None = None,
    latency: LatencySettings | None = None,
    threads: int = 1,
) -> ConvertResult:
    """What :func:`convcost.convert` would do to every candidate, sorted by MAC saving (``model`` untouched;
    ``.model`` has every candidate replaced); ``latency``: time each layer before and after. Runs on ``threads``."""
    spec = parse_convert(to, multiplier, rank, min_saving, allow_dense=False)
    with RunContext.of("float32", "cpu", threads, latency).applied():
        return suggest_spec(model, inputs, spec, latency, threads)


def suggest_spec(
    model: nn.Module,
    inputs: torch.Tensor | tuple[int, ...],
    spec: ConvertSpec,
    settings: LatencySettings | None = None,
    threads: int = 1,
    source: str = "",
) -> ConvertResult:
    """Every candidate conv with its cost now and after, its weight error, and (with ``settings``) its latency
    before and after; sorted by MAC saving. ``selected``: the layers reaching ``spec.min_saving``."""
    result, seen, replacements = _run(model, inputs, spec, source, keep_inputs=settings is not None, every=True)
    if settings is not None:
        modules = (("before", dict(model.named_modules())), ("after", replacements))
        timed = [layer.name for layer in result.layers if layer.name in seen.inputs]
        cases = {f"{when} {name}": (of[name], seen.inputs[name]) for name in timed for when, of in modules}
        pairs = [(f"before {name}", f"after {name}") for name in timed]
        if cases:  # timed inside the run context (suggest's, or the command's), which tunes the allocator
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Using padding='same'")
                run = latency.measure_run(cases, settings, pairs=pairs, threads=threads)
            for layer in result.layers:
                layer.latency_before = run.stats.get(f"before {layer.name}")
                layer.latency_after = run.stats.get(f"after {layer.name}")
    result.layers.sort(key=lambda layer: -((layer.macs_before or 0) - (layer.macs_after or 0)))
    return result


def convert_and_save(
    model: nn.Module,
    inputs: tuple[int, ...],
    spec: ConvertSpec,
    output: Path,
    select: Collection[str] | None = None,
    source: str = "",
) -> ConvertResult:
    """Convert the selected layers and save the converted model to ``output`` with :func:`torch.export.save`: a
    program that loads with ``torch.export.load(path).module()`` and needs nothing of convcost (nor of the model's
    own code), at the input shape it was exported with."""
    result, _, _ = _run(model, inputs, spec, source, select=select)
    result.layers = [layer for layer in result.layers if layer.selected]
    result.converted = True
    if not result.layers:
        raise UsageError(f"{source}: no layer to convert with --to {spec.to.value}"
                         + (f" (refused: {result.refused[0].name}: {result.refused[0].reason})"
                            if result.refused else ""))  # fmt: skip
    save(result.model, inputs, output)
    result.notes.append(f"saved to {output} (torch.export): load it with torch.export.load({str(output)!r}).module()")
    return result


def save(model: nn.Module, inputs: tuple[int, ...], output: Path) -> None:
    """``torch.export`` the model (in eval mode) on a seeded input of ``inputs`` and save it atomically
    (:func:`convcost.spec.files.write_atomic`: a failed save never leaves half a model)."""
    model.eval()
    tensor = example_input(model, inputs)
    try:
        program = torch.export.export(model, (tensor,))
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"-o/--output: torch.export cannot capture the converted model: {first}") from None
    buffer = io.BytesIO()  # torch.export.save warns about any file name not ending in .pt2: a buffer it accepts
    torch.export.save(program, buffer)
    try:
        write_atomic(output, buffer.getvalue())
    except OSError as error:
        raise UsageError(f"-o/--output: cannot write {output}: {error.strerror or error}") from None


def _run(
    model: nn.Module,
    inputs: torch.Tensor | tuple[int, ...],
    spec: ConvertSpec,
    source: str,
    select: Collection[str] | None = None,
    keep_inputs: bool = False,
    every: bool = False,
) -> tuple[ConvertResult, Seen, dict[str, nn.Module]]:
    with usercode.guard(source or "model", "forward pass"):
        result, seen, replacements = convert_spec(model, inputs, spec, select, every=every, keep_inputs=keep_inputs)
    result.source = source
    return result, seen, replacements
