"""Model files: an ordered stack of layers, validated and planned into operations. No torch here.

Each layer's input channels and spatial size come from the layer before it, so a layer names only its output
channels (``cout``). Model-level keys: ``input`` (``channels``, ``size``, ``batch``), ``width_multiplier``
(MobileNet's α: scales every channel count except a linear layer's outputs, which are classes),
``channel_divisor`` (round scaled channels to a multiple of it, as MobileNetV2 does) and ``defaults`` (``bias``,
``norm``, ``act`` for every conv layer that does not set them). A conv layer's ``scale: false`` keeps its
channels at every α; ``min_width: 1.0`` scales them by ``max(α, 1.0)`` only (MobileNetV2's last conv: 1280
channels below α = 1, 1280·α above).

Conv layers pad to keep the spatial size at stride 1 unless ``padding`` is given (:func:`keep_size_padding`: an
even kernel pads like ``padding='same'``).
``repeat: N`` stands for N identical layers named ``NAME.1`` … ``NAME.N``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from convcost.cost import ops as model_formulas
from convcost.cost.formulas import Act, ConvStage, Norm
from convcost.cost.ops import (
    ActOp,
    AdaptivePoolOp,
    AddOp,
    FlattenOp,
    LinearOp,
    Op,
    PoolOp,
    Shape,
)
from convcost.errors import FieldIssue, SpecError, gathered
from convcost.spec import bounds, kinds
from convcost.spec.bundled import Use, resolve
from convcost.spec.compare import LayerKind, LayerOptions, issues_from_validation, positive_int
from convcost.spec.inputs import parse_arguments, parse_inputs
from convcost.spec.layers import (
    LAYER_MODELS,
    ConvLayer,
    FlattenLayer,
    InvertedResidualLayer,
    LinearLayer,
    Loc,
    ModelInput,
    ModelPlan,
    ModelSpec,
    PlannedLayer,
    PoolLayer,
    _Layer,
    _positive_number,
)
from convcost.spec.source import is_import_path
from convcost.spec.yamlio import Document, validate


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of ``divisor``, never below it nor more than 10 % under ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def load_model(
    path: str, width_multiplier: str | None = None, size: str | None = None, batch: str | None = None
) -> ModelPlan:
    """Load, validate and plan a model file; command-line overrides replace the file's values."""
    from convcost.spec import yamlio

    document = yamlio.load(path)
    return plan_document(document, width_multiplier=width_multiplier, size=size, batch=batch)


def plan_document(
    document: Document,
    *,
    width_multiplier: str | float | None = None,
    size: str | None = None,
    batch: str | int | None = None,
) -> ModelPlan:
    """Validate a loaded model file and plan its operations; every problem is raised at once."""
    data = document.data
    if not isinstance(data, dict):
        raise document.error([FieldIssue((), "a model file is a mapping with 'input' and 'layers'", 1)])
    spec, issues = validate(ModelSpec, data, document)
    if issues:
        raise document.error(issues)
    overrides: list[FieldIssue] = []
    multiplier = spec.width_multiplier
    if width_multiplier is not None:
        try:
            multiplier = _positive_number(width_multiplier)
        except ValueError as error:
            overrides.append(FieldIssue(("width_multiplier",), str(error)))
    model_input = spec.input
    changes = {key: value for key, value in (("size", size), ("batch", batch)) if value is not None}
    try:
        if changes:
            model_input = ModelInput.model_validate({**model_input.model_dump(), **changes})
    except ValidationError as error:
        overrides.extend(issues_from_validation(error))
    if overrides:
        raise SpecError(overrides)
    layers: list[_Layer] = []
    for index, raw in enumerate(spec.layers):
        loc: Loc = ("layers", index)
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            issues.append(FieldIssue(loc, "a layer is a mapping with a 'kind'", document.line(loc)))
            continue
        if kind is None:
            issues.append(FieldIssue(loc, "required key 'kind' is missing", document.line(loc)))
            continue
        layer_model = LAYER_MODELS.get(str(kind).lower()) if isinstance(kind, str) else None
        if layer_model is None:
            from convcost.spec.yamlio import suggest

            hint = suggest(str(kind), LAYER_MODELS) if isinstance(kind, str) else None
            known = ", ".join(LAYER_MODELS)
            message = f"unknown kind {kind!r}" + (f"; did you mean '{hint}'?" if hint else f" (known: {known})")
            issues.append(FieldIssue((*loc, "kind"), message, document.line((*loc, "kind"))))
            continue
        layer, layer_issues = validate(layer_model, raw, document, loc)
        issues.extend(layer_issues)
        if layer is not None:
            layers.append(layer)
    if issues:
        raise document.error(issues)
    # the network's size is bounded before a single copy is planned (repeat: 1000000000 would never finish)
    total = sum(layer.repeat for layer in layers)
    if total > bounds.MAX_LAYERS:
        largest = max(range(len(layers)), key=lambda index: layers[index].repeat)
        loc = ("layers", largest, "repeat")
        message = f"the model would have {total:,} layers after repeat, more than the {bounds.MAX_LAYERS:,} allowed"
        raise document.error([FieldIssue(loc, message, document.line(loc))])
    planner = _Planner(spec, multiplier, model_input, document)
    plan = planner.plan(layers)
    if planner.issues:
        raise document.error(planner.issues)
    return plan


class _Planner:
    def __init__(
        self, spec: ModelSpec, width_multiplier: float, model_input: ModelInput, document: Document | None = None
    ) -> None:
        self.document = document
        self.spec = spec
        self.width_multiplier = width_multiplier
        self.model_input = model_input
        self.issues: list[FieldIssue] = []
        self.counts: dict[str, int] = {}
        self.planned: dict[tuple[int, Shape], PlannedLayer] = {}  # by layer (its id) and input shape

    def channels(self, value: int, scale: bool, min_width: float | None = None) -> int:
        """A layer's channels at the width multiplier: ``scale: false`` keeps them, ``min_width`` floors α."""
        multiplier = self.width_multiplier if min_width is None else max(self.width_multiplier, min_width)
        if not scale or (multiplier == 1.0 and self.spec.channel_divisor == 1):
            return value
        return make_divisible(value * multiplier, self.spec.channel_divisor)

    def plan(self, layers: list[_Layer]) -> ModelPlan:
        shape: Shape = (self.model_input.batch, self.model_input.channels, *self.model_input.size)
        plan = ModelPlan(self.spec.name, shape, [], self.width_multiplier, self.spec.channel_divisor)
        planned = plan.layers
        names: dict[str, Loc] = {}
        for index, layer in enumerate(layers):
            loc: Loc = ("layers", index)
            kind = str(getattr(layer, "kind"))  # noqa: B009 - every layer model has a kind
            self.counts[kind] = self.counts.get(kind, 0) + 1
            base = layer.name or f"{kind}{self.counts[kind]}"
            for copy in range(layer.repeat):
                name = base if layer.repeat == 1 else f"{base}.{copy + 1}"
                if name in names:
                    first = names[name]
                    where = f"{first[0]}[{first[1]}]"
                    if self.document is not None:
                        where += f" ({self.document.source}:{self.document.key_line((*first, 'name'))})"
                    self.issues.append(
                        FieldIssue(
                            (*loc, "name") if layer.name else loc,
                            f"layer name {name!r} is used twice (also {where}): names must be unique",
                        )
                    )
                names.setdefault(name, loc)
                result = self.layer(layer, name, loc, shape)
                if result is None:
                    return plan
                planned.append(result)
                shape = result.output_shape
        return plan

    def fail(self, loc: Loc, message: str) -> None:
        self.issues.append(FieldIssue(loc, message))

    def layer(self, layer: _Layer, name: str, loc: Loc, shape: Shape) -> PlannedLayer | None:
        if isinstance(layer, (ConvLayer, InvertedResidualLayer)):
            if len(shape) != 4:
                self.fail((*loc, "kind"), f"{layer.kind} needs an N×C×H×W input, got {_show(shape)}")
                return None
            # a repeated layer's copies on the same input have the same stages: validated and planned once
            first = self.planned.get((id(layer), shape))
            if first is not None:
                copy, out = model_formulas.stages_ops(first.stages, shape, name + ".")
                if first.residual:
                    copy.append(AddOp(f"{name}.add", out))
                return PlannedLayer(name, first.kind, loc, copy, list(first.stages), first.residual, spec=layer)
            if isinstance(layer, ConvLayer):
                planned = self.conv_layer(layer, name, loc, shape)
            else:
                planned = self.inverted_residual(layer, name, loc, shape)
            if planned is not None:
                self.planned[(id(layer), shape)] = planned
            return planned
        if isinstance(layer, PoolLayer):
            return self.pool(layer, name, loc, shape)
        if isinstance(layer, FlattenLayer):
            return PlannedLayer(name, "flatten", loc, [FlattenOp(name, shape)], spec=layer)
        assert isinstance(layer, LinearLayer)
        if len(shape) != 2:
            self.fail(
                (*loc, "kind"),
                f"linear needs a flat N×features input, got {_show(shape)}: add a 'flatten' layer before it",
            )
            return None
        ops: list[Op] = [LinearOp(name, shape, shape[1], self.channels(layer.cout, layer.scale), layer.bias)]
        if layer.act is not Act.NONE:
            out = model_formulas.output_shape(ops[0])
            ops.append(ActOp(f"{name}.act", out, str(layer.act)))
        return PlannedLayer(name, "linear", loc, ops, spec=layer)

    def conv_layer(self, layer: ConvLayer, name: str, loc: Loc, shape: Shape) -> PlannedLayer | None:
        defaults = self.spec.defaults
        cin = shape[1]
        kernel = (1, 1) if layer.kind is LayerKind.POINTWISE else layer.kernel
        if layer.kernel not in (None, kernel):  # never silently dropped
            self.fail((*loc, "kernel"), "a pointwise conv's kernel is 1×1: give no kernel or 1")
            return None
        if kernel is None:
            self.fail((*loc, "kernel"), f"required for a {layer.kind} layer")
            return None
        cout = layer.cout
        if cout is None:
            if layer.kind in (LayerKind.DEPTHWISE, LayerKind.SHARED):
                cout = layer.multiplier * cin
            else:
                self.fail((*loc, "cout"), f"required for a {layer.kind} layer")
                return None
        else:
            cout = self.channels(cout, layer.scale, layer.min_width)
        padding = layer.padding
        if padding is None:
            padding = keep_size_padding(kernel, layer.stride, layer.dilation)
        data: dict[str, Any] = {
            "cin": cin,
            "cout": cout,
            "kernel": kernel,
            "stride": layer.stride,
            "padding": padding,
            "dilation": layer.dilation,
            "groups": layer.groups,
            "multiplier": layer.multiplier,
            "bias": _pick(layer.bias, defaults.bias, False),
            "norm": _pick(layer.norm, defaults.norm, Norm.NONE),
            "act": _pick(layer.act, defaults.act, Act.NONE),
            **layer.overrides(),
        }
        if layer.mid is not None:
            data["mid"] = self.channels(layer.mid, layer.scale, layer.min_width)
        try:
            stages = kinds.plan_kind(LayerOptions.model_validate(data), layer.kind, (shape[2], shape[3]))
        except SpecError as error:
            for issue in error.issues:
                self.fail((*loc, *issue.loc), _channels_said(issue.message, cin))
            return None
        except ValidationError as error:
            # only channels scaled by the width multiplier can fail here (the layer's own values were validated)
            for issue in issues_from_validation(error, loc):
                self.fail(issue.loc, f"{issue.message} (after width_multiplier {self.width_multiplier:g}, "
                                     f"channel_divisor {self.spec.channel_divisor})")  # fmt: skip
            return None
        ops, _ = model_formulas.stages_ops(stages, shape, name + ".")
        return PlannedLayer(name, str(layer.kind), loc, ops, stages, spec=layer)

    def inverted_residual(self, layer: InvertedResidualLayer, name: str, loc: Loc, shape: Shape) -> PlannedLayer | None:
        defaults = self.spec.defaults
        cin = shape[1]
        cout = self.channels(layer.cout, layer.scale, layer.min_width)
        hidden = round(cin * layer.expand)
        bias = _pick(layer.bias, defaults.bias, False)
        norm = _pick(layer.norm, defaults.norm, Norm.NONE)
        act = _pick(layer.act, defaults.act, Act.RELU6)
        kernel, stride = layer.kernel, layer.stride
        stages: list[ConvStage] = []
        one = (1, 1)  # the stages by position: a third faster than by keyword
        if layer.expand != 1:
            stages.append(ConvStage("expand", cin, hidden, one, one, (0, 0), one, 1, bias, False, norm, act))
        pads = keep_size_padding(kernel, stride, one)
        stages.append(ConvStage("depthwise", hidden, hidden, kernel, stride, pads, one, hidden, bias, False, norm, act))
        stages.append(ConvStage("project", hidden, cout, one, one, (0, 0), one, 1, bias, False, norm, Act.NONE))
        ops, out = model_formulas.stages_ops(stages, shape, name + ".")
        if out[2] < 1 or out[3] < 1:  # the depthwise conv's output (1×1 convs keep the size)
            self.fail((*loc, "kernel"), f"kernel {kernel[0]}×{kernel[1]} is larger than the padded input")
            return None
        residual = layer.residual and layer.stride == (1, 1) and cin == cout
        if residual:
            ops.append(AddOp(f"{name}.add", out))
        return PlannedLayer(name, "inverted_residual", loc, ops, stages, residual=residual, spec=layer)

    def pool(self, layer: PoolLayer, name: str, loc: Loc, shape: Shape) -> PlannedLayer | None:
        if len(shape) != 4:
            self.fail((*loc, "kind"), f"pool needs an N×C×H×W input, got {_show(shape)}")
            return None
        if layer.global_:
            if layer.kernel is not None:
                self.fail((*loc, "kernel"), "a global pool has no kernel: give one or the other")
                return None
            if layer.stride is not None or layer.padding != (0, 0):
                field = "stride" if layer.stride is not None else "padding"
                self.fail((*loc, field), f"a global pool has no {field}: it pools the whole input")
                return None
            mode = layer.mode or "avg"
            return PlannedLayer(name, "pool", loc, [AdaptivePoolOp(name, shape, mode, (1, 1))], spec=layer)
        if layer.mode is None:
            self.fail((*loc, "mode"), "required for a windowed pool: max or avg")
            return None
        if layer.kernel is None:
            self.fail((*loc, "kernel"), "required unless the pool is global (global: true)")
            return None
        if layer.padding == "same":
            self.fail((*loc, "padding"), "a pool takes numeric padding, not 'same'")
            return None
        if any(pad > side // 2 for pad, side in zip(layer.padding, layer.kernel, strict=True)):
            # torch refuses it ("pad should be at most half of effective kernel size"): said here, with the line
            self.fail(
                (*loc, "padding"),
                f"padding {_show(layer.padding)} is more than half the kernel {_show(layer.kernel)}: a pool pads "
                f"at most {layer.kernel[0] // 2}×{layer.kernel[1] // 2}",
            )
            return None
        op = PoolOp(name, shape, layer.mode, layer.kernel, layer.stride or layer.kernel, layer.padding)
        out = model_formulas.output_shape(op)
        if min(out[2:]) < 1:
            self.fail((*loc, "kernel"), f"kernel {_show(layer.kernel)} is larger than the input {_show(shape[2:])}")
            return None
        return PlannedLayer(name, "pool", loc, [op], spec=layer)


def keep_size_padding(
    kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int] | Literal["same"]:
    """The padding a conv layer gets when it names none: the spatial size kept at stride 1.

    An odd kernel extent pads ``dilation·(kernel−1)/2`` on each side. An even one cannot pad both sides alike, so
    at stride 1 it pads like ``nn.Conv2d(padding='same')`` (the odd pixel at the bottom and right); at a larger
    stride (where torch has no 'same') it pads ``dilation·(kernel−1)//2`` on each side, so the output is
    ``floor((H + 2·pad − dilation·(kernel−1) − 1) / stride) + 1``: 16 → 8 for kernel 4 at stride 2.
    """
    height, width = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
    if stride == (1, 1) and (height % 2 or width % 2):
        return "same"
    return (height // 2, width // 2)


def _pick(value: Any, default: Any, fallback: Any) -> Any:
    if value is not None:
        return value
    return default if default is not None else fallback


def _channels_said(message: str, cin: int) -> str:
    # compare's messages speak of cin; in a model cin is the previous layer's output
    return message.replace(f"cin ({cin})", f"cin ({cin}, the previous layer's output)")


def _show(shape: tuple[int, ...]) -> str:
    return "×".join(str(value) for value in shape)


# suggest's and convert's MODEL, validated: a file's plan (None: an import path), input shape, --arg keywords
ModelSource = tuple[ModelPlan | None, tuple[int, ...], dict[str, object]]


def model_source(
    source: str,
    input_shape: str | list[str] | tuple[str, ...] | None = None,
    batch: str | int | None = None,
    arguments: list[str] | tuple[str, ...] = (),
) -> ModelSource:
    """MODEL as ``convcost model`` takes it (a model file, a bundled model's name, or package.module:factory with
    ``--arg`` ``arguments``) and its input, for suggest and convert, validated before torch is imported. One float
    ``--input`` only: suggest and convert replace convs on one image."""
    issues: list[FieldIssue] = []
    batch_size = 1 if batch is None else gathered(issues, 1, lambda: positive_int(batch), ("batch",))
    texts = [input_shape] if isinstance(input_shape, str) else list(input_shape or [])
    if not is_import_path(source):
        if texts:
            issues.append(FieldIssue(("input",), "is for import paths; a model file gives its own input"))
        if arguments:
            issues.append(FieldIssue(("arg",), "is for import paths; a model file gives its own layers"))
        if issues:
            raise SpecError(issues)
        plan = load_model(str(resolve(source, Use.MODEL)), batch=None if batch is None else str(batch_size))
        return plan, tuple(plan.input_shape), {}
    shape: tuple[int, ...] = ()
    if not texts:
        issues.append(FieldIssue(("input",), "required for an import path: the input CxHxW, e.g. 3x224x224"))
    elif len(texts) > 1:
        issues.append(FieldIssue(("input",), "one input here (the convs replaced see one image); "
                                             "convcost model counts a model with more"))  # fmt: skip
    elif (spec := gathered(issues, None, lambda: parse_inputs(texts).args[0])) is not None:
        if spec.dtype not in (None, "float32"):
            issues.append(FieldIssue(("input",), f"runs in float32: drop :{spec.dtype}"))
        shape = spec.shape
    parsed: dict[str, object] = gathered(issues, {}, lambda: parse_arguments(arguments))
    if issues:
        raise SpecError(issues)
    return None, (batch_size, *shape), parsed
