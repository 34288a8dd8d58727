"""The core of the operation registry: an op, its cost and the registry of formulas. No torch here.

:mod:`convcost.cost.ops` and :mod:`convcost.cost.ops_nn` register one formula per op type; import the ops from
:mod:`convcost.cost.ops`, which re-exports this module's names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, NamedTuple, TypeVar

Shape = tuple[int, ...]


class OpKind(str, Enum):
    """What an operation is; each kind has one formula."""

    CONV = "conv"
    LINEAR = "linear"
    NORM = "batchnorm"
    ACT = "activation"
    POOL = "pool"
    ADAPTIVE_POOL = "adaptive pool"
    FLATTEN = "flatten"
    IDENTITY = "identity"
    ADD = "add"
    MATMUL = "matmul"
    ATTENTION = "attention"
    FEATURE_NORM = "feature norm"
    CONV_TRANSPOSE = "conv transpose"
    UPSAMPLE = "upsample"
    EMBEDDING = "embedding"
    RECURRENT = "recurrent"
    MUL = "multiply"
    PARAMETER_USE = "parameter use"
    REDUCE = "reduce"
    ELEMENTWISE = "elementwise"
    NOT_COUNTED = "not counted"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Op:
    """One operation of a model with its input shape; the subclasses add what their formulas need."""

    name: str
    input_shape: Shape
    kind: ClassVar[OpKind]  # each subclass says which; each kind has one formula

    def other_reads(self) -> int:
        """Elements it reads besides its input and its parameters (a matmul's right operand, attention's k and v)."""
        return 0

    def description(self) -> str | None:
        """A short description for tables, where the op says it itself (see :func:`describe`)."""
        return None

    def weight_shape(self) -> Shape | None:
        """The shape of the weight tensor it applies, by formula; None for an op with no such weight."""
        return None


class Cost(NamedTuple):
    """What an op costs by formula. A named tuple: the formula path makes one per op, and a tuple is built in a
    third of a frozen dataclass's time."""

    params: int = 0
    macs: int = 0
    bias_adds: int = 0
    other_ops: int = 0


@dataclass(frozen=True)
class Formula:
    output_shape: Callable[[Op], Shape]
    cost: Callable[[Op], Cost]


OpT = TypeVar("OpT", bound=Op)


_FORMULAS: dict[type[Op], Formula] = {}


def register(
    op_type: type[OpT], output_shape: Callable[[OpT], Shape]
) -> Callable[[Callable[[OpT], Cost]], Callable[[OpT], Cost]]:
    """Register the formulas of an op type; registering a type twice is a programming error."""

    def decorate(cost: Callable[[OpT], Cost]) -> Callable[[OpT], Cost]:
        if op_type in _FORMULAS:
            raise RuntimeError(f"op type {op_type.__name__} is already registered")
        _FORMULAS[op_type] = Formula(output_shape, cost)  # type: ignore[arg-type]
        return cost

    return decorate


def output_shape(op: Op) -> Shape:
    """The output shape of ``op`` by formula."""
    return _FORMULAS[type(op)].output_shape(op)


def cost(op: Op) -> Cost:
    """Params, MACs, bias adds and other ops of ``op`` by formula."""
    return _FORMULAS[type(op)].cost(op)


def registered() -> list[type[Op]]:
    return list(_FORMULAS)


def elements(shape: Shape) -> int:
    return math.prod(shape)
