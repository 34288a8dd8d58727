"""What ``convcost suggest`` and ``convcost convert`` are asked for: the target structure and its settings, validated
before torch is imported (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds
from convcost.spec.compare import positive_int


class Target(StrEnum):
    """The structure a dense conv becomes (or, for ``dense``, what a depthwise + 1×1 pair becomes)."""

    SEPARABLE = "separable"  # depthwise R×S (multiplier m) then 1×1
    SPATIAL = "spatial"  # R×1 (rank M) then 1×S
    GROUPED = "grouped"  # the same conv with G groups
    DENSE = "dense"  # a depthwise conv and the 1×1 conv after it, merged into one dense conv


@dataclass(frozen=True)
class ConvertSpec:
    """A validated request: ``multiplier`` for separable, ``rank`` for spatial (None: full rank), ``groups`` for
    grouped, ``min_saving`` the MAC ratio (now ÷ after) a layer must reach to be selected (None: every layer)."""

    to: Target
    multiplier: int = 1
    rank: int | None = None
    groups: int = 1
    min_saving: float | None = None  # None: every candidate

    def describe(self) -> str:
        return {
            Target.SEPARABLE: f"depthwise-separable, multiplier {self.multiplier}",
            Target.SPATIAL: "spatially separable, " + (f"rank {self.rank}" if self.rank else "full rank"),
            Target.GROUPED: f"grouped, {self.groups} groups",
        }.get(self.to, "dense (merged pairs)")


def parse_convert(
    to: str = "separable",
    multiplier: str | int | None = None,
    rank: str | int | None = None,
    min_saving: str | float | None = None,
    allow_dense: bool = True,
) -> ConvertSpec:
    """Flags → a ConvertSpec; every problem is a FieldIssue naming its flag (raised together as a SpecError)."""
    issues: list[FieldIssue] = []
    names = [target.value for target in Target if allow_dense or target is not Target.DENSE]
    shown_names = ", ".join(name if name != "grouped" else "grouped:G" for name in names)
    target, groups = Target.SEPARABLE, 1
    head, sep, tail = str(to).strip().lower().partition(":")
    if head == Target.DENSE.value and not allow_dense:
        issues.append(FieldIssue(("to",), "dense merges depthwise + 1×1 pairs: convcost convert --to dense does it"))
    elif head not in names:
        issues.append(FieldIssue(("to",), f"expected one of {shown_names}, got {bounds.shown(to)}"))
    else:
        target = Target(head)
        if target is Target.GROUPED:
            try:
                groups = positive_int(tail) if sep else 0
            except ValueError as error:
                issues.append(FieldIssue(("to",), f"grouped:G: G {error}"))
            else:
                if groups < 2:
                    issues.append(FieldIssue(("to",), f"grouped:G needs G ≥ 2, got {bounds.shown(to)}"))
        elif sep:
            issues.append(FieldIssue(("to",), f"only grouped takes ':G', got {bounds.shown(to)}"))
    chosen: dict[str, Any] = {"multiplier": 1, "rank": None, "min_saving": None}
    for flag, value, parse, needs, why in (
        ("multiplier", multiplier, positive_int, Target.SEPARABLE, "is for --to separable (the depth multiplier m)"),
        ("rank", rank, positive_int, Target.SPATIAL, "is for --to spatial (the rank M of R×1 then 1×S)"),
        ("min_saving", min_saving, parse_saving, target, ""),
    ):
        if value is None:
            continue
        try:
            chosen[flag] = parse(value)
        except ValueError as error:
            issues.append(FieldIssue((flag,), str(error)))
        if target is not needs:
            issues.append(FieldIssue((flag,), why))
    if issues:
        raise SpecError(issues)
    return ConvertSpec(target, chosen["multiplier"], chosen["rank"], groups, chosen["min_saving"])


def parse_saving(value: str | float) -> float:
    """``2x``, ``2×`` or ``2`` → 2.0: a MAC ratio now ÷ after of at least 1; raises ValueError."""
    text = str(value).strip().lower().removesuffix("x").removesuffix("×").strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"expected a ratio such as 2x (MACs now ÷ after), got {bounds.shown(value)}") from None
    if not 1 <= number <= 1e6:  # also refuses nan and inf
        raise ValueError(f"must be a ratio from 1x to 1000000x, got {bounds.shown(value)}")
    return number
