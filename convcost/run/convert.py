"""Convert a model's convs: dense → separable / spatial / grouped from the trained weights, and separable → dense.

The replacements are stock modules (``nn.Sequential`` of ``nn.Conv2d``; ``nn.Identity`` where a merged pair's
second conv and folded BatchNorm were), with the original's stride, padding, padding mode, dilation, bias, dtype
and device, so the converted model needs nothing of convcost to run or to save. The weights are computed in
float64 on the CPU and then cast to the original's dtype and device:

* separable, multiplier m: for each input channel c the slice W[:, c] (K × R·S) = U Σ Vᵀ; its best rank-m
  approximation (Eckart–Young) gives depthwise filter m·c+j = √σ_j · row j of Vᵀ and pointwise column m·c+j =
  √σ_j · U[:, j]. Exact once m ≥ min(K, R·S).
* spatial, rank M: W as the (C·R) × (K·S) matrix A[(c,r), (k,s)] = W[k, c, r, s] = U Σ Vᵀ; the R×1 conv's filter j
  is √σ_j · U[:, j] (as C × R), the 1×S conv's weights √σ_j · Vᵀ[j] (as K × S). Exact once M ≥ min(C·R, K·S).
* grouped: structure only (stock initialisation): no grouped conv holds the cross-group weights.
* dense: W[k, c] = Σ_j P[k, m·c+j] · D[m·c+j], bias P·b_D + b_P, a BatchNorm between folded into D first.

Nothing here prints.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Collection
from dataclasses import dataclass, field

import torch
from torch import nn

from convcost.cost import factorize, ops
from convcost.cost.factorize import Factorized
from convcost.errors import FieldIssue, SpecError
from convcost.results.convert import DIFFERENT_FUNCTION, ConvertedLayer, ConvertResult, ModelFigures, Refused
from convcost.run.candidates import Candidate, conv_op
from convcost.run.context import RunContext
from convcost.run.merge import find_pairs, merge_pair
from convcost.spec.convert import ConvertSpec, Target, parse_convert

GROUPED_NOTE = "grouped: structure only, stock initialisation (no grouped conv holds the cross-group weights)"
FRESH_NOTE = "from_weights=False: stock initialisation"


def convert(
    model: nn.Module,
    inputs: torch.Tensor | tuple[int, ...] | None = None,
    to: str | Target = "separable",
    select: Collection[str] | None = None,
    multiplier: int | None = None,
    rank: int | None = None,
    from_weights: bool = True,
    min_saving: float | str | None = None,
) -> ConvertResult:
    """A converted copy of ``model`` (``model`` untouched): every candidate conv (or those named in ``select``, and
    reaching ``min_saving``) replaced by stock modules; ``to`` is separable, spatial, grouped:G or dense.

    ``inputs`` (a tensor, or a shape with the batch) is run once on a copy in eval mode to learn each conv's input
    shape: without it, MACs are None.
    """
    spec = parse_convert(str(to), multiplier, rank, min_saving)
    with RunContext(threads=torch.get_num_threads()).applied():  # new modules' weights: the caller's RNG untouched
        result = convert_spec(model, inputs, spec, select, from_weights)[0]
    result.layers = [layer for layer in result.layers if layer.selected]
    result.converted = True
    return result


def convert_spec(
    model: nn.Module,
    inputs: torch.Tensor | tuple[int, ...] | None,
    spec: ConvertSpec,
    select: Collection[str] | None = None,
    from_weights: bool = True,
    every: bool = False,
    keep_inputs: bool = False,
) -> tuple[ConvertResult, Seen, dict[str, nn.Module]]:
    """:func:`convert` for a validated spec, with what the forward pass saw and each replacement by name;
    ``every``: replace every candidate (to know each one's error) while ``selected`` still marks the chosen."""
    converted = copy.deepcopy(model)
    seen = conv_inputs(converted, inputs, keep=keep_inputs)
    candidates, refused = find_candidates(converted, spec, seen.shapes)
    for candidate in [candidate for candidate in candidates if seen.calls.get(candidate.name, 0) > 1]:
        candidates.remove(candidate)
        calls = seen.calls[candidate.name]
        refused.append(Refused(candidate.name, f"called {calls} times in one forward pass (a shared conv)"))
    chosen = choose(candidates, spec, select)
    result = build_result(model, spec, candidates, refused, chosen, seen.macs)
    result.model = converted
    result.input_shape = seen.input_shape
    replacements = {}
    for candidate, layer in zip(candidates, result.layers, strict=True):
        if every or candidate.name in chosen:
            replacements[candidate.name] = replace_candidate(converted, candidate, spec, from_weights, layer)
    return result, seen, replacements


@dataclass
class Seen:
    """What one forward pass saw: each Conv2d's input shape (and input, when kept), and the MACs of every conv and
    linear call by formula (None without a forward pass)."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    macs: int | None = None
    input_shape: tuple[int, ...] | None = None
    calls: dict[str, int] = field(default_factory=dict)  # forward calls per conv: a shared conv is called twice


def conv_inputs(model: nn.Module, inputs: torch.Tensor | tuple[int, ...] | None, keep: bool = False) -> Seen:
    """One forward pass in eval mode without gradients (BatchNorm statistics are not updated); nothing without
    ``inputs``. ``keep``: keep a copy of each conv's input (for timing)."""
    seen = Seen()
    if inputs is None:
        return seen
    tensor = inputs if isinstance(inputs, torch.Tensor) else example_input(model, tuple(inputs))
    seen.macs, seen.input_shape = 0, tuple(tensor.shape)
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):

            def hook(module: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                shape = tuple(args[0].shape)
                if isinstance(module, nn.Linear):
                    seen.macs = (seen.macs or 0) + math.prod(shape[:-1]) * module.in_features * module.out_features
                    return
                assert isinstance(module, nn.Conv2d)
                seen.macs = (seen.macs or 0) + ops.cost(conv_op(name, module, shape)).macs
                seen.shapes.setdefault(name, shape)
                seen.calls[name] = seen.calls.get(name, 0) + 1
                if keep and name not in seen.inputs:
                    seen.inputs[name] = args[0].detach().clone()

            handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(tensor)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def example_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """A seeded random input of ``shape`` on the model's device and in its dtype."""
    weight = next(model.parameters(), None)
    tensor = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return tensor.float() if weight is None else tensor.to(dtype=weight.dtype, device=weight.device)


def find_candidates(
    model: nn.Module, spec: ConvertSpec, shapes: dict[str, tuple[int, ...]]
) -> tuple[list[Candidate], list[Refused]]:
    """The layers ``spec`` can convert, in the model's order, and those it cannot (with the reason)."""
    if spec.to is Target.DENSE:
        return find_pairs(model, shapes)
    candidates: list[Candidate] = []
    refused: list[Refused] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        op = conv_op(name, module, shapes.get(name))
        reason = factorize.factorizable(op)
        if reason is None and type(module) is not nn.Conv2d:
            reason = f"a {type(module).__name__}, not a stock Conv2d (its forward may differ)"
        if reason is None and spec.to is Target.GROUPED:
            reason = factorize.groups_fit(op, spec.groups)
        if reason is not None:
            refused.append(Refused(name, reason))
            continue
        if spec.to is Target.SEPARABLE:
            factorized = factorize.separable(op, spec.multiplier)
        elif spec.to is Target.SPATIAL:
            factorized = factorize.spatial(op, spec.rank or factorize.full_rank(op)[1])
        else:
            factorized = factorize.grouped(op, spec.groups)
        candidates.append(Candidate(name, [(name, module)], factorized, name in shapes))
    return candidates, refused


def choose(candidates: list[Candidate], spec: ConvertSpec, select: Collection[str] | None) -> set[str]:
    """The names to convert: those matching ``select``'s names or globs (all by default) whose MAC saving reaches
    ``spec.min_saving``; a pattern matching no candidate is an error."""
    names = [candidate.name for candidate in candidates]
    chosen = set(names)
    if select is not None:
        chosen = set()
        for pattern in [select] if isinstance(select, str) else select:
            matched = fnmatch.filter(names, pattern)
            if not matched:
                from convcost.spec.yamlio import suggest

                hint = suggest(pattern, names)
                known = f"; did you mean '{hint}'?" if hint else f" (candidates: {', '.join(names[:8])})"
                message = f"{pattern!r} is not a layer that --to {spec.to.value} can convert{known}"
                raise SpecError([FieldIssue(("select",), message)])
            chosen.update(matched)
    return {c.name for c in candidates if c.name in chosen and (c.factorized.saving or 0.0) >= (spec.min_saving or 0.0)}


def build_result(
    model: nn.Module,
    spec: ConvertSpec,
    candidates: list[Candidate],
    refused: list[Refused],
    chosen: set[str],
    macs: int | None,
) -> ConvertResult:
    """Per-layer figures by formula and the totals now, with every candidate applied, and with the chosen ones."""
    layers = []
    for candidate in candidates:
        first, known = candidate.factorized.before[0], candidate.shape_known
        layers.append(ConvertedLayer(
            name=candidate.name, kind=spec.to.value, cin=first.cin,
            cout=candidate.factorized.before[-1].cout, kernel=(first.kernel[0], first.kernel[1]),
            shape=first.input_shape if known else None, params_before=candidate.params_before,
            params_after=candidate.factorized.params_after,
            macs_before=candidate.factorized.macs_before if known else None,
            macs_after=candidate.factorized.macs_after if known else None,
            weight_error=None, selected=candidate.name in chosen))  # fmt: skip
    params = sum(parameter.numel() for parameter in model.parameters())
    result = ConvertResult(model=None, target=spec.describe(), layers=layers, refused=refused,
                           min_saving=spec.min_saving)  # fmt: skip
    same = "a merged pair computes the same function (to float rounding); only its cost changes"
    result.notes.append(DIFFERENT_FUNCTION if spec.to is not Target.DENSE else same)
    result.before = ModelFigures(params, macs)
    result.after_all = _applied(params, macs, layers)
    result.after_selected = _applied(params, macs, [layer for layer in layers if layer.selected])
    return result


def _applied(params: int, macs: int | None, chosen: list[ConvertedLayer]) -> ModelFigures:
    after_params = params - sum(layer.params_before - layer.params_after for layer in chosen)
    saved_macs = sum((layer.macs_before or 0) - (layer.macs_after or 0) for layer in chosen)
    return ModelFigures(after_params, None if macs is None else macs - saved_macs)


def replace_candidate(
    model: nn.Module, candidate: Candidate, spec: ConvertSpec, from_weights: bool, layer: ConvertedLayer
) -> nn.Module:
    """Put the replacement of ``candidate`` into ``model``; fills ``layer``'s weight error and code."""
    module = candidate.modules[0][1]
    if spec.to is Target.DENSE:
        replacement: nn.Module = merge_pair(candidate)
        layer.weight_error, layer.error_note = 0.0, "exact: two linear maps merged into one"
    else:
        assert isinstance(module, nn.Conv2d)
        replacement = factorized_module(module, candidate.factorized)
        if spec.to is Target.GROUPED:
            layer.error_note = GROUPED_NOTE
        elif not from_weights:
            layer.error_note = FRESH_NOTE
        elif spec.to is Target.SEPARABLE:
            load_separable(module, replacement)
            layer.weight_error = relative_error(module.weight, separable_kernel(replacement))
        else:
            load_spatial(module, replacement)
            layer.weight_error = relative_error(module.weight, spatial_kernel(replacement))
    set_module(model, candidate.name, replacement)
    for name, _ in candidate.modules[1:]:
        set_module(model, name, nn.Identity())
    layer.code = module_code(candidate.name, replacement)
    return replacement


def factorized_module(conv: nn.Conv2d, factorized: Factorized) -> nn.Module:
    """Stock Conv2d modules for ``factorized.after``, in ``conv``'s dtype, device and padding mode."""
    built = [nn.Conv2d(op.cin, op.cout, op.kernel, stride=op.stride, padding=op.padding, dilation=op.dilation,  # type: ignore[arg-type]
                       groups=op.groups, bias=op.bias, padding_mode=conv.padding_mode,
                       device=conv.weight.device, dtype=conv.weight.dtype) for op in factorized.after]  # fmt: skip
    return built[0] if len(built) == 1 else nn.Sequential(*built)


def load_separable(conv: nn.Conv2d, replacement: nn.Module) -> None:
    """Depthwise and pointwise weights from each input channel's truncated SVD (see the module docstring)."""
    depthwise, pointwise = replacement[0], replacement[1]  # type: ignore[index]
    weight = conv.weight.detach().to("cpu", torch.float64)
    cout, cin, r, s = weight.shape
    m = depthwise.out_channels // cin
    d = torch.zeros(cin, m, r * s, dtype=torch.float64)
    p = torch.zeros(cout, cin, m, dtype=torch.float64)
    for c in range(cin):
        u, sigma, vh = torch.linalg.svd(weight[:, c].reshape(cout, r * s), full_matrices=False)
        kept = min(m, sigma.numel())
        root = sigma[:kept].sqrt()
        d[c, :kept] = vh[:kept] * root[:, None]
        p[:, c, :kept] = u[:, :kept] * root[None, :]
    _load(depthwise.weight, d.reshape(cin * m, 1, r, s))
    _load(pointwise.weight, p.reshape(cout, cin * m, 1, 1))
    if conv.bias is not None:
        _load(pointwise.bias, conv.bias.detach().to("cpu", torch.float64))


def load_spatial(conv: nn.Conv2d, replacement: nn.Module) -> None:
    """R×1 and 1×S weights from the truncated SVD of the (C·R) × (K·S) reshaping (see the module docstring)."""
    column, row = replacement[0], replacement[1]  # type: ignore[index]
    weight = conv.weight.detach().to("cpu", torch.float64)
    cout, cin, r, s = weight.shape
    rank = column.out_channels
    u, sigma, vh = torch.linalg.svd(weight.permute(1, 2, 0, 3).reshape(cin * r, cout * s), full_matrices=False)
    kept = min(rank, sigma.numel())
    root = sigma[:kept].sqrt()
    a = torch.zeros(rank, cin * r, dtype=torch.float64)
    b = torch.zeros(rank, cout * s, dtype=torch.float64)
    a[:kept] = (u[:, :kept] * root[None, :]).T
    b[:kept] = vh[:kept] * root[:, None]
    _load(column.weight, a.reshape(rank, cin, r, 1))
    _load(row.weight, b.reshape(rank, cout, s).permute(1, 0, 2).unsqueeze(2))
    if conv.bias is not None:
        _load(row.bias, conv.bias.detach().to("cpu", torch.float64))


def separable_kernel(replacement: nn.Module) -> torch.Tensor:
    """The dense kernel a depthwise + 1×1 pair applies: W′[k, c] = Σ_j P[k, m·c+j] · D[m·c+j] (float64)."""
    depthwise, pointwise = replacement[0], replacement[1]  # type: ignore[index]
    d = depthwise.weight.detach().to("cpu", torch.float64)
    p = pointwise.weight.detach().to("cpu", torch.float64)
    cin = depthwise.in_channels
    m = depthwise.out_channels // cin
    return torch.einsum("kcm,cmrs->kcrs", p.reshape(p.shape[0], cin, m), d.reshape(cin, m, *d.shape[2:]))


def spatial_kernel(replacement: nn.Module) -> torch.Tensor:
    """The R×S kernel an R×1 then 1×S pair applies: W′[k, c, r, s] = Σ_j A[j, c, r] · B[k, j, s] (float64)."""
    column, row = replacement[0], replacement[1]  # type: ignore[index]
    a = column.weight.detach().to("cpu", torch.float64)[..., 0]
    b = row.weight.detach().to("cpu", torch.float64)[:, :, 0, :]
    return torch.einsum("jcr,kjs->kcrs", a, b)


def relative_error(original: torch.Tensor, approximation: torch.Tensor) -> float:
    """‖W − W′‖_F / ‖W‖_F in float64 (0 for a zero W reproduced exactly)."""
    weight = original.detach().to("cpu", torch.float64)
    norm = float(torch.linalg.vector_norm(weight))
    difference = float(torch.linalg.vector_norm(weight - approximation))
    return difference / norm if norm else difference


def _load(parameter: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        parameter.copy_(value.to(dtype=parameter.dtype, device=parameter.device))


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``name``."""
    parent_name, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attribute, module)


def module_code(name: str, module: nn.Module) -> str:
    """Stock PyTorch source for ``module``, ready to paste (torch's own repr of each Conv2d is valid code)."""
    path = "model" + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in name.split("."))
    if isinstance(module, nn.Sequential):
        inner = "".join(f"    nn.{child!r},\n" for child in module)
        return f"{path} = nn.Sequential(\n{inner})"
    return f"{path} = nn.{module!r}"
