"""Domain exceptions whose messages are ready for users; the CLI maps them to exit codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Loc = tuple[str | int, ...]


class ConvcostError(Exception):
    """Base class of every error convcost raises on purpose."""


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field of a spec; ``loc`` is the field path, e.g. ``("layers", 3, "kernel")``."""

    loc: Loc
    message: str
    line: int | None = None

    @property
    def path(self) -> str:
        """The field path as users write it: ``layers[3].kernel``."""
        text = ""
        for part in self.loc:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else part
        return text


class SpecError(ConvcostError):
    """Invalid input: one or more field issues, all reported at once."""

    def __init__(self, issues: list[FieldIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per issue, ``file:line: field: message`` when a file is known."""
        out = []
        for issue in self.issues:
            where = ""
            if self.source:
                where = f"{self.source}:{issue.line}: " if issue.line else f"{self.source}: "
            field = f"{issue.path}: " if issue.loc else ""
            out.append(f"{where}{field}{issue.message}")
        return out


class UsageError(ConvcostError):
    """A request that cannot be carried out as asked (e.g. --device cuda without CUDA)."""


class MeasurementError(ConvcostError):
    """A measurement failed (a counter crashed or returned nothing)."""


def gathered(issues: list[FieldIssue], default: T, parse: Callable[[], T], loc: Loc | None = None) -> T:
    """``parse()``, or ``default`` with its problems added to ``issues`` (to raise them all at once): a SpecError's
    issues, and given ``loc``, a ValueError's message as an issue at ``loc``."""
    try:
        return parse()
    except SpecError as error:
        issues.extend(error.issues)
    except ValueError as error:
        if loc is None:
            raise
        issues.append(FieldIssue(loc, str(error)))
    return default
