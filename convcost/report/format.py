"""The output formats and every number, shape and time as text: one formatter per meaning, for every renderer.

Nothing here imports Rich, so the CLI can build its ``--format`` choices from these enums at no cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convcost.cost.roofline import Calibration, Roofline
    from convcost.results.comparison import LatencyStats


class OutputFormat(StrEnum):
    """What compare, batch, model, sweep and calibrate write."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


class CheckFormat(StrEnum):
    """What ``convcost check`` writes: its table is linter lines, and CI gets annotations or JUnit XML."""

    TABLE = "table"
    JSON = "json"
    GITHUB = "github"
    JUNIT = "junit"


def count(value: int | None) -> str:
    """Exact, with thousands separators: 1,234,567."""
    return "—" if value is None else f"{value:,}"


def si(value: float | None) -> str:
    """A number in SI units with three significant digits: 864, 44.6k, 4.23M, 1.14G."""
    if value is None:
        return "—"
    for size, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(value) >= size:
            scaled = value / size
            digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
            return f"{scaled:.{digits}f}{suffix}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def compact_count(value: int) -> str:
    """Exact below a million, else three significant figures: 656, 37,120, 9.27M, 1.23G."""
    return f"{value:,}" if value < 1_000_000 else si(value)


def compact_bytes(value: int) -> str:
    """Bytes in binary units: 512 B, 1.50 KiB, 64.0 MiB."""
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= limit:
            return f"{significant(value / limit)} {suffix}"
    return f"{value} B"


def significant(value: float) -> str:
    """Three significant digits without an exponent: 0.0123, 1.23, 12.3, 123, 1,234."""
    for floor, spec in ((100, ",.0f"), (10, ".1f"), (1, ".2f")):
        if value >= floor:
            return f"{value:{spec}}"
    return f"{value:.3g}"


def rate(value: float | None) -> str:
    return "—" if value is None else significant(value)


def ratio(value: float | None) -> str:
    """``4.60×``, ``∞`` or ``—``."""
    if value is None:
        return "—"
    if value == float("inf"):
        return "∞"
    return f"{value:.2f}×"


def bound_cell(line: Roofline | None, initial: bool = False, missing: str = "—") -> str:
    """'78% compute' (``initial``: '78% C', a legend says which): the share of the roofline bound achieved and what
    bounds it; ``missing`` without a verdict."""
    if line is None or line.verdict is None:
        return missing
    verdict = line.verdict.short[0].upper() if initial else line.verdict.short
    return f"{percent(line.fraction)} {verdict}" if line.fraction is not None else verdict


def with_interval(value: float | None, low: float | None, high: float | None) -> str:
    """``3.81× (3.70–3.88)``: a ratio with its 95 % interval, or the bare ratio without one."""
    if value is None or low is None or high is None:
        return ratio(value)
    return f"{ratio(value)} ({low:.2f}–{high:.2f})"


def percent(fraction: float | None, digits: int = 0) -> str:
    """A fraction as a percentage: 0.78 → ``78%`` (``digits`` decimals), ``—`` when there is none."""
    return "—" if fraction is None else f"{100 * fraction:.{digits}f}%"


def share(part: int, whole: int) -> str:
    """``part`` as a share of ``whole`` with one decimal: ``4.7%``, ``—`` of nothing."""
    return f"{100 * part / whole:.1f}%" if whole else "—"


def milliseconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def optional_ms(value: float | None) -> str:
    return "—" if value is None else milliseconds(value)


def ms_interval(stats: LatencyStats) -> str:
    """``5.28 (5.23–5.32)``: the shown (best) figure with its interval."""
    if stats.interval_ms is None:
        return milliseconds(stats.shown_ms)
    low, high = stats.interval_ms
    return f"{milliseconds(stats.shown_ms)} ({milliseconds(low)}–{milliseconds(high)})"


def sampling_text(stats: LatencyStats) -> str:
    """``51 rounds in 1.2 s, converged to ±3%`` (or why it did not)."""
    spent = f"{stats.sampled_s:.1f} s" if stats.sampled_s >= 0.1 else f"{stats.sampled_s * 1e3:.0f} ms"
    rounds = f"{stats.rounds} interleaved round{'s' if stats.rounds != 1 else ''} in {spent}"
    if stats.converged:
        return f"{rounds}, converged to ±{stats.target_pct:g}%"
    why = {"time": "--max-time spent", "rounds": "fixed --rounds", "limit": "round limit"}.get(stats.stopped_by, "")
    return f"{rounds}, NOT converged to ±{stats.target_pct:g}%" + (f" ({why})" if why else "")


def shape(value: Sequence[int] | None) -> str:
    """``1×64×126×126``."""
    return "—" if value is None else "×".join(str(v) for v in value)


def csv_shape(value: Sequence[int] | None) -> str:
    """A shape for CSV: plain ASCII ``1x64x126x126``, empty when there is none."""
    return "" if value is None else "x".join(str(v) for v in value)


def dims(value: Sequence[int] | None, batch: bool = False) -> str:
    """A shape without its batch dimension (``32×112×112``)."""
    shown = value if batch or value is None else value[1:]
    return shape(shown) if shown else "—"


def square_shape(value: Sequence[int]) -> str:
    """A shape without its batch, square spatial sizes squared: ``32×112²`` for 32×112×112."""
    shown = list(value[1:])
    if len(shown) == 3 and shown[1] == shown[2]:
        return f"{shown[0]}×{shown[1]}²"
    return "×".join(str(v) for v in shown) if shown else "—"


def pair(value: Sequence[int] | str) -> str:
    """A (height, width) pair: ``3`` when both are 3, else ``3×5``."""
    if isinstance(value, str):
        return value
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def threads_text(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads != 1 else "")


def allocator_text(state: str) -> str:
    """'allocator tuned' or the reason it is not (the full state is in the JSON environment)."""
    return "allocator tuned" if state.startswith("glibc mallopt") else f"allocator {state}"


def peaks_text(calibration: Calibration) -> str:
    """This machine's peaks in one phrase: compute, memory, per-call cost and the ridge."""
    overhead = calibration.grouped_call_overhead_s
    grouped = "" if overhead is None else f" ({significant(overhead * 1e6)} grouped)"
    return (
        f"{significant(calibration.peak_flops / 1e9)} GFLOP/s matmul, "
        f"{significant(calibration.peak_bandwidth / 1e9)} GB/s copy, "
        f"{significant(calibration.call_overhead_s * 1e6)} µs per call{grouped}; "
        f"ridge {significant(calibration.ridge)} FLOP/byte"
    )
