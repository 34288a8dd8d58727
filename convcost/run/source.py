"""A model's source, a model file or an import path, evaluated with command-line style settings. No torch here:
``--formula-only`` stops at the plan's figures (:mod:`convcost.run.network`); a measured run imports
:mod:`convcost.run.model`, and torch with it, only then."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from convcost.cost.conventions import Convention
from convcost.errors import FieldIssue, SpecError, UsageError, gathered
from convcost.results.model import ModelResult
from convcost.run import network
from convcost.run.context import RunContext, threads_for
from convcost.spec.compare import check_meta, positive_int
from convcost.spec.inputs import Inputs, combined, parse_arguments, parse_inputs
from convcost.spec.inputs_file import load_inputs
from convcost.spec.model import load_model
from convcost.spec.source import is_import_path

if TYPE_CHECKING:
    from convcost.run.context import LatencySettings


def evaluate_source(
    source: str,
    input_shape: str | list[str] | tuple[str, ...] | None = None,
    batch: str | int | None = None,
    width_multiplier: str | float | None = None,
    size: str | None = None,
    depth: int | None = None,
    latency_settings: LatencySettings | None = None,
    threads: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    formula_only: bool = False,
    meta: bool = False,
    convention: str = "convcost",
    inputs_file: str | None = None,
    arguments: list[str] | tuple[str, ...] = (),
) -> ModelResult:
    """Evaluate a model file or an import path with command-line style settings (strings are validated).

    ``formula_only``: a model file by formula alone, never importing torch (an import path is refused: it is
    counted by running it); latency settings are then ignored, as ``compare --formula-only`` ignores them.
    ``threads``: default 1 (or the deprecated ``latency_settings.threads``); dtype, device and threads are
    validated once, into the run context. ``meta``: count on the meta device (no latency; see
    :func:`convcost.run.model.evaluate_import`). ``convention``: the MAC convention of the figures, convcost (ours)
    or fvcore (:mod:`convcost.cost.conventions`). ``input_shape``: one ``--input SHAPE[:DTYPE]`` or several (the
    forward's positional inputs); ``inputs_file``: ``--inputs FILE`` (see :mod:`convcost.spec.inputs_file`);
    ``arguments``: ``--arg NAME=VALUE`` texts, the factory's keyword arguments.
    """
    chosen_convention = parse_convention(convention)
    texts = [input_shape] if isinstance(input_shape, str) else list(input_shape or [])
    chosen = threads_for(threads, latency_settings, 1)
    context = RunContext.of(dtype, device, chosen, None if formula_only else latency_settings)
    if formula_only and meta:
        raise UsageError("--meta: --formula-only runs nothing already: drop one of them")
    with contextlib.ExitStack() as applied:  # torch's settings only around a run: a library leaves them as they were
        if not is_import_path(source):
            given = (("input", texts or None), ("inputs", inputs_file), ("arg", arguments or None), ("depth", depth))
            wrong = [flag for flag, value in given if value is not None]
            if wrong:
                raise SpecError(
                    [FieldIssue((flag,), "is for import paths; a model file gives its own layers") for flag in wrong]
                )
            plan = load_model(source, width_multiplier=_text(width_multiplier), size=size, batch=_text(batch))
            if formula_only:
                return network.estimate_plan(plan, source, context.environment(measured=False), chosen_convention)
            check_meta(meta, context.latency is not None, context.device)
            applied.enter_context(context.applied())
            from convcost.run.model import evaluate_plan

            return evaluate_plan(plan, source, context, meta=meta, convention=chosen_convention)
        issues: list[FieldIssue] = []
        for flag, value in (("width_multiplier", width_multiplier), ("size", size)):
            if value is not None:
                issues.append(FieldIssue((flag,), "is for model files; give an import path's input with --input"))
        if not texts and inputs_file is None:
            issues.append(FieldIssue(("input",), "required for an import path: the input CxHxW, e.g. 3x224x224"))
        flags: Inputs | None = gathered(issues, None, lambda: parse_inputs(texts)) if texts else None
        factory_arguments: dict[str, Any] = gathered(issues, {}, lambda: parse_arguments(arguments))
        batch_size = 1 if batch is None else gathered(issues, 1, lambda: positive_int(batch), ("batch",))
        if issues:
            raise SpecError(issues)
        inputs = combined(flags, load_inputs(inputs_file) if inputs_file is not None else None)
        if formula_only:
            raise UsageError(f"{source}: --formula-only needs a model file: an import path is counted by running it")
        check_meta(meta, context.latency is not None, context.device)
        applied.enter_context(context.applied())
        from convcost.run.model import evaluate_import

        return evaluate_import(source, None, batch_size, depth, context, meta=meta, inputs=inputs,
                               arguments=factory_arguments, convention=chosen_convention)  # fmt: skip


def parse_convention(value: str | Convention, flag: str = "convention") -> Convention:
    """The MAC convention named by ``value``; a SpecError naming ``flag`` when there is none of that name."""
    try:
        return Convention(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(item.value for item in Convention)
        raise SpecError([FieldIssue((flag,), f"{value!r} is not a MAC convention: choose {choices}")]) from None


def _text(value: str | float | int | None) -> str | None:
    return None if value is None else str(value)
