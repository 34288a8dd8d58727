"""A model's inputs and a factory's arguments, as flags give them: ``--input SHAPE[:DTYPE]`` and ``--arg NAME=VALUE``.

Each ``--input`` is one positional argument of the model's forward, in order, without the batch (``--batch``
prepends it to every input). An integer or bool input (token ids for an ``nn.Embedding``) is filled with zeros,
valid for any embedding size; a float input with seeded normal values. No torch here: dtypes are names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds
from convcost.spec.source import parse_input

# the dtypes an input may have; "float" inputs take the run's --dtype unless one is named
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
INPUT_DTYPES = FLOAT_DTYPES + INTEGER_DTYPES


@dataclass(frozen=True)
class InputSpec:
    """One input tensor: its shape without the batch, and its dtype (None: the run's float dtype)."""

    shape: tuple[int, ...]
    dtype: str | None = None

    def describe(self) -> str:
        shape = "×".join(str(value) for value in self.shape) or "a scalar"
        return shape + (f" {self.dtype}" if self.dtype else "")


@dataclass(frozen=True)
class Inputs:
    """The forward's arguments: positional (``--input`` or a file's ``args``) and keyword (a file's ``kwargs``)."""

    args: tuple[InputSpec, ...] = ()
    kwargs: dict[str, InputSpec] = field(default_factory=dict)

    def named(self) -> list[tuple[str, InputSpec]]:
        """Every input with the name it is reported under: ``args[0]``, ..., then each keyword's name."""
        return [(f"args[{index}]", spec) for index, spec in enumerate(self.args)] + list(self.kwargs.items())

    def settings(self, batch: int) -> dict[str, Any]:
        """The inputs as a result's settings record them: one positional float input its shape without the batch
        (as before); else ``inputs``, each name's full shape (the batch first) and dtype (None: the run's)."""
        if len(self.args) == 1 and not self.kwargs and self.args[0].dtype is None:
            return {"input": list(self.args[0].shape)}
        return {"inputs": {name: {"shape": [batch, *spec.shape], "dtype": spec.dtype} for name, spec in self.named()}}


def parse_dtype(text: str) -> str:
    """An input's dtype name (``int64``, ``float16``; ``long``, ``half``, ``int`` and ``float`` as torch says them)."""
    aliases = {"long": "int64", "int": "int64", "half": "float16", "float": "float32", "double": "float64"}
    name = text.strip().lower().removeprefix("torch.")
    name = aliases.get(name, name)
    if name not in INPUT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(INPUT_DTYPES)}, got {bounds.shown(text)}")
    return name


def parse_input_spec(text: str) -> InputSpec:
    """``SHAPE[:DTYPE]`` → an InputSpec: ``3x224x224``, ``16:int64``, ``3x32x32:float16``; raises ValueError."""
    shape_text, sep, dtype_text = text.partition(":")
    try:
        shape = parse_input(shape_text)
    except ValueError as error:
        expected = "SHAPE[:DTYPE] with positive integers (e.g. 3x224x224 or 16:int64)"
        message = str(error).replace("CxHxW with positive integers (e.g. 3x224x224)", expected, 1)
        raise ValueError(message) from None
    return InputSpec(shape, parse_dtype(dtype_text) if sep else None)


def parse_inputs(texts: list[str] | tuple[str, ...]) -> Inputs:
    """Every ``--input`` given, in order, as positional inputs; raises SpecError naming the flag."""
    issues, specs = [], []
    for text in texts:
        try:
            specs.append(parse_input_spec(text))
        except ValueError as error:
            issues.append(FieldIssue(("input",), str(error)))
    if issues:
        raise SpecError(issues)
    return Inputs(tuple(specs))


def parse_arguments(texts: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--arg NAME=VALUE`` → keyword arguments of the factory, each value a YAML scalar (``false`` → False,
    ``3`` → 3, ``0.5`` → 0.5, ``null`` → None, anything else a string); raises SpecError naming the flag."""
    import yaml

    issues: list[FieldIssue] = []
    arguments: dict[str, Any] = {}
    for text in texts:
        name, sep, value_text = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            expected = f"expected NAME=VALUE with NAME a Python name, got {bounds.shown(text)}"
            issues.append(FieldIssue(("arg",), expected))
            continue
        if name in arguments:
            issues.append(FieldIssue(("arg",), f"{name} is given twice"))
            continue
        if len(value_text) > 1000:
            issues.append(FieldIssue(("arg", name), "is longer than 1,000 characters"))
            continue
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError:
            value = value_text
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            value = value_text  # a list or a mapping in YAML syntax: the text as written
        arguments[name] = value
    if issues:
        raise SpecError(issues)
    return arguments


def combined(flags: Inputs | None, file: Inputs | None) -> Inputs | None:
    """``--input`` and ``--inputs`` together: the flags are the positional inputs and the file may add keyword
    inputs only (a file with ``args`` too would leave their order unclear); raises SpecError."""
    if flags is None or file is None:
        return flags or file
    if file.args:
        message = "and a --inputs file with args: give the positional inputs in one place (the file's args, or "
        raise SpecError([FieldIssue(("input",), message + "--input with the file's kwargs)")])
    return Inputs(flags.args, file.kwargs)
