"""Separable → dense: a depthwise conv followed directly by a 1×1 conv (a BatchNorm between folded) as one conv.

"Directly" is read from the model's structure, not from a traced forward: modules are adjacent when they are
consecutive children of an ``nn.Sequential`` (nested Sequentials flattened, so torchvision's
``Conv2dNormActivation`` blocks join their neighbours). Any other container's forward may do anything between its
children, so a depthwise conv outside a Sequential is refused with that reason. A BatchNorm is folded with its
running statistics: the merged conv computes the pair's eval-mode function.
"""

from __future__ import annotations

import torch
from torch import nn

from convcost.cost import factorize
from convcost.results.convert import Refused
from convcost.run.candidates import Candidate, conv_op

Leaf = tuple[str, nn.Module]


def _is_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def runs(model: nn.Module) -> list[list[Leaf]]:
    """The model's Sequentials as runs of adjacent modules (nested Sequentials flattened; any other module with
    children stays one opaque entry, and its own Sequentials are runs of their own)."""
    found: list[list[Leaf]] = []

    def flatten(sequential: nn.Module, prefix: str, run: list[Leaf]) -> list[Leaf]:
        for name, child in sequential.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if _is_sequential(child):
                flatten(child, full, run)
            else:
                run.append((full, child))
                if any(True for _ in child.children()):
                    visit(child, full)
        return run

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if _is_sequential(child):
                found.append(flatten(child, full, []))
            else:
                visit(child, full)

    if _is_sequential(model):
        found.append(flatten(model, "", []))
    else:
        visit(model, "")
    return found


def is_depthwise(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups == module.in_channels > 1
            and module.out_channels % module.in_channels == 0)  # fmt: skip


def is_pointwise(module: nn.Module) -> bool:
    if type(module) is not nn.Conv2d or module.groups != 1 or tuple(module.kernel_size) != (1, 1):
        return False
    return tuple(module.stride) == (1, 1) and module.padding in ((0, 0), "valid")


def find_pairs(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> tuple[list[Candidate], list[Refused]]:
    """Every depthwise conv: a candidate pair with its 1×1 conv, or refused with the reason."""
    candidates: list[Candidate] = []
    refused: list[Refused] = []
    placed: set[str] = set()
    for run in runs(model):
        for index, (name, module) in enumerate(run):
            if not is_depthwise(module):
                continue
            placed.add(name)
            assert isinstance(module, nn.Conv2d)
            following = run[index + 1 :]
            norm = following[0] if following and type(following[0][1]) is nn.BatchNorm2d else None
            following = following[1:] if norm else following
            reason = _refusal(name, module, norm, following)
            if reason is not None:
                refused.append(Refused(name, reason))
                continue
            pointwise_name, pointwise = following[0]
            assert isinstance(pointwise, nn.Conv2d)
            pointwise_op = conv_op(pointwise_name, pointwise, shapes.get(pointwise_name))
            bias = module.bias is not None or pointwise.bias is not None or norm is not None
            merged = factorize.merged(conv_op(name, module, shapes.get(name)), pointwise_op, bias)
            modules: list[Leaf] = [(name, module), *([norm] if norm else []), (pointwise_name, pointwise)]
            extra = sum(parameter.numel() for parameter in norm[1].parameters()) if norm else 0
            candidates.append(Candidate(name, modules, merged, name in shapes, extra))
    for name, module in model.named_modules():
        if is_depthwise(module) and name not in placed:
            refused.append(Refused(name, "not inside an nn.Sequential: what its parent's forward does after it "
                                         "is unknown"))  # fmt: skip
    return candidates, refused


def _refusal(name: str, depthwise: nn.Conv2d, norm: Leaf | None, following: list[Leaf]) -> str | None:
    """Why the depthwise conv ``name`` cannot be merged with what follows it (None: it can)."""
    if norm is not None:
        batch_norm = norm[1]
        assert isinstance(batch_norm, nn.BatchNorm2d)
        if not batch_norm.track_running_stats or batch_norm.running_mean is None:
            return f"the BatchNorm {norm[0]} has no running statistics to fold"
    if not following:
        return "no 1×1 conv follows it in its nn.Sequential"
    next_name, after = following[0]
    if is_pointwise(after):
        if after.in_channels != depthwise.out_channels:
            return f"the 1×1 conv {next_name} does not take its {depthwise.out_channels} channels"
        return None
    later = next((entry for entry in following[1:3] if is_pointwise(entry[1])), None)
    if later is not None:
        return (f"a {type(after).__name__} ({next_name}) lies between it and the 1×1 conv {later[0]}: a "
                "nonlinearity between, so the pair is not one linear map")  # fmt: skip
    return f"it is followed by a {type(after).__name__} ({next_name}), not by a 1×1 conv"


def merge_pair(candidate: Candidate) -> nn.Conv2d:
    """The dense conv equal to depthwise (→ BatchNorm, folded) → 1×1, in float64 then the depthwise's dtype."""
    depthwise, pointwise = candidate.modules[0][1], candidate.modules[-1][1]
    assert isinstance(depthwise, nn.Conv2d) and isinstance(pointwise, nn.Conv2d)
    wide = torch.float64
    d = depthwise.weight.detach().to("cpu", wide)
    d_bias = torch.zeros(d.shape[0], dtype=wide) if depthwise.bias is None else depthwise.bias.detach().to("cpu", wide)
    if len(candidate.modules) == 3:
        norm = candidate.modules[1][1]
        assert isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None and norm.running_var is not None
        gamma = norm.weight.detach().to("cpu", wide) if norm.weight is not None else torch.ones(d.shape[0], dtype=wide)
        beta = norm.bias.detach().to("cpu", wide) if norm.bias is not None else torch.zeros(d.shape[0], dtype=wide)
        scale = gamma / (norm.running_var.detach().to("cpu", wide) + norm.eps).sqrt()
        d = d * scale[:, None, None, None]
        d_bias = (d_bias - norm.running_mean.detach().to("cpu", wide)) * scale + beta
    p = pointwise.weight.detach().to("cpu", wide)[:, :, 0, 0]
    cin = depthwise.in_channels
    m = depthwise.out_channels // cin
    weight = torch.einsum("kcm,cmrs->kcrs", p.reshape(p.shape[0], cin, m), d.reshape(cin, m, *d.shape[2:]))
    bias = p @ d_bias
    if pointwise.bias is not None:
        bias = bias + pointwise.bias.detach().to("cpu", wide)
    op = candidate.factorized.after[0]
    dense = nn.Conv2d(cin, pointwise.out_channels, depthwise.kernel_size, stride=depthwise.stride,  # type: ignore[arg-type]
                      padding=depthwise.padding, dilation=depthwise.dilation, bias=op.bias,  # type: ignore[arg-type]
                      padding_mode=depthwise.padding_mode, device=depthwise.weight.device,
                      dtype=depthwise.weight.dtype)  # fmt: skip
    with torch.no_grad():
        dense.weight.copy_(weight.to(dense.weight.dtype))
        if dense.bias is not None:
            dense.bias.copy_(bias.to(dense.bias.dtype))
    return dense
