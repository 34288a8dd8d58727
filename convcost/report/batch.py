"""The batch report: one summary row per entry and alternative; per-entry detail reuses the compare renderers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from convcost.report.compare import CSV_COLUMNS, csv_rows, render_roofline, render_table, to_markdown
from convcost.report.export import fixed, markdown_table, to_csv, to_json
from convcost.report.format import OutputFormat, compact_count, count, csv_shape, ratio, with_interval
from convcost.report.literal import markdown_literal, visible
from convcost.report.tables import FitTable, literal, prose

if TYPE_CHECKING:
    from convcost.results.batch import BatchResult

BATCH_CSV_COLUMNS = [
    "index", "name", "line", "status", "vs", "input_shape", "dense_output_shape", "output_shape", "shapes_match",
    "checks_ok", "dense_params", "params", "dense_macs", "macs", "dense_other_ops", "other_ops", "ratio_params",
    "ratio_macs", "dense_latency_ms", "latency_ms", "speedup", "speedup_low", "speedup_high", "speedup_typical",
    "converged", "busy", "problems",
]  # fmt: skip

_BATCH_HEADERS = ["Entry", "vs", "Shapes", "Params", "MACs", "Params ÷", "MACs ÷", "Speedup", "Status"]
_BATCH_CAPTION = "Params, MACs: dense → alternative · ÷: dense ÷ alternative · Speedup: dense latency ÷ alternative's"
_TABLE_CAPTION = "Params, MACs: dense → alternative · ÷: dense ÷ alternative · M = 10⁶, G = 10⁹ (exact: --detail)"


def batch_title(result: BatchResult) -> str:
    unmeasured = any(entry.comparison is not None and not entry.comparison.measured for entry in result.entries)
    return f"{result.source}: {result.summary()}" + (" · formula only, nothing measured" if unmeasured else "")


def _arrow(dense: int, alternative: int, exact: bool) -> str:
    number = count if exact else compact_count
    return f"{number(dense)} → {number(alternative)}"


def _batch_cells(result: BatchResult, exact: bool = True) -> list[list[str]]:
    """The cells of every summary row (the entry's name on its first), its status last."""
    cells: list[list[str]] = []
    for entry in result.entries:
        for number, row in enumerate(entry.rows()):
            name = entry.name if number == 0 else ""
            if "vs" not in row:
                cells.append([name, "—", "—", "—", "—", "—", "—", "—", row["status"]])
                continue
            match = "✓" if row["shapes_match"] else "✗"
            arrows = _arrow(row["dense_params"], row["params"], exact), _arrow(row["dense_macs"], row["macs"], exact)
            ratios = ratio(row["ratio_params"]), ratio(row["ratio_macs"])
            speedup = with_interval(row["speedup"], row.get("speedup_low"), row.get("speedup_high"))
            cells.append([name, row["vs"], match, *arrows, *ratios, speedup, row["status"]])
    return cells


def batch_trust_line(result: BatchResult) -> str | None:
    """How many speedups did not converge and how many entries saw a busy machine; None when all is well."""
    rows = [row for entry in result.entries for row in entry.rows() if row.get("speedup") is not None]
    if not rows:
        return None
    unconverged = sum(row.get("converged") is False for row in rows)
    busy = sum(bool(row.get("busy")) for row in rows)
    parts = []
    if unconverged:
        parts.append(f"{unconverged} of {len(rows)} speedups did not converge to their target")
    if busy:
        parts.append(f"the machine was busy while {busy} of {len(rows)} were timed")
    if not parts:
        return None
    what = "; ".join(parts)
    return f"Speedup: best figures with their 95% interval; {what} (JSON: converged, busy; --detail says more)."


def _total_cells(result: BatchResult, exact: bool = True) -> list[list[str]]:
    return [
        [f"Total of {item.entries}", item.vs, "", _arrow(item.dense_params, item.params, exact),
         _arrow(item.dense_macs, item.macs, exact), ratio(item.ratio_params), ratio(item.ratio_macs),
         ratio(item.speedup), ""]
        for item in result.totals
    ]  # fmt: skip


_STATUS_STYLES = {"ok": "green", "failed": "bold red", "invalid": "bold red", "error": "bold red", "not run": "dim"}


def render_batch_table(result: BatchResult, detail: bool = False, roofline: bool = False) -> Group:
    """The batch summary as a Rich table, the problems under it, then each entry's compare report (``detail``)
    and full roofline table (``roofline``)."""
    parts: list[RenderableType] = [Text(visible(batch_title(result)), style="bold")]
    table = FitTable()
    timed = any(entry.comparison and entry.comparison.dense.latency for entry in result.entries)
    shown = [index for index in range(len(_BATCH_HEADERS)) if timed or _BATCH_HEADERS[index] != "Speedup"]
    for index in shown:
        # fold rather than crop: a cropped figure would read as a different number
        # numbers never wrap (FitTable stacks the rows instead); an entry's name may wrap between words
        table.add_column(_BATCH_HEADERS[index], justify="right" if index in {3, 4, 5, 6, 7} else "left",
                         overflow="fold" if index == 0 else None)  # fmt: skip
    for cells in _batch_cells(result, exact=False):
        styled: list[str | Text] = [*cells[:-1], Text(cells[-1], style=_STATUS_STYLES.get(cells[-1], ""))]
        if cells[2] == "✗":
            styled[2] = Text("✗", style="bold red")
        table.add_row(*[styled[index] for index in shown])
    totals = _total_cells(result, exact=False)
    if totals and len(result.entries) > 1:
        table.add_section()
        for cells in totals:
            table.add_row(*[cells[index] for index in shown], style="bold")
    parts += [table, prose(_TABLE_CAPTION, style="dim", soft_wrap=True)]
    trust = batch_trust_line(result)
    if trust:
        parts.append(prose(trust, style="yellow", soft_wrap=True))
    # soft_wrap: one problem per line, whatever the width, so that it can be grepped and copied
    parts += [prose(visible(f"✗ {problem}"), style="bold red", soft_wrap=True) for problem in result.problems]
    if result.interrupted:
        parts.append(Text(f"Interrupted: {result.count('not run')} entries not run.", style="yellow"))
    if detail or roofline:
        for entry in result.entries:
            if entry.comparison is not None:
                parts.append(Rule(literal(entry.name)))
                parts += [render_table(entry.comparison)] if detail else []
                parts += [render_roofline(entry.comparison)] if roofline else []
    return Group(*parts)


def batch_csv_rows(result: BatchResult) -> list[dict[str, Any]]:
    """One row per entry and alternative (one row for an entry without a comparison)."""
    rows = []
    for entry in result.entries:
        problems = "; ".join(entry.problems(result.source))
        for row in entry.rows():
            out = dict(row, problems=problems)
            for key in ("input_shape", "dense_output_shape", "output_shape"):
                if key in out:
                    out[key] = csv_shape(out[key])
            rows.append(fixed(out, ("ratio_params", "ratio_macs", "dense_latency_ms", "latency_ms", "speedup",
                                    "speedup_low", "speedup_high", "speedup_typical")))  # fmt: skip
    return rows


def batch_to_markdown(result: BatchResult, detail: bool = False) -> str:
    parts = [f"### {markdown_literal(str(result.source))}{batch_title(result)[len(str(result.source)) :]}", ""]
    rows = [[markdown_literal(cells[0]), *cells[1:]] for cells in _batch_cells(result)]
    if len(result.entries) > 1:
        rows += [[f"**{cell}**" if cell else "" for cell in cells] for cells in _total_cells(result)]
    parts += [markdown_table(_BATCH_HEADERS, rows, {3, 4, 5, 6, 7}), "", _BATCH_CAPTION + ".", ""]
    trust = batch_trust_line(result)
    if trust:
        parts += [trust, ""]
    parts += [f"- ✗ {visible(line)}" for line in result.problems]
    if result.interrupted:
        parts.append(f"- Interrupted: {result.count('not run')} entries not run.")
    text = "\n".join(parts).rstrip() + "\n"
    if detail:
        text += "".join("\n" + to_markdown(entry.comparison) for entry in result.entries if entry.comparison)
    return text


def render_batch(
    result: BatchResult, output_format: OutputFormat, detail: bool = False, roofline: bool = False
) -> str | Group:
    """Text for json/csv/markdown, the table for table (the caller prints it). With ``detail``, JSON carries each
    entry's full comparison and CSV has compare's per-stage rows instead of the summary rows; ``roofline`` adds
    each entry's full roofline table to the table (as compare's does)."""
    if output_format is OutputFormat.JSON:
        return to_json(result.to_dict(detail))
    if output_format is OutputFormat.CSV:
        if detail:
            rows = [row for entry in result.entries if entry.comparison for row in csv_rows(entry.comparison)]
            return to_csv(rows, CSV_COLUMNS)
        return to_csv(batch_csv_rows(result), BATCH_CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return batch_to_markdown(result, detail)
    return render_batch_table(result, detail, roofline)
