"""A model's input tensors from their specs, and the shapes of an output of any structure.

Float inputs are seeded normal values in the run's dtype (or their own); integer and bool inputs are zeros, a
valid token id for any ``nn.Embedding``. ``--batch`` is prepended to every input.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from convcost.errors import FieldIssue, SpecError
from convcost.spec.compare import DType
from convcost.spec.inputs import FLOAT_DTYPES, Inputs, InputSpec

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
                 "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}  # fmt: skip

Arguments = tuple[tuple[Any, ...], dict[str, Any]]  # a forward's positional and keyword arguments


def input_bytes(inputs: Inputs, batch: int, dtype: DType) -> int:
    """What the input tensors take in memory (an input without a dtype of its own has the run's)."""
    sizes = [(spec, _TORCH_DTYPES[spec.dtype].itemsize if spec.dtype else dtype.itemsize) for _, spec in inputs.named()]
    return sum(batch * math.prod(spec.shape) * itemsize for spec, itemsize in sizes)


def make(inputs: Inputs, batch: int, dtype: DType, device: str) -> Arguments:
    """The forward's arguments: one tensor per spec, ``batch`` first, on ``device`` (``"meta"``: shapes only)."""
    generator = torch.Generator().manual_seed(0)

    def tensor(spec: InputSpec) -> torch.Tensor:
        chosen = _TORCH_DTYPES[spec.dtype or str(dtype)]
        shape = (batch, *spec.shape)
        if device == "meta":
            return torch.empty(shape, device="meta", dtype=chosen)
        if spec.dtype is None or spec.dtype in FLOAT_DTYPES:
            return torch.randn(shape, generator=generator).to(device=device, dtype=chosen)
        return torch.zeros(shape, dtype=chosen, device=device)

    return tuple(tensor(spec) for spec in inputs.args), {name: tensor(spec) for name, spec in inputs.kwargs.items()}


def first_tensor(arguments: Arguments) -> torch.Tensor | None:
    """The first input tensor (the one a result's input shape names)."""
    return next((value for value in [*arguments[0], *arguments[1].values()] if isinstance(value, torch.Tensor)), None)


def described(arguments: Arguments) -> str:
    """``1×3×32×32, tokens 1×16 int64`` for messages."""
    parts = []
    for name, value in [*((None, value) for value in arguments[0]), *arguments[1].items()]:
        text = shape_text(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
        if isinstance(value, torch.Tensor) and value.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            text += f" {str(value.dtype).removeprefix('torch.')}"
        parts.append(f"{name} {text}" if name else text)
    return ", ".join(parts) or "no inputs"


def output_shapes(output: Any, path: str = "output", depth: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of an output of any structure, with where it is: ``output``, ``output[0]``,
    ``output['logits']``, ``output.hidden`` (a dataclass or a namedtuple's field), nested; other values skipped."""
    if isinstance(output, torch.Tensor):
        return [(path, tuple(output.shape))]
    if depth > 20:
        return []
    found: list[tuple[str, tuple[int, ...]]] = []
    if isinstance(output, tuple) and hasattr(output, "_fields"):  # a namedtuple
        for name in output._fields:
            found += output_shapes(getattr(output, name), f"{path}.{name}", depth + 1)
    elif isinstance(output, (tuple, list)):
        for index, value in enumerate(output):
            found += output_shapes(value, f"{path}[{index}]", depth + 1)
    elif isinstance(output, dict):
        for key, value in output.items():
            found += output_shapes(value, f"{path}[{key!r}]", depth + 1)
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        for item in dataclasses.fields(output):
            found += output_shapes(getattr(output, item.name), f"{path}.{item.name}", depth + 1)
    return found


class WithArguments(nn.Module):
    """``module`` called with its own arguments, the first tensor replaceable: what latency times as
    ``module(tensor)`` when the forward takes more than one input."""

    def __init__(self, module: nn.Module, arguments: Arguments) -> None:
        super().__init__()
        self.module = module
        self.args, self.kwargs = arguments

    def forward(self, first: torch.Tensor) -> Any:
        if self.args:
            return self.module(first, *self.args[1:], **self.kwargs)
        return self.module(**self.kwargs)


def timed_case(module: nn.Module, arguments: Arguments) -> tuple[nn.Module, torch.Tensor]:
    """The (module, tensor) latency times for the whole model: the module itself for one positional tensor."""
    args, kwargs = arguments
    first = first_tensor(arguments)
    if first is None:
        raise SpecError([FieldIssue(("inputs",), "no tensor among the inputs: nothing to time")])
    if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
        return module, args[0]
    return WithArguments(module, arguments), first


def shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(value) for value in shape) or "a scalar"
