"""``convcost sweep``'s grid: comma-separated axes of cin × cout × kernel × size, each point a validated spec.

Every grid point is validated here, before anything runs (and before torch is imported); :mod:`convcost.run.sweep`
then compares the points in turn.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from convcost.errors import FieldIssue, SpecError
from convcost.spec import bounds
from convcost.spec.compare import CompareSpec, positive_int, positive_pair, size_value
from convcost.spec.kinds import parse_compare

# The swept axes: spec field → (how one value is validated, what it must be).
AXES: dict[str, Callable[[Any], Any]] = {
    "cin": positive_int,
    "cout": positive_int,
    "kernel": positive_pair,
    "size": size_value,
}


def split_axis(text: str) -> list[str]:
    """'8, 32,128' → ['8', '32', '128'] (order kept, repeats dropped)."""
    return list(dict.fromkeys(part.strip() for part in text.split(",")))


def plan(axes: dict[str, str], fixed: dict[str, Any]) -> list[CompareSpec]:
    """Every grid point as a validated spec; all problems raised at once, each naming its point."""
    issues: list[FieldIssue] = []
    values = {field: split_axis(text) for field, text in axes.items()}
    # the grid's size is bounded before any point is validated or planned
    size = math.prod(len(axis) for axis in values.values())
    if size > bounds.MAX_SWEEP_POINTS:
        counts = " × ".join(f"{len(axis):,} {field}" for field, axis in values.items())
        loc = (max(values, key=lambda field: len(values[field])),)
        raise SpecError(
            [FieldIssue(loc, f"the grid has {counts} = {size:,} points, more than the {bounds.MAX_SWEEP_POINTS:,} "
                             "a sweep runs")]
        )  # fmt: skip
    for field in axes:
        for value in values[field]:
            try:
                AXES[field](value)
            except ValueError as error:
                issues.append(FieldIssue((field,), f"{value!r} {error}" if value else "empty value in the list"))
    if issues:
        raise SpecError(issues)
    specs: list[CompareSpec] = []
    for combination in itertools.product(*values.values()):
        point = dict(zip(values, combination, strict=True))
        where = ", ".join(f"{field} {value}" for field, value in point.items())
        try:
            spec = parse_compare({**fixed, **point})  # planned too
        except SpecError as error:
            for issue in error.issues:
                # a problem with a fixed option is the same at every point: say it once, without a point
                on_axis = bool(issue.loc) and issue.loc[0] in values
                located = replace(issue, message=f"at {where}: {issue.message}") if on_axis else issue
                if located not in issues:
                    issues.append(located)
            continue
        specs.append(spec)
    if issues:
        raise SpecError(issues)
    return specs


def describe(spec: CompareSpec) -> str:
    """'8→64 3×3 @56×56' for a grid point."""
    (r, s), (h, w) = spec.kernel, spec.size
    return f"{spec.cin}→{spec.cout} {r}×{s} @{h}×{w}"
