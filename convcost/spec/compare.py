"""Validated layer specs: what a user asks for, before anything is built.

Values arrive from CLI flags (strings) or YAML (ints, strings, lists); the validators here accept both
and reject anything ambiguous with a message that says what is expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from convcost.cost.formulas import Act, Norm, Padding, Pair
from convcost.errors import FieldIssue, SpecError, UsageError
from convcost.spec import bounds


class LayerKind(StrEnum):
    """The layer kinds convcost builds; each expands into conv stages (see convcost.spec.kinds)."""

    DENSE = "dense"
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    SEPARABLE = "separable"
    GROUPED = "grouped"
    SPATIAL = "spatial"
    SHARED = "shared"


class DType(StrEnum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"

    @property
    def itemsize(self) -> int:
        return 4 if self is DType.FLOAT32 else 2


def _one_of(values: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: the choices as pydantic words them, so that every command says a bad choice alike."""
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


# ASCII digits only: int() would also take '٣' or '８', which nobody means in a layer file
def run_settings(dtype: str, device: str, threads: int = 1) -> tuple[DType, str]:
    """``--dtype``, ``--device`` and ``--threads`` from a command line, checked together (SpecError names each)."""
    issues = []
    chosen_dtype = DType.FLOAT32
    try:
        chosen_dtype = DType(dtype.strip().lower())
    except ValueError:
        issues.append(FieldIssue(("dtype",), f"Input should be {_one_of(DType)}, got {dtype!r}"))
    chosen_device = device.strip().lower()
    if chosen_device not in ("cpu", "cuda"):
        issues.append(FieldIssue(("device",), f"Input should be {_one_of(('cpu', 'cuda'))}, got {device!r}"))
    if (problem := bounds.problem("threads", threads)) is not None:
        issues.append(FieldIssue(("threads",), problem))
    if issues:
        raise SpecError(issues)
    return chosen_dtype, chosen_device


def check_meta(meta: bool, timed: bool, device: str) -> None:
    """UsageError for ``--meta`` with what needs a real run: ``--latency`` (``timed``), or a device."""
    if meta and timed:
        raise UsageError("--meta: counts without running anything; --latency times a real run: drop one of them")
    if meta and device != "cpu":
        raise UsageError(f"--meta: counts on the meta device, not on {device}: drop --device")


_PAIR = re.compile(r"^\s*([0-9]+)\s*[xX×,]\s*([0-9]+)\s*$")
_INT = re.compile(r"^\s*[+-]?[0-9]+\s*$")


def _int(value: Any, *, minimum: int, what: str, bound: bounds.Bound = bounds.COUNT, yaml: bool = False) -> int:
    """A whole number within ``bound`` from YAML (int, float, text) or a flag (text); ValueError otherwise.

    ``yaml``: the value was read from a YAML file, where ``1e6`` is a string only because of YAML 1.1 (a hint
    that would mislead on a command line).
    """
    if type(value) is int and minimum <= value <= bound.high and value >= bound.low and not bound.low_open:
        return value  # most values: what the checks below pass
    if isinstance(value, bool):
        raise ValueError(f"must be {what}, got boolean {str(value).lower()} (YAML reads yes/no/on/off as booleans)")
    if isinstance(value, float):
        if value.is_integer():
            value = int(value)
        elif not math.isfinite(value):
            raise ValueError(f"must be {what} {bound.describe()}, got {value}")
        else:
            raise ValueError(f"must be {what}, got {value}")
    if isinstance(value, str):
        if not _INT.match(value):
            hint = ""
            if yaml and re.match(r"^\s*[\d.]+[eE][+-]?\d+\s*$", value):
                hint = f" (YAML 1.1 reads {value.strip()} as a string: write the number out in full)"
            raise ValueError(f"must be {what}, got {bounds.shown(value)}{hint}")
        if len(value.strip().lstrip("+-").lstrip("0")) > bounds.MAX_NUMBER_TEXT:  # before int(): see bounds
            raise ValueError(f"must be {what} {bound.describe()}, got {bounds.shown(value.strip())}")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"must be {what}, got {bounds.shown(value)}")
    if value < minimum:
        raise ValueError(f"must be {what}, got {bounds.shown(value)}")
    bounds.check(value, bound, what)
    return value


def _pair(value: Any, *, minimum: int, what: str, bound: bounds.Bound, yaml: bool = False) -> Pair:
    if type(value) is int and minimum <= value <= bound.high and value >= bound.low and not bound.low_open:
        return (value, value)  # most values: what the checks below pass
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"must be {what}, got {bounds.shown(list(value))}")
        return (
            _int(value[0], minimum=minimum, what=what, bound=bound, yaml=yaml),
            _int(value[1], minimum=minimum, what=what, bound=bound, yaml=yaml),
        )
    if isinstance(value, str):
        match = _PAIR.match(value)
        if match:
            sides = (match.group(1), match.group(2))
            if max(len(side.lstrip("0")) for side in sides) > bounds.MAX_NUMBER_TEXT:  # before int(): see bounds
                raise ValueError(f"must be {what} {bound.describe()}, got {bounds.shown(value)}")
            if min(map(int, sides)) < minimum:
                raise ValueError(f"must be {what}, got {value!r}")
            return (_int(sides[0], minimum=minimum, what=what, bound=bound),
                    _int(sides[1], minimum=minimum, what=what, bound=bound))  # fmt: skip
    single = _int(value, minimum=minimum, what=what, bound=bound, yaml=yaml)
    return (single, single)


def positive_pair(value: Any, yaml: bool = False) -> Pair:
    return _pair(value, minimum=1, what="a positive integer or RxS", bound=bounds.COUNT, yaml=yaml)


def padding_value(value: Any, yaml: bool = False) -> Padding:
    if isinstance(value, str) and value.strip().lower() == "same":
        return "same"
    return _pair(value, minimum=0, what="a non-negative integer, RxS or 'same'", bound=bounds.PADDING, yaml=yaml)


def size_value(value: Any, yaml: bool = False) -> Pair:
    return _pair(value, minimum=1, what="a positive integer or HxW", bound=bounds.COUNT, yaml=yaml)


def positive_int(value: Any, yaml: bool = False, bound: bounds.Bound = bounds.COUNT) -> int:
    return _int(value, minimum=1, what="a positive integer", bound=bound, yaml=yaml)


def _in_yaml(info: ValidationInfo) -> bool:
    """Whether pydantic validates a YAML file's values (yamlio.validate says so in the context)."""
    return isinstance(info.context, dict) and bool(info.context.get("yaml"))


def yaml_aware(parse: Callable[..., Any], **options: Any) -> Callable[[Any, ValidationInfo], Any]:
    """``parse`` as a pydantic validator that knows whether the value came from YAML (for the YAML 1.1 hint)."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        try:  # the YAML flag changes only a message: the context is read when there is one to write
            return parse(value, **options) if options else parse(value)
        except ValueError:
            if not _in_yaml(info):
                raise
        return parse(value, yaml=True, **options)

    return validate


def strict_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ValueError(f"must be true or false, got {value!r}")


def _enum_text(value: Any) -> Any:
    # YAML 1.1 turns a bare `off`/`no` into False: say so instead of "not a valid enum".
    if isinstance(value, bool):
        raise ValueError(
            f"got boolean {str(value).lower()} (YAML reads off/no/on/yes as booleans): write none or quote it"
        )
    return value.strip().lower() if isinstance(value, str) else value  # as run_settings reads them


# What a YAML file may write, for the JSON Schema (`convcost schema`): 3, "3x5" or [3, 5].
_PAIR_TEXT = Annotated[str, Field(pattern=r"^\s*0*[1-9][0-9]*\s*[xX×,]\s*0*[1-9][0-9]*\s*$")]  # no zero sides
_NON_NEGATIVE_PAIR_TEXT = Annotated[str, Field(pattern=r"^\s*[0-9]+\s*[xX×,]\s*[0-9]+\s*$")]
_POSITIVE_INPUT = Annotated[int, Field(ge=1)]  # the upper bounds (convcost.spec.bounds) are checked, not in the schema
_PAIR_INPUT = _POSITIVE_INPUT | _PAIR_TEXT | Annotated[list[_POSITIVE_INPUT], Field(min_length=2, max_length=2)]
_NON_NEGATIVE_INPUT = Annotated[int, Field(ge=0)]
_PADDING_INPUT = (
    _NON_NEGATIVE_INPUT | Literal["same"] | _NON_NEGATIVE_PAIR_TEXT
    | Annotated[list[_NON_NEGATIVE_INPUT], Field(min_length=2, max_length=2)]
)  # fmt: skip

PositivePair = Annotated[Pair, BeforeValidator(yaml_aware(positive_pair), json_schema_input_type=_PAIR_INPUT)]
PaddingField = Annotated[Padding, BeforeValidator(yaml_aware(padding_value), json_schema_input_type=_PADDING_INPUT)]
SizeField = Annotated[Pair, BeforeValidator(yaml_aware(size_value), json_schema_input_type=_PAIR_INPUT)]
PositiveInt = Annotated[int, BeforeValidator(yaml_aware(positive_int), json_schema_input_type=_POSITIVE_INPUT)]


def bounded_int(bound: bounds.Bound) -> Any:
    """A positive integer field with its own range (``repeat``, ``expand``, ``rounds``)."""
    return Annotated[
        int, BeforeValidator(yaml_aware(positive_int, bound=bound), json_schema_input_type=_POSITIVE_INPUT)
    ]


def bounded_number(bound: bounds.Bound, what: str = "a number") -> Any:
    """A finite number field within ``bound`` (``min_time``)."""

    def parse(value: Any) -> float:
        return bounds.real(value, bound, what)

    return Annotated[
        float, BeforeValidator(parse, json_schema_input_type=Annotated[float, Field(ge=bound.low, le=bound.high)])
    ]


StrictBool = Annotated[bool, BeforeValidator(strict_bool, json_schema_input_type=bool)]
NormField = Annotated[Norm, BeforeValidator(_enum_text)]
ActField = Annotated[Act, BeforeValidator(_enum_text)]


class StageOverride(BaseModel):
    """Settings of one stage that differ from the layer's (e.g. ``pointwise: {padding: 1}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernel: PositivePair | None = None
    stride: PositivePair | None = None
    padding: PaddingField | None = None
    dilation: PositivePair | None = None
    bias: StrictBool | None = None
    norm: NormField | None = None
    act: ActField | None = None


STAGE_NAMES = ("dense", "depthwise", "pointwise", "grouped", "row", "column", "shared")


class StageOverrides(BaseModel):
    """Per-stage overrides, keyed by stage name: shared by compare's options and a model file's conv layers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dense: StageOverride | None = None
    depthwise: StageOverride | None = None
    pointwise: StageOverride | None = None
    grouped: StageOverride | None = None
    row: StageOverride | None = None
    column: StageOverride | None = None
    shared: StageOverride | None = None

    def override(self, stage: str) -> StageOverride | None:
        value = getattr(self, stage, None) if stage in STAGE_NAMES else None
        return value if isinstance(value, StageOverride) else None

    def overrides(self) -> dict[str, StageOverride]:
        """The stages given an override, by name."""
        return {name: value for name in STAGE_NAMES if isinstance(value := getattr(self, name, None), StageOverride)}


class LayerOptions(StageOverrides):
    """The conv layer being compared: the dense reference and every alternative are derived from it."""

    cin: PositiveInt
    cout: PositiveInt
    kernel: PositivePair
    stride: PositivePair = (1, 1)
    padding: PaddingField = (0, 0)
    dilation: PositivePair = (1, 1)
    groups: PositiveInt = 1
    multiplier: PositiveInt = 1
    bias: StrictBool = True
    mid: PositiveInt | None = Field(default=None, description="spatial: channels between the R×1 and 1×S convs")
    norm: NormField = Norm.NONE
    act: ActField = Act.NONE


def _kinds(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_KIND_WORD = "(" + "|".join(kind.value for kind in LayerKind) + ")"
_KINDS_INPUT = (
    Annotated[list[LayerKind], Field(min_length=1)]
    | Annotated[str, Field(pattern=rf"^\s*{_KIND_WORD}(\s*,\s*{_KIND_WORD})*\s*$")]
)  # "separable, grouped" is accepted too


class CompareSpec(LayerOptions):
    """One comparison: a layer, its input, and the alternatives to compare it against."""

    name: str | None = None
    size: SizeField = (128, 128)
    batch: PositiveInt = 1
    vs: Annotated[list[LayerKind], BeforeValidator(_kinds, json_schema_input_type=_KINDS_INPUT)] = Field(
        default_factory=lambda: [LayerKind.SEPARABLE], min_length=1
    )
    dtype: Annotated[DType, BeforeValidator(_enum_text)] = DType.FLOAT32
    device: Annotated[Literal["cpu", "cuda"], BeforeValidator(_enum_text)] = "cpu"


def issues_from_validation(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[FieldIssue]:
    """Turn pydantic's errors into FieldIssues with clean, user-facing messages."""
    issues = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not _is_internal_loc(part))
        message = str(item["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required"
        elif item["type"] == "enum" or item["type"] == "literal_error":
            message = f"{message}, got {item.get('input')!r}"
        elif item["type"] == "too_short" and loc == ("vs",):
            message = "must name at least one kind"
        elif item["type"] == "string_type":
            message = f"must be text, got {item.get('input')!r}"
        issues.append(FieldIssue(prefix + loc, message))
    return issues


def _is_internal_loc(part: Any) -> bool:
    # pydantic adds validator names such as 'function-before[...]' to some locations
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))
