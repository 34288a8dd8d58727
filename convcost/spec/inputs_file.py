"""``--inputs FILE``: a model's inputs by name, in YAML or JSON (JSON is YAML), every error at ``file:line: field``.

::

    args:                 # positional inputs, in order (optional)
      - shape: 3x32x32
    kwargs:               # keyword inputs: forward(..., tokens=..., mask=...) (optional)
      tokens: {shape: 16, dtype: int64}
      mask: {shape: [16], dtype: bool}

A shape is ``CxHxW`` text, one integer or a list of integers, without the batch; ``dtype`` is optional (default:
the run's float dtype).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convcost.errors import FieldIssue
from convcost.spec import bounds
from convcost.spec.inputs import Inputs, InputSpec, parse_dtype
from convcost.spec.source import parse_input
from convcost.spec.yamlio import Loc, load, suggest

MAX_INPUTS = 100


def load_inputs(path: Path | str) -> Inputs:
    """Read an inputs file; raises SpecError naming ``file:line: field`` for every problem at once."""
    document = load(path)
    data = document.data
    issues: list[FieldIssue] = []
    if not isinstance(data, dict):
        raise document.error([FieldIssue((), "expected a mapping with args (a list) and/or kwargs (a mapping)")])
    for key in data:
        if key not in ("args", "kwargs"):
            hint = suggest(str(key), ["args", "kwargs"])
            issues.append(FieldIssue((str(key),), "unknown key: expected args or kwargs"
                                                   + (f"; did you mean '{hint}'?" if hint else "")))  # fmt: skip
    args: list[InputSpec] = []
    kwargs: dict[str, InputSpec] = {}
    positional = data.get("args", [])
    if not isinstance(positional, list):
        issues.append(FieldIssue(("args",), "expected a list of inputs (each with a shape)"))
    else:
        for index, value in enumerate(positional[:MAX_INPUTS]):
            if (spec := _input(value, ("args", index), issues)) is not None:
                args.append(spec)
    keyword = data.get("kwargs", {})
    if not isinstance(keyword, dict):
        issues.append(FieldIssue(("kwargs",), "expected a mapping of argument names to inputs"))
    else:
        for name, value in list(keyword.items())[:MAX_INPUTS]:
            if not isinstance(name, str) or not name.isidentifier():
                issues.append(FieldIssue(("kwargs", str(name)), "must be a Python name (a keyword argument)"))
            elif (spec := _input(value, ("kwargs", name), issues)) is not None:
                kwargs[name] = spec
    if isinstance(positional, list) and isinstance(keyword, dict):
        if len(positional) + len(keyword) > MAX_INPUTS:
            issues.append(FieldIssue((), f"at most {MAX_INPUTS} inputs"))
        elif not positional and not keyword:
            issues.append(FieldIssue((), "no inputs: give args and/or kwargs"))
    if issues:
        raise document.error(issues)
    return Inputs(tuple(args), kwargs)


def _input(value: Any, loc: Loc, issues: list[FieldIssue]) -> InputSpec | None:
    if isinstance(value, (str, int, list)) and not isinstance(value, bool):
        value = {"shape": value}  # the short form: just the shape
    if not isinstance(value, dict):
        issues.append(FieldIssue(loc, "expected a mapping with shape (and dtype)"))
        return None
    unknown = [key for key in value if key not in ("shape", "dtype")]
    issues.extend(FieldIssue((*loc, str(key)), "unknown key: expected shape or dtype") for key in unknown)
    if "shape" not in value:
        issues.append(FieldIssue(loc, "shape: required, e.g. 3x224x224 or [16]"))
        return None
    shape = value["shape"]
    if isinstance(shape, list) and all(isinstance(side, int) and not isinstance(side, bool) for side in shape):
        shape = "x".join(str(side) for side in shape)
    elif isinstance(shape, int) and not isinstance(shape, bool):
        shape = str(shape)
    if not isinstance(shape, str):
        issues.append(FieldIssue((*loc, "shape"), f"expected CxHxW or a list of integers, got {bounds.shown(shape)}"))
        return None
    try:
        spec = InputSpec(parse_input(shape))  # a dtype has its own field here
    except ValueError as error:
        issues.append(FieldIssue((*loc, "shape"), str(error)))
        return None
    dtype = value.get("dtype")
    if dtype is not None:
        try:
            spec = InputSpec(spec.shape, parse_dtype(str(dtype) if isinstance(dtype, str) else repr(dtype)))
        except ValueError as error:
            issues.append(FieldIssue((*loc, "dtype"), str(error).removeprefix("dtype ")))
            return None
    return None if unknown else spec
