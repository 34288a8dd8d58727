"""Layer kinds: each expands a layer's options into conv stages, in a registry of pure functions.

Adding a kind means one expander here (plus its tests); formulas, building and counting are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from convcost.cost import formulas, ops
from convcost.cost.formulas import ConvStage, Pair
from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds
from convcost.spec.compare import CompareSpec, LayerKind, LayerOptions, issues_from_validation

Expander = Callable[[LayerOptions], list[ConvStage]]
_EXPANDERS: dict[LayerKind, Expander] = {}


def register_kind(kind: LayerKind) -> Callable[[Expander], Expander]:
    """Register the expander of a layer kind; registering a kind twice is a programming error."""

    def decorate(function: Expander) -> Expander:
        if kind in _EXPANDERS:
            raise RuntimeError(f"layer kind {kind} is already registered")
        _EXPANDERS[kind] = function
        return function

    return decorate


def _stage(options: LayerOptions, name: str, **values: object) -> ConvStage:
    """A stage with the layer's bias/norm/act, then the user's per-stage override applied."""
    base: dict[str, object] = {"bias": options.bias, "norm": options.norm, "act": options.act, **values}
    stage = ConvStage(name=name, **base)  # type: ignore[arg-type]
    override = options.override(name)
    if override is not None:
        changes = override.model_dump(exclude_none=True)
        stage = replace(stage, **changes, notes=(*stage.notes, f"overridden: {_describe(changes)}"))
    return stage


def _describe(changes: dict[str, object]) -> str:
    def text(value: object) -> str:
        if isinstance(value, tuple):
            return str(value[0]) if len(set(value)) == 1 else "x".join(str(part) for part in value)
        return str(value)

    return ", ".join(f"{key}={text(value)}" for key, value in changes.items())


def _spatial_stage(options: LayerOptions, name: str, cout: int, groups: int, shared: bool = False) -> ConvStage:
    """A stage with the layer's own R×S kernel, stride, padding and dilation (all but the 1×1 and R×1/1×S ones)."""
    spatial = {key: getattr(options, key) for key in ("kernel", "stride", "padding", "dilation")}
    return _stage(options, name, cin=options.cin, cout=cout, groups=groups, shared=shared, **spatial)


def _depthwise(options: LayerOptions, name: str, shared: bool = False) -> ConvStage:
    return _spatial_stage(options, name, options.multiplier * options.cin, options.cin, shared)


@register_kind(LayerKind.DENSE)
def dense(options: LayerOptions) -> list[ConvStage]:
    return [_spatial_stage(options, "dense", options.cout, 1)]


@register_kind(LayerKind.DEPTHWISE)
def depthwise(options: LayerOptions) -> list[ConvStage]:
    return [_depthwise(options, "depthwise")]


@register_kind(LayerKind.SHARED)
def shared(options: LayerOptions) -> list[ConvStage]:
    return [_depthwise(options, "shared", shared=True)]


@register_kind(LayerKind.POINTWISE)
def pointwise(options: LayerOptions) -> list[ConvStage]:
    return [_stage(options, "pointwise", cin=options.cin, cout=options.cout, kernel=(1, 1), stride=options.stride)]


@register_kind(LayerKind.SEPARABLE)
def separable(options: LayerOptions) -> list[ConvStage]:
    first = _depthwise(options, "depthwise")
    second = _stage(options, "pointwise", cin=first.cout, cout=options.cout, kernel=(1, 1))
    return [first, second]


@register_kind(LayerKind.GROUPED)
def grouped(options: LayerOptions) -> list[ConvStage]:
    return [_spatial_stage(options, "grouped", options.cout, options.groups)]


@register_kind(LayerKind.SPATIAL)
def spatial(options: LayerOptions) -> list[ConvStage]:
    mid = options.mid or options.cin
    (r, s), (sh, sw), (dh, dw) = options.kernel, options.stride, options.dilation
    same = options.padding == "same"
    row_padding = "same" if same else (options.padding[0], 0)
    column_padding = "same" if same else (0, options.padding[1])
    return [
        _stage(
            options, "row", cin=options.cin, cout=mid, kernel=(r, 1), stride=(sh, 1), padding=row_padding,
            dilation=(dh, 1),
        ),
        _stage(
            options, "column", cin=mid, cout=options.cout, kernel=(1, s), stride=(1, sw), padding=column_padding,
            dilation=(1, dw),
        ),
    ]  # fmt: skip


def stages(kind: LayerKind, options: LayerOptions) -> list[ConvStage]:
    """The conv stages a kind builds for these options (unvalidated: call plan() for checked stages)."""
    return _EXPANDERS[kind](options)


def registered_kinds() -> list[LayerKind]:
    return list(_EXPANDERS)


def _kind_issues(spec: LayerOptions, kinds: list[LayerKind]) -> list[FieldIssue]:
    """Problems of the options for these kinds (groups and mid matter only to the kind that uses them)."""
    issues: list[FieldIssue] = []
    if LayerKind.GROUPED in kinds and (spec.cin % spec.groups or spec.cout % spec.groups):
        message = f"cin ({spec.cin}) and cout ({spec.cout}) must both be divisible by {spec.groups}"
        issues.append(FieldIssue(("groups",), message))
    if LayerKind.GROUPED in kinds and spec.groups == 1:
        issues.append(FieldIssue(("groups",), "grouped needs groups > 1 (groups=1 is the dense conv)"))
    needed = f"multiplier × cin = {spec.multiplier} × {spec.cin} = {spec.multiplier * spec.cin}"
    for kind in (LayerKind.DEPTHWISE, LayerKind.SHARED):
        if kind in kinds and spec.cout != spec.multiplier * spec.cin:
            issues.append(FieldIssue(("cout",), f"{kind} needs cout = {needed}, got {spec.cout}"))
    return issues


def _stage_issues(stage: ConvStage, size: Pair, overridden: set[str]) -> list[FieldIssue]:
    """Problems with one stage on an input of spatial ``size`` (named on the field that causes them)."""

    def loc(field: str) -> tuple[str, ...]:
        return (stage.name, field) if field in overridden else (field,)

    if stage.padding == "same" and max(stage.stride) > 1:
        return [FieldIssue(loc("padding"), "padding 'same' needs stride 1 (as nn.Conv2d)")]
    out_h, out_w = formulas.output_size(stage, size)
    if out_h >= 1 and out_w >= 1:
        return []
    (pt, pb), (pl, pr) = formulas.explicit_padding(stage)
    extent = "×".join(str(d * (k - 1) + 1) for k, d in zip(stage.kernel, stage.dilation, strict=True))
    prefix = f"{stage.name}: " if "kernel" in overridden else ""
    padded = f"{size[0] + pt + pb}×{size[1] + pl + pr}"
    message = f"{prefix}kernel extent {extent} (with dilation) is larger than the padded input {padded}"
    return [FieldIssue(loc("kernel"), message)]


def parse_compare(data: dict[str, Any]) -> CompareSpec:
    """Validate a dict of compare options (from flags or YAML) into a CompareSpec that :func:`plan` accepts, or
    raise SpecError: every rule, the fields' and those between the fields and the kinds compared, without torch."""
    try:
        spec = CompareSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(issues_from_validation(error)) from None
    plan(spec)
    return spec


def plan(spec: CompareSpec) -> dict[LayerKind, list[ConvStage]]:
    """Validated stages for the dense reference and every alternative; all problems raised at once."""
    issues = []
    if LayerKind.DENSE in spec.vs:
        issues.append(FieldIssue(("vs",), "dense is the reference, always built: name the alternatives to compare"))
    # an option set for a kind that is not compared would be silently unused: say so instead
    if spec.groups != 1 and LayerKind.GROUPED not in spec.vs:
        issues.append(FieldIssue(("groups",), "only the grouped kind uses groups: add grouped to vs"))
    if spec.mid is not None and LayerKind.SPATIAL not in spec.vs:
        issues.append(FieldIssue(("mid",), "only the spatial kind has a middle width: add spatial to vs"))
    alternatives = [kind for kind in spec.vs if kind is not LayerKind.DENSE]
    return _plan(spec, [LayerKind.DENSE, *alternatives], spec.size, issues)


def plan_kind(options: LayerOptions, kind: LayerKind, size: Pair) -> list[ConvStage]:
    """Validated stages of one kind on its own (a model file's layer), on an input of spatial ``size``."""
    return _plan(options, [kind], size, [])[kind]


def _plan(
    spec: LayerOptions, kinds: list[LayerKind], input_size: Pair, issues: list[FieldIssue]
) -> dict[LayerKind, list[ConvStage]]:
    issues = [*issues, *_kind_issues(spec, kinds)]
    planned: dict[LayerKind, list[ConvStage]] = {}
    used_stage_names: set[str] = set()
    overrides = spec.overrides()
    if not issues:
        for kind in kinds:
            planned[kind] = stages(kind, spec)
            size = input_size
            for stage in planned[kind]:
                used_stage_names.add(stage.name)
                override = overrides.get(stage.name)
                overridden = set(override.model_dump(exclude_none=True)) if override else set()
                stage_issues = _stage_issues(stage, size, overridden)
                issues.extend(issue for issue in stage_issues if issue not in issues)
                if stage_issues:
                    break
                size = formulas.output_size(stage, size)
        for name in overrides:
            if name not in used_stage_names:
                compared = ", ".join(str(kind) for kind in kinds)
                issues.append(FieldIssue((name,), f"no {name} stage in the layers compared ({compared})"))
    if issues:
        raise SpecError(issues)
    return planned


def check_memory(spec: CompareSpec) -> None:
    """Raise SpecError before anything is allocated (or torch imported) when the compared layers' tensors cannot
    fit in memory, on the field that made them this large: ``batch`` when they fit at batch 1, else ``size`` or
    the largest channels (cin, cout, mid, multiplier × cin; the first of equals), as the largest tensor has more."""
    channels = {"cin": spec.cin, "cout": spec.cout, "mid": spec.mid or 0, "multiplier": spec.multiplier * spec.cin}
    batch, itemsize = spec.batch, spec.dtype.itemsize
    needed = weights = 0
    largest_pixels = largest_channels = largest = 0
    for stages in plan(spec).values():
        stage_size = spec.size
        for stage in stages:
            shape = (batch, stage.cin, *stage_size)
            needed += ops.stage_cost(stage, shape, itemsize)[1]
            weights += ops.cost(ops.ConvOp.from_stage(stage, shape)).params * itemsize  # the conv's weights, bias
            tensor = max(stage.cin, stage.cout) * stage_size[0] * stage_size[1]
            if tensor > largest:
                largest, largest_pixels = tensor, stage_size[0] * stage_size[1]
                largest_channels = max(stage.cin, stage.cout)
            stage_size = formulas.output_size(stage, stage_size)
    available = bounds.over_share(needed)
    if available is None:
        return
    field = "size"
    if batch > 1 and weights + (needed - weights) / batch <= bounds.MEMORY_SHARE * available:
        field = "batch"
    elif weights > needed - weights or largest_channels > largest_pixels:
        field = max(channels, key=lambda name: channels[name])
    message = (
        f"these layers need at least {needed / 2**30:,.1f} GiB of tensors, more than half of the "
        f"{available / 2**30:,.1f} GiB available: use a smaller {field.replace('_', ' ')}"
    )
    raise SpecError([FieldIssue((field,), message)])
