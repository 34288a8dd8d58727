"""Renderers of ``convcost model`` results: a Rich table readable at 80 columns, JSON, CSV and Markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from rich.console import Console, ConsoleOptions, Group, NewLine, RenderableType, RenderResult
from rich.text import Text

from convcost.cost.conventions import Convention
from convcost.report.export import markdown_table, to_csv, to_json
from convcost.report.format import (
    OutputFormat,
    bound_cell,
    count,
    csv_shape,
    dims,
    milliseconds,
    ms_interval,
    peaks_text,
    percent,
    rate,
    sampling_text,
    share,
    si,
    significant,
    square_shape,
    threads_text,
)
from convcost.report.literal import markdown_literal, visible
from convcost.report.tables import FitTable, prose
from convcost.results.model import FLOP_COUNTER, PTFLOPS, KindShare, ModelLayerResult, ModelResult

_SHORT_KINDS = {"inverted_residual": "inv.residual", "adaptive pool": "pool"}


def title(result: ModelResult) -> str:
    env = result.environment
    multiplier = result.settings.get("width_multiplier")
    extras = [] if multiplier in (None, 1.0) else [f"α {multiplier:g}"]
    extras += [] if result.convention == Convention.CONVCOST else [f"{result.convention} MACs"]
    names = [result.name] if result.source == result.name else [result.name, result.source]
    return " · ".join([*names, inputs_text(result), *extras, env.dtype, env.device,
                       threads_text(env.threads)])  # fmt: skip


def inputs_text(result: ModelResult) -> str:
    """The input's shape, or every input's (``args[0] 1×3×8×8, tokens 1×16 int64``) for more than one float one."""
    inputs = result.settings.get("inputs")
    if not isinstance(inputs, dict):
        return dims(result.input_shape, batch=True)
    parts = [f"{name} {dims(tuple(spec['shape']), batch=True)}" + (f" {spec['dtype']}" if spec.get("dtype") else "")
             for name, spec in inputs.items()]  # fmt: skip
    return ", ".join(parts)


def dense_line(result: ModelResult) -> str:
    dense = result.dense_equivalent
    pairs = len(dense.pairs)
    if not pairs:
        return "Dense equivalent: no depthwise → pointwise pair to replace"
    return (
        f"Dense equivalent ({pairs} depthwise+pointwise pair{'s' if pairs != 1 else ''}→dense): "
        f"{si(dense.params)} params, {si(dense.macs)} MACs"
    )


def saving_line(result: ModelResult) -> str:
    """The saving of the whole network against its dense equivalent, in one line."""
    dense = result.dense_equivalent
    if not dense.pairs:
        return "Saving: none (nothing to factorise)"
    params = dense.params / result.total.params if result.total.params else float("inf")
    macs = dense.macs / result.total.macs if result.total.macs else float("inf")
    return f"Saving: {params:.2f}× fewer params, {macs:.2f}× fewer MACs than the dense equivalent"


def check_line(result: ModelResult) -> Text:
    """✓ only when every op was counted by formula and every check passed; else what is missing or wrong, and the
    ops a counter ran without seeing their MACs."""
    if not result.measured:
        return Text("· formula only: nothing built or run, so nothing checked (drop --formula-only to check)",
                    style="yellow")  # fmt: skip
    lines: list[Text] = []
    missing = len(result.not_counted)
    not_counted = f"{missing} op{'s' if missing != 1 else ''} not counted"
    if result.ok and result.complete:
        ours = "" if result.convention == Convention.CONVCOST else " (ours, before the convention's additions)"
        star = "*" if result.total.bias_adds else ""
        text = f"✓ {len(result.ops)} ops: shapes, params as measured; MACs{ours} = FlopCounterMode = ptflops{star}"
        lines.append(Text(text, style="green"))
    elif result.ok:
        text = (f"· incomplete: {not_counted} (not in the totals); "
                "the counted ops' shapes, params and MACs agree with the counters")  # fmt: skip
        lines.append(Text(text, style="yellow"))
    else:
        lines.append(Text("\n".join(visible(f"✗ {failure}") for failure in result.failures), style="bold red"))
        if not result.complete:
            lines.append(Text(f"incomplete: {not_counted}", style="yellow"))
    lines += [Text(visible(line), style="yellow") for line in not_seen_lines(result)]
    return Text("\n").join(lines)


def not_seen_lines(result: ModelResult) -> list[str]:
    """'MACs of 12 attention ops not seen by FlopCounterMode on the cpu': checked against the other counter only."""
    lines = []
    for counter in (FLOP_COUNTER, PTFLOPS):
        ops = result.not_seen(counter)
        if not ops:
            continue
        kinds = Counter(op.kind for op in ops)  # in the order first seen
        what = ", ".join(f"{number} {kind} op{'s' if number != 1 else ''}" for kind, number in kinds.items())
        macs = sum(op.macs for op in ops)
        first = f" (first: {ops[0].name})" if len(ops) > 1 else f" ({ops[0].name})"
        lines.append(f"MACs of {what} ({macs:,}) not seen by {counter} on the {result.environment.device}: "
                     f"by formula only{first}")  # fmt: skip
    return lines


NOT_COUNTED_MARK = "—"  # a row none of whose ops has a formula: not a zero
SOME_NOT_COUNTED_MARK = "≥"  # a row with some ops not counted: its MACs are at least this
NOT_COUNTED_LEGEND = "— not counted (no formula, not in the totals); ≥ at least: some ops not counted"


def macs_cell(layer: ModelLayerResult, value: str) -> str:
    """A row's MACs (or other ops) as text that reads differently from a zero when ops were not counted."""
    if all(not op.counted for op in layer.ops):
        return NOT_COUNTED_MARK
    return value if layer.counted else f"{SOME_NOT_COUNTED_MARK}{value}"


def _figures_text(layer: ModelLayerResult, total_macs: int, number: Callable[[int], str]) -> dict[str, str]:
    """A row's Params, MACs, Other and MACs% cells with ``number`` (si or count) for the figures."""
    return {
        "Params": number(layer.params),
        "MACs": macs_cell(layer, number(layer.macs)),
        "Other": macs_cell(layer, number(layer.other_ops)),
        "MACs%": macs_cell(layer, share(layer.macs, total_macs)),
    }


def _total_text(result: ModelResult, number: Callable[[int], str]) -> dict[str, str]:
    """The total row's figures: at least (≥) these where ops were not counted."""
    total, mark = result.total, SOME_NOT_COUNTED_MARK if result.not_counted else ""
    return {
        "Params": number(total.params),
        "MACs": mark + number(total.macs),
        "Other": mark + number(total.other_ops),
        "MACs%": "100%",
    }


def totals_line(result: ModelResult) -> str:
    """'Total: 3,504,872 params, 300,774,272 MACs (601M FLOPs)', with the convention and what is not counted."""
    total = result.total
    convention = "" if result.convention == Convention.CONVCOST else f" by {result.convention}'s convention"
    line = f"Total: {total.params:,} params, {total.macs:,} MACs{convention} ({si(total.flops)} FLOPs)"
    if result.convention != Convention.CONVCOST:
        extra = sum(op.extra_macs for op in result.ops)
        line += f"; {total.macs - extra:,} MACs by convcost's, + {extra:,} for norms and pools"
    missing = len(result.not_counted)
    if missing:
        line += f"; {missing} op{'s' if missing != 1 else ''} not counted (not in the totals)"
    return line


class _Title:
    """The model's title in bold: on one line where it fits, else the model's name above the run's settings."""

    def __init__(self, result: ModelResult) -> None:
        self.text, self.shape = visible(title(result)), visible(inputs_text(result))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        head = self.text
        if len(head) > options.max_width:  # never let the header wrap mid-word
            names, _, rest = head.partition(f" · {self.shape}")
            head = f"{names}\n{self.shape}{rest}"
        yield Text(head, style="bold")


def render_table(result: ModelResult, by_kind: bool = False) -> Group:
    """The per-layer table, the totals with their checks, the dense equivalent and the breakdown by kind."""
    show_latency = any(layer.latency for layer in result.layers)
    table = FitTable(
        show_edge=False,
        padding=(0, 0, 0, 1),  # one space and the column rule between columns: 80 columns hold all of them
        caption="C×H×W without the batch, 7² = 7×7; Other: ops that are not MACs",
        caption_justify="left",
    )
    # nothing is cut: a name too long for the width stacks the table (convcost.report.tables.FitTable)
    table.add_columns(["Layer", "Kind", "Input → output"])
    # latency takes the place of other ops at 80 columns
    numbers = ["Params", "MACs", "MACs%", "ms"] if show_latency else ["Params", "MACs", "Other", "MACs%"]
    table.add_columns(numbers, right=numbers, min_width=5)
    show_roofline = any(layer.roofline and layer.roofline.verdict for layer in result.layers)
    if show_roofline:
        table.add_column("Bound")
    for layer in result.layers:
        figures = _figures_text(layer, result.total.macs, si)
        figures["ms"] = milliseconds(layer.latency.shown_ms) if layer.latency else ""
        shapes = f"{square_shape(layer.input_shape)} → {square_shape(layer.output_shape)}"
        bound = [bound_cell(layer.roofline, initial=True, missing="")] if show_roofline else []
        kind = _SHORT_KINDS.get(layer.kind, layer.kind)
        cells = [layer.name, kind, shapes, *(figures[name] for name in numbers), *bound]
        table.add_row(*cells, style=None if layer.counted else "yellow")
    table.add_section()
    if result.not_counted:
        table.caption = f"{table.caption}\n{NOT_COUNTED_LEGEND}"
    figures = _total_text(result, si)
    figures["ms"] = milliseconds(result.latency.shown_ms) if result.latency else ""
    shapes = f"{square_shape(result.input_shape)} → {square_shape(result.output_shape)}"
    cells = ["total", "", shapes, *(figures[name] for name in numbers), *([""] if show_roofline else [])]
    table.add_row(*cells, style="bold")
    lines: list[str | Text] = [totals_line(result), check_line(result)]
    if result.ok and result.complete and result.measured and result.total.bias_adds:
        lines.append(f"  * ptflops counts {result.total.bias_adds:,} bias adds as MACs; they are taken off")
    lines += [dense_line(result), saving_line(result)]
    if (stats := result.latency) is not None:
        lines.append(f"Latency: {ms_interval(stats)} ms end to end, best (10th percentile; 95% interval), "
                     f"{milliseconds(stats.median_ms)} ms typical (median); {sampling_text(stats)}; "
                     "the table shows best; per-layer times are each layer alone")  # fmt: skip
        if result.environment.contention is not None:
            lines.append(result.environment.contention.note)
        calibration = result.environment.calibration
        if calibration is None:
            lines.append("No calibration for this machine, dtype and thread count: run convcost calibrate for "
                         "roofline bounds and verdicts (Bound column).")  # fmt: skip
        else:
            lines.append(f"Bound: % of the roofline bound max(compute, memory) achieved, and what bounds the layer: "
                         f"C compute, M memory, O per-call overhead ({peaks_text(calibration)}).")  # fmt: skip
    parts: list[RenderableType] = [_Title(result), table, *(prose(text) for text in lines)]
    if by_kind:
        kinds = FitTable(title="By kind")
        shares = ["Ops", "Params", "Params%", "MACs", "MACs%"]
        kinds.add_columns(["Kind", *shares], right=shares)
        for share in result.by_kind:
            kinds.add_row(*_kind_cells(share, si))
        parts.append(kinds)
    parts += [Text(visible(note), style="yellow") for note in result.notes]
    return Group(*parts)


def _kind_cells(kind: KindShare, number: Callable[[int], str]) -> list[str]:
    shares = percent(kind.params_share, 1), percent(kind.macs_share, 1)
    return [kind.kind, str(kind.ops), number(kind.params), shares[0], number(kind.macs), shares[1]]


CSV_COLUMNS = [
    "model", "layer", "kind", "input_shape", "output_shape", "params", "macs", "flops", "bias_adds", "other_ops",
    "macs_share", "counted", "latency_median_ms", "latency_best_ms", "convention",
]  # fmt: skip


def csv_rows(result: ModelResult) -> list[dict[str, Any]]:
    return [_csv_row(result, layer) for layer in result.layers]


def _csv_row(result: ModelResult, layer: ModelLayerResult) -> dict[str, Any]:
    figures = {"macs": layer.macs, "flops": 2 * layer.macs, "bias_adds": layer.bias_adds, "other_ops": layer.other_ops}
    return {
        "model": result.name,
        "layer": layer.name,
        "kind": layer.kind,
        "input_shape": csv_shape(layer.input_shape),
        "output_shape": csv_shape(layer.output_shape),
        "params": layer.params,
        # a row of ops without a formula has no figures: empty, never a zero (``counted`` says why)
        **(figures if any(op.counted for op in layer.ops) else dict.fromkeys(figures, "")),
        "macs_share": f"{layer.macs / result.total.macs:.6f}" if result.total.macs else "",
        "counted": layer.counted,
        "latency_median_ms": f"{layer.latency.median_ms:.6f}" if layer.latency else "",
        "latency_best_ms": f"{layer.latency.shown_ms:.6f}" if layer.latency else "",
        "convention": result.convention,
    }


def to_markdown(result: ModelResult, by_kind: bool = False) -> str:
    parts = [f"### {markdown_literal(title(result))}", ""]
    rows = [
        [markdown_literal(layer.name), layer.kind, f"{dims(layer.input_shape)} → {dims(layer.output_shape)}",
         *_figures_text(layer, result.total.macs, count).values()]
        for layer in result.layers
    ]  # fmt: skip
    rows.append(["**total**", "", "", *_total_text(result, count).values()])
    headers = ["Layer", "Kind", "Input → output", "Params", "MACs", "Other ops", "MACs %"]
    parts += [markdown_table(headers, rows, {3, 4, 5, 6}), ""]
    legend = [NOT_COUNTED_LEGEND] if result.not_counted else []
    parts += [f"- {line}" for line in (visible(totals_line(result)), *legend, dense_line(result), saving_line(result))]
    parts += [f"- {visible(line)}" for line in check_line(result).plain.splitlines()]
    if by_kind:
        kind_rows = [_kind_cells(kind, count) for kind in result.by_kind]
        headers = ["Kind", "Ops", "Params", "Params %", "MACs", "MACs %"]
        parts += ["", markdown_table(headers, kind_rows, {1, 2, 3, 4, 5})]
    parts += [f"- {visible(note)}" for note in result.notes]
    return "\n".join(parts).rstrip() + "\n"


def render(
    result: ModelResult, output_format: OutputFormat, by_kind: bool = False, roofline: bool = False
) -> str | Group:
    """Text for json/csv/markdown, the tables for table (the caller prints them)."""
    if output_format is OutputFormat.JSON:
        return to_json(result.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(csv_rows(result), CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return to_markdown(result, by_kind)
    table = render_table(result, by_kind)
    return Group(table, render_roofline(result)) if roofline else table


def render_roofline(result: ModelResult) -> Group:
    """The full roofline per timed layer: what it moves and achieves, and (calibrated) its bound and verdict."""
    table = FitTable(show_edge=False, padding=(0, 0, 0, 1))
    numbers = ["MACs", "Bytes", "FLOP/B", "GMAC/s", "GB/s", "Bound ms", "Of bound"]
    table.add_columns(["Layer", *numbers, "Limit"], right=numbers)
    for layer in result.layers:
        line = layer.roofline
        if line is None:
            continue
        work = [si(line.macs), si(line.min_bytes), significant(line.intensity)]
        rates = [rate(line.gmacs_per_s), rate(line.gbytes_per_s)]
        bound = "—" if line.bound_ms is None else significant(line.bound_ms)
        verdict = "—" if line.verdict is None else line.verdict.short
        table.add_row(layer.name, *work, *rates, bound, percent(line.fraction), verdict)
    return Group(NewLine(), prose("Roofline per layer (each layer timed alone; bytes at minimum, FLOPs = 2 × MACs)"),
                 table)  # fmt: skip
