"""Renderers of ``convcost suggest`` and ``convcost convert`` results: a Rich table, JSON, CSV and Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType

from convcost.report.export import markdown_table, to_csv, to_json
from convcost.report.format import OutputFormat, count, csv_shape, ms_interval, ratio, shape, si
from convcost.report.literal import markdown_literal
from convcost.report.tables import FitTable, prose
from convcost.results.convert import ConvertedLayer, ConvertResult, ModelFigures

CSV_COLUMNS = ["name", "kind", "cin", "cout", "kernel", "input_shape", "params_before", "params_after",
               "macs_before", "macs_after", "saving", "weight_error", "selected", "latency_before_ms",
               "latency_after_ms"]  # fmt: skip


def render(result: ConvertResult, output_format: OutputFormat, emit_code: bool = False) -> str | RenderableType:
    """The result in ``output_format``; ``emit_code`` adds each selected layer's stock-PyTorch module."""
    if output_format is OutputFormat.JSON:
        return to_json(result.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv([_csv_row(layer) for layer in result.layers], CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return _markdown(result, emit_code)
    return _table(result, emit_code)


def error_text(layer: ConvertedLayer) -> str:
    """The weight error as a percentage (``exact`` below float64 rounding), or ``—`` when there is none."""
    if layer.weight_error is None:
        return "—"
    if layer.weight_error < 1e-12:
        return "exact"
    if layer.weight_error < 1e-3:  # float32 rounding of an exact factorisation: say how small, not 0.0%
        return f"{100 * layer.weight_error:.0e}%"
    return f"{100 * layer.weight_error:.1f}%"


def _headers(result: ConvertResult) -> list[str]:
    timed = any(layer.latency_before is not None for layer in result.layers)
    headers = ["Layer", "Shape", "Params now", "after", "MACs now", "after", "Saving", "Error"]
    return headers + (["ms now", "ms after"] if timed else [])


def _cells(layer: ConvertedLayer, timed: bool) -> list[str]:
    conv = f"{layer.cin}→{layer.cout} {layer.kernel[0]}×{layer.kernel[1]}"
    cells = [layer.name + ("" if layer.selected else " ·"), conv, si(layer.params_before), si(layer.params_after),
             si(layer.macs_before), si(layer.macs_after), ratio(layer.saving), error_text(layer)]  # fmt: skip
    if timed:
        cells += [ms_interval(layer.latency_before) if layer.latency_before else "—",
                  ms_interval(layer.latency_after) if layer.latency_after else "—"]  # fmt: skip
    return cells


def totals_lines(result: ConvertResult) -> list[str]:
    """Now, with every suggestion applied, and with those reaching --min-saving."""

    def line(label: str, model: ModelFigures | None) -> str:
        if model is None:
            return f"{label}: —"
        macs = "MACs unknown (no input)" if model.macs is None else f"{si(model.macs)} MACs ({count(model.macs)})"
        return f"{label}: {si(model.params)} params ({count(model.params)}), {macs}"

    if result.converted:
        return [line("Model now", result.before), line("Converted model", result.after_selected)]
    lines = [line("Model now", result.before), line("Every layer above applied", result.after_all)]
    if result.min_saving is not None:
        lines.append(line(f"Only those saving ≥ {result.min_saving:g}× (the rest marked ·)", result.after_selected))
    return lines


def _footer(result: ConvertResult) -> list[str]:
    lines = totals_lines(result)
    lines.append("MACs: Conv2d and Linear weights, whole batch (bias adds, norms and activations apart); "
                 "Error: ‖W − W′‖/‖W‖ of the replacement's kernel")  # fmt: skip
    lines += sorted({layer.error_note for layer in result.layers if layer.error_note and layer.weight_error is None})
    reasons: dict[str, list[str]] = {}
    for item in result.refused:
        reasons.setdefault(item.reason, []).append(item.name)
    for reason, names in reasons.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"not converted: {shown}: {reason}")
    return lines + result.notes


def _code(result: ConvertResult) -> list[RenderableType]:
    """Each selected layer's module, never wrapped (it is to be pasted), after an empty line."""
    return [prose("\n" + layer.code, soft_wrap=True) for layer in result.layers if layer.selected and layer.code]


def _table(result: ConvertResult, emit_code: bool) -> RenderableType:
    inputs = shape(result.input_shape) if result.input_shape else "no input"
    table = FitTable(title=f"{result.source or 'model'} · {inputs} · to {result.target}", show_edge=False,
                     padding=(0, 0, 0, 1))  # fmt: skip
    headers = _headers(result)
    table.add_columns(headers, right=headers[2:])
    for layer in result.layers:
        table.add_row(*_cells(layer, timed=len(headers) > 8))
    footer = [prose(line) for line in _footer(result)] + (_code(result) if emit_code else [])
    if not result.layers:
        return Group(prose(f"{result.source or 'model'}: no layer to convert to {result.target}"), *footer)
    return Group(table, *footer)


def _markdown(result: ConvertResult, emit_code: bool) -> str:
    headers = _headers(result)
    rows = [[markdown_literal(cell) for cell in _cells(layer, timed=len(headers) > 8)] for layer in result.layers]
    text = markdown_table(headers, rows, right=set(range(2, len(headers))))
    footer = [markdown_literal(line) for line in _footer(result)]
    code = [f"\n```python\n{layer.code}\n```" for layer in result.layers if emit_code and layer.selected]
    return text + "\n" + "\n\n".join(footer) + "\n" + "".join(code) + ("\n" if code else "")


def _csv_row(layer: ConvertedLayer) -> dict[str, Any]:
    row = layer.to_dict()
    row["kernel"], row["input_shape"] = csv_shape(layer.kernel), csv_shape(layer.shape)
    row["latency_before_ms"] = layer.latency_before.shown_ms if layer.latency_before else None
    row["latency_after_ms"] = layer.latency_after.shown_ms if layer.latency_after else None
    return {key: row[key] for key in CSV_COLUMNS}
