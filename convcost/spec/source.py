"""Where a model comes from: a model file, or ``package.module:factory`` with an input shape (no torch here)."""

from __future__ import annotations

import os

from convcost.spec import bounds


def is_import_path(source: str) -> bool:
    """``package.module:factory`` rather than a model file."""
    return ":" in source and not source.lower().endswith((".yaml", ".yml")) and not os.path.exists(source)


def parse_input(text: str) -> tuple[int, ...]:
    """``CxHxW`` (or ``C,H,W``, ``CxL``, ``CxDxHxW``) → a tuple of positive ints; raises ValueError."""
    parts = [part.strip() for part in text.replace("×", "x").replace(",", "x").lower().split("x")]
    ascii_digits = all(part.isascii() and part.isdigit() for part in parts)
    too_long = ascii_digits and any(len(part.lstrip("0")) > bounds.MAX_NUMBER_TEXT for part in parts)
    if not parts or not ascii_digits or (not too_long and min(int(part) for part in parts) < 1):
        raise ValueError(f"expected CxHxW with positive integers (e.g. 3x224x224), got {bounds.shown(text)}")
    if too_long or max(int(part) for part in parts) > bounds.COUNT.high:  # int() only of short digits
        raise ValueError(f"must be CxHxW with each side {bounds.COUNT.describe()}, got {bounds.shown(text)}")
    return tuple(int(part) for part in parts)
