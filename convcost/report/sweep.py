"""The sweep report: one row per grid point and alternative, as a Rich table, CSV or Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from convcost.report.compare import render_roofline
from convcost.report.export import fixed, markdown_table, to_csv, to_json
from convcost.report.format import (
    OutputFormat,
    allocator_text,
    csv_shape,
    optional_ms,
    pair,
    percent,
    ratio,
    threads_text,
    with_interval,
)
from convcost.report.literal import visible
from convcost.report.tables import FitTable, prose
from convcost.results.comparison import Sweep, SweepPoint

SWEEP_CSV_COLUMNS = [
    "cin", "cout", "kernel", "size", "vs", "params_ratio", "macs_ratio", "speedup", "efficiency",
    "roofline_speedup", "dense_ms", "alternative_ms", "dense_spread_pct", "alternative_spread_pct", "speedup_low",
    "speedup_high", "speedup_typical", "converged", "busy",
    "dense_verdict", "alternative_verdict", "ok",
]  # fmt: skip


def sweep_title(sweep: Sweep) -> str:
    env = sweep.environment
    axes = " × ".join(f"{name} {','.join(values)}" for name, values in sweep.axes.items())
    kinds = sorted({point.vs for point in sweep.points})
    return (
        f"Sweep dense vs {', '.join(kinds)}: {axes} · {env.dtype} · {env.device} · {threads_text(env.threads)} · "
        f"{allocator_text(env.allocator)}"
    )


def _sweep_columns(sweep: Sweep) -> list[str]:
    """Layer, [vs], MAC ratio, speedup and its share of the ratio, [roofline prediction], times, [verdicts]."""
    points = sweep.points
    shown = {
        "vs": len({point.vs for point in points}) > 1,
        "Roofline": any(point.roofline_speedup is not None for point in points),
        "ms dense → alt": any(point.dense_ms is not None for point in points),
        "Bound": any(point.dense_verdict for point in points),
    }
    columns = ["Layer", "vs", "MACs ÷", "Speedup", "of MACs", "Roofline", "ms dense → alt", "Bound"]
    return [column for column in columns if shown.get(column, True)]


def _sweep_cells(point: SweepPoint, columns: list[str]) -> list[str]:
    def letter(verdict: str | None) -> str:
        return (verdict or "—")[0].upper()

    cells = {
        "Layer": f"{point.cin}→{point.cout} {point.kernel[0]}×{point.kernel[1]} @{pair(point.size)}",
        "vs": point.vs,
        "MACs ÷": ratio(point.macs_ratio),
        "Speedup": with_interval(point.speedup, point.speedup_low, point.speedup_high),
        "of MACs": percent(point.efficiency),
        "Roofline": ratio(point.roofline_speedup),
        "ms dense → alt": f"{optional_ms(point.dense_ms)} → {optional_ms(point.alternative_ms)}",
        "Bound": f"{letter(point.dense_verdict)} → {letter(point.alternative_verdict)}",
    }
    return [cells[column] for column in columns]


def render_sweep_table(sweep: Sweep, roofline: bool = False) -> Group:
    """The sweep's table; ``roofline`` adds each grid point's full roofline tables under it (as compare's does)."""
    columns = _sweep_columns(sweep)
    table = FitTable()
    table.add_columns(columns, right=[column for column in columns if column not in ("Layer", "vs", "Bound")])
    for point in sweep.points:
        table.add_row(*_sweep_cells(point, columns), style=None if point.ok else "bold red")
    parts: list[RenderableType] = [Text(visible(sweep_title(sweep)), style="bold"), table,
                                   prose(sweep_legend(sweep, columns), style="dim")]  # fmt: skip
    parts += [Text(visible(f"✗ {failure}"), style="bold red") for failure in sweep.failures]
    for comparison in sweep.comparisons if roofline else []:
        dense = comparison.dense
        kernel, size = dense.stages[0].kernel, (dense.input_shape[2], dense.input_shape[3])
        label = f"{comparison.spec['cin']}→{comparison.spec['cout']} {kernel[0]}×{kernel[1]} @{pair(size)}"
        parts += [Rule(label), render_roofline(comparison)]
    return Group(*parts)


def sweep_legend(sweep: Sweep, columns: list[str]) -> str:
    parts = [
        "Speedup = dense ÷ alternative latency (best figures: the 10% quantile of interleaved rounds, with "
        "the 95% interval); 'of MACs' = speedup ÷ MACs ÷."
    ]
    unconverged = sum(point.converged is False for point in sweep.points)
    busy = sum(bool(point.busy) for point in sweep.points)
    if unconverged:
        parts.append(f"{unconverged} of {len(sweep.points)} speedups did not converge to the target (JSON: converged).")
    if busy:
        parts.append(f"The machine was busy while {busy} of {len(sweep.points)} points were timed (JSON: busy).")
    if "Roofline" in columns:
        parts.append("Roofline = the speedup this machine's roofline predicts.")
    if "Bound" in columns:
        parts.append("Bound: C compute-, M memory-, O overhead-bound.")
    if sweep.environment.calibration is None:
        env = sweep.environment
        parts.append(f"No calibration at {env.dtype}, {threads_text(env.threads)}: run convcost calibrate for "
                     "roofline predictions.")  # fmt: skip
    return " ".join(parts)


def sweep_csv_rows(sweep: Sweep) -> list[dict[str, Any]]:
    rows = [
        {**point.to_dict(), "kernel": csv_shape(point.kernel), "size": csv_shape(point.size)} for point in sweep.points
    ]
    return [fixed(row, ("params_ratio", "macs_ratio", "speedup", "efficiency", "roofline_speedup", "dense_ms",
                        "alternative_ms", "dense_spread_pct", "alternative_spread_pct", "speedup_low", "speedup_high",
                        "speedup_typical")) for row in rows]  # fmt: skip


def sweep_to_markdown(sweep: Sweep) -> str:
    columns = _sweep_columns(sweep)
    right = {index for index, column in enumerate(columns) if column not in ("Layer", "vs", "Bound")}
    parts = [f"### {sweep_title(sweep)}", ""]
    parts.append(markdown_table(columns, [_sweep_cells(point, columns) for point in sweep.points], right))
    parts += ["", sweep_legend(sweep, columns), *[f"- ✗ {failure}" for failure in sweep.failures]]
    return "\n".join(parts).rstrip() + "\n"


def render_sweep(sweep: Sweep, output_format: OutputFormat, roofline: bool = False) -> str | Group:
    """Text for json/csv/markdown, the table for table (the caller prints it); ``roofline``: see the table's."""
    if output_format is OutputFormat.JSON:
        return to_json(sweep.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(sweep_csv_rows(sweep), SWEEP_CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return sweep_to_markdown(sweep)
    return render_sweep_table(sweep, roofline)
