"""The compare report: its Rich tables (cost, stages, checks, ratios, latency, roofline), CSV rows and Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Group, NewLine, RenderableType
from rich.text import Text

from convcost.cost.roofline import Roofline
from convcost.cost.stats import BEST_QUANTILE
from convcost.report.export import fixed, markdown_table, to_csv, to_json
from convcost.report.format import (
    OutputFormat,
    allocator_text,
    bound_cell,
    compact_bytes,
    count,
    csv_shape,
    milliseconds,
    ms_interval,
    optional_ms,
    pair,
    peaks_text,
    percent,
    rate,
    ratio,
    sampling_text,
    shape,
    si,
    significant,
    threads_text,
    with_interval,
)
from convcost.report.literal import markdown_literal, visible
from convcost.report.tables import FitTable, prose
from convcost.results.comparison import Comparison, LayerResult, Ratios, StageResult


def speedup(entry: Ratios) -> str:
    """``4.60× (4.21–4.93)``: the measured speedup with its 95 % interval."""
    return with_interval(entry.latency, *(entry.latency_interval or (None, None)))


def channel_map(stage: StageResult) -> str:
    """Which output channels read which input channels, as a rule over groups g."""
    groups = stage.channel_map["groups"]
    if groups == 1:
        return "all ← all"
    out_n, in_n = stage.channel_map["out_per_group"], stage.channel_map["in_per_group"]

    def block(n: int) -> str:
        return "g" if n == 1 else f"{n}g…{n}g+{n - 1}"

    return f"out {block(out_n)} ← in {block(in_n)}, g=0…{groups - 1}"


def layer_title(comparison: Comparison) -> str:
    spec, env, dense = comparison.spec, comparison.environment, comparison.dense.stages[0]
    title = f"{spec['cin']}→{spec['cout']} {dense.kernel[0]}×{dense.kernel[1]}"
    defaults = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}
    extras = [f"{key} {pair(value)}" for key, default in defaults.items() if (value := getattr(dense, key)) != default]
    extras += [] if dense.bias else ["no bias"]
    head = f"{comparison.name}: " if comparison.name else ""
    return (
        f"{head}{title}{', ' + ', '.join(extras) if extras else ''} · input {shape(comparison.dense.input_shape)}"
        f" · {env.dtype} · {env.device} · {threads_text(env.threads)}"
    )


_Row = tuple[str, LayerResult, StageResult | None, LayerResult | StageResult]


def _rows(comparison: Comparison) -> list[_Row]:
    """(label, layer, stage, the stage or else the layer) per layer, then per stage of a multi-stage layer."""
    rows: list[_Row] = []
    for layer in comparison.layers:
        rows.append((layer.kind, layer, None, layer))
        if len(layer.stages) > 1:
            for index, stage in enumerate(layer.stages):
                branch = "└" if index == len(layer.stages) - 1 else "├"
                rows.append((f" {branch} {stage.name}", layer, stage, stage))
    return rows


def _name(layer: LayerResult, stage: StageResult | None) -> str:
    return layer.kind if stage is None else f"{layer.kind}.{stage.name}"


def _layer_ok(layer: LayerResult, stage: StageResult | None) -> bool:
    if stage is None:
        return layer.ok
    return all(check.ok for check in layer.checks if check.subject == _name(layer, stage))


def textbook_line(entry: Ratios) -> str | None:
    """The MAC ratio against the paper's formula and its R·S bound (separable only)."""
    if entry.textbook is None or entry.bound is None:
        return None
    m = entry.multiplier
    formula = "1/(1/K + 1/(R·S))" if m == 1 else f"1/({m}/K + {m}/(R·S))"
    bound = "R·S" if m == 1 else f"R·S/{m}"
    if f"{entry.textbook:.2f}" == f"{entry.macs:.2f}":
        return f"{entry.vs}: MAC ratio {ratio(entry.macs)} = {formula}; bound {bound} = {entry.bound:g}"
    return (
        f"{entry.vs}: MAC ratio {ratio(entry.macs)}; textbook {formula} = {entry.textbook:.2f}; "
        f"bound {bound} = {entry.bound:g}"
    )


def render_table(comparison: Comparison) -> Group:
    """The compare report as Rich tables, readable at 80 columns."""
    parts: list[RenderableType] = [Text(visible(layer_title(comparison)), style="bold")]
    show_other = any(layer.other_ops for layer in comparison.layers)
    cost = FitTable(title="Cost (MACs exclude bias adds)")
    numbers = ["Params", "MACs", "Bias adds", *(["Norm+act"] if show_other else [])]
    cost.add_columns(["Layer", "Output", *numbers, ""], right=numbers)
    for label, layer, stage, item in _rows(comparison):
        mark = Text("✓", style="green") if _layer_ok(layer, stage) else Text("✗", style="bold red")
        if not comparison.measured:
            mark = Text("·", style="dim")
        cells = [label, shape(item.output_shape), count(item.params), count(item.macs), count(item.bias_adds)]
        other = [count(item.other_ops)] if show_other else []
        cost.add_row(*cells, *other, mark, style="dim" if stage is not None else None)
    parts.append(cost)

    stages = FitTable(title="Stages")
    stages.add_columns(["Stage", "Weight", "Stride/pad"])
    stages.add_column("Channels read", overflow="fold")
    notes: list[Text] = []  # printed under the table
    for layer in comparison.layers:
        for stage in layer.stages:
            label = layer.kind if len(layer.stages) == 1 else f"{layer.kind}.{stage.name}"
            weight = shape(stage.weight_shape)
            if stage.stored_weight_shape != stage.weight_shape:
                weight += f" (stores {shape(stage.stored_weight_shape)})"
            stages.add_row(label, weight, f"{pair(stage.stride)}/{pair(stage.padding)}", channel_map(stage))
            notes += [Text(visible(f"{layer.kind}.{stage.name}: {note}"), style="yellow") for note in stage.notes]
    parts += [stages, *notes]
    parts += [*_checks(comparison), NewLine()]
    ratios = FitTable(title="Dense ÷ alternative")
    predicted = any(entry.roofline is not None for entry in comparison.ratios)
    numbers = ["Params", "MACs", "Latency", *(["Roofline"] if predicted else [])]
    ratios.add_columns(["vs", *numbers, "Shapes"], right=numbers)
    for entry in comparison.ratios:
        match = Text("same", style="green") if entry.shape_match else Text("DIFFER", style="bold red")
        roofline = [ratio(entry.roofline)] if predicted else []
        ratios.add_row(entry.vs, ratio(entry.params), ratio(entry.macs), speedup(entry), *roofline, match)
    parts.append(ratios)
    parts += [prose(text) for text in map(textbook_line, comparison.ratios) if text]
    if any(layer.latency for layer in comparison.layers):
        parts += _latency(comparison)
    parts += [Text(visible(note), style="yellow") for note in comparison.notes]
    parts += [Text(visible(f"✗ {failure}"), style="bold red") for failure in comparison.failures]
    return Group(*parts)


def _checks(comparison: Comparison) -> list[Text]:
    checks = [check for layer in comparison.layers for check in layer.checks]
    failed = [check for check in checks if not check.ok]
    parts = []
    if not comparison.measured:
        parts.append(Text("· formula only: nothing built or run, so nothing checked (drop --formula-only to check)",
                          style="yellow"))  # fmt: skip
    elif not failed:
        parts.append(Text(f"✓ {len(checks)} checks: output shape, weight shape and params by formula = measured; "
                          "MACs by formula = FlopCounterMode = ptflops (its bias adds removed)",
                          style="green"))  # fmt: skip
    return parts + [Text(visible(f"✗ {check.message()}"), style="bold red") for check in failed]


def _latency(comparison: Comparison) -> list[RenderableType]:
    """Latency with its spread, and the compact roofline: achieved GMAC/s, % of the bound and the verdict."""
    env = comparison.environment
    first = next(layer.latency for layer in comparison.layers if layer.latency)
    # the heading is printed on its own: as a table title it would wrap to the (narrow) table's width
    parts: list[RenderableType] = [
        prose(f"Latency (ms, best = {BEST_QUANTILE:.0%} quantile ± 95% interval, typical = median, "
             f"{threads_text(env.threads)}{', channels_last' if env.channels_last else ''}, "
             f"{allocator_text(env.allocator)})", style="italic"),
        prose(f"Sampled {sampling_text(first)}", style="italic"),
    ]  # fmt: skip
    table = FitTable()
    numbers = ["Best (interval)", "Typical", "GMAC/s"]  # the IQR is in JSON and CSV: 80 columns hold this
    table.add_columns(["Layer", *numbers], right=numbers)
    calibrated = comparison.environment.calibration is not None
    if calibrated:  # without peaks there is no bound: no column of dashes
        table.add_column("Roofline", min_width=11)
    for label, _, stage, item in _rows(comparison):
        stats, line = item.latency, item.roofline
        if stats is None:
            continue
        gmacs = rate(None if line is None else line.gmacs_per_s)
        bound = [bound_cell(line)] if calibrated else []
        cells = [label, ms_interval(stats), milliseconds(stats.median_ms), gmacs, *bound]
        table.add_row(*cells, style="dim" if stage is not None else None)
    parts.append(table)
    for entry in comparison.ratios:
        if entry.latency_typical is not None and entry.latency_typical_interval is not None:
            low, high = entry.latency_typical_interval
            unconverged = "" if entry.latency_converged else f" (NOT converged to ±{first.target_pct:g}%)"
            parts.append(prose(f"{entry.vs}: speedup {speedup(entry)} from best figures{unconverged}, "
                              f"{ratio(entry.latency_typical)} ({low:.2f}–{high:.2f}) from typical"))  # fmt: skip
    if env.contention and env.contention.note:
        parts.append(prose(env.contention.note, style="yellow" if env.contention.busy else "dim"))
    return [*parts, prose(calibration_line(comparison), style="dim")]


def calibration_line(comparison: Comparison) -> str:
    """Where the roofline's peaks come from, or how to get them."""
    env, calibration = comparison.environment, comparison.environment.calibration
    if calibration is None:
        return (
            f"No calibration for this machine at {env.dtype}, {threads_text(env.threads)}: run convcost calibrate "
            "for roofline bounds and verdicts."
        )
    predicted = [f"{item.vs} {ratio(item.roofline)}" for item in comparison.ratios if item.roofline is not None]
    return (
        f"Roofline: % of max(compute, memory) time at this machine's peaks ({peaks_text(calibration)}; "
        f"calibrated {calibration.measured_at[:10]}). Predicted speedup: {', '.join(predicted) or '—'}."
    )


def render_roofline(comparison: Comparison) -> Group:
    """The full roofline: what each layer and stage moves and achieves, then (calibrated) its bound and verdict."""
    work = FitTable(title="Roofline: work (bytes = input + weights + output once; FLOP = 2·MAC)")
    numbers = ["MACs", "Bytes", "FLOP/byte", "Measured ms", "GMAC/s", "GB/s"]
    work.add_columns(["Layer", *numbers], right=numbers)
    rows = [(label, line, stage) for label, _, stage, item in _rows(comparison) if (line := item.roofline) is not None]
    for label, line, stage in rows:
        work.add_row(label, si(line.macs), compact_bytes(line.min_bytes), significant(line.intensity),
                     optional_ms(line.latency_ms), rate(line.gmacs_per_s), rate(line.gbytes_per_s),
                     style="dim" if stage is not None else None)  # fmt: skip
    calibration = comparison.environment.calibration
    if calibration is None:  # a timed report said how to calibrate under its latency table
        timed = any(layer.latency for layer in comparison.layers)
        return Group(work) if timed else Group(work, prose(calibration_line(comparison), style="dim"))
    bounds = FitTable(title="Roofline: bounds (ms)")
    numbers = ["Compute", "Memory", "Per-call", "Bound", "Achieved"]
    bounds.add_columns(["Layer", *numbers, "Verdict"], right=numbers)
    for label, line, stage in rows:
        bounds.add_row(label, optional_ms(line.compute_ms), optional_ms(line.memory_ms), optional_ms(line.overhead_ms),
                       optional_ms(line.bound_ms), percent(line.fraction),
                       "—" if line.verdict is None else str(line.verdict),
                       style="dim" if stage is not None else None)  # fmt: skip
    return Group(work, bounds, prose(
        f"Peaks: {peaks_text(calibration)}. Bound = max(compute, memory); a layer's is the sum of its stages'. "
        "Achieved = bound ÷ measured (over 100%: the data stayed in cache between calls). Overhead-bound: the "
        "per-call cost exceeds the bound.", style="dim"))  # fmt: skip


CSV_COLUMNS = [
    "name", "layer", "stage", "input_shape", "output_shape", "output_shape_measured", "weight_shape", "groups",
    "params", "params_measured", "macs", "macs_flop_counter", "macs_ptflops", "ptflops_raw", "flops", "bias_adds",
    "other_ops", "min_bytes", "latency_median_ms", "latency_iqr_ms", "ratio_params", "ratio_macs", "ratio_latency",
    "latency_best_ms", "latency_low_ms", "latency_high_ms", "latency_converged", "ratio_latency_low",
    "ratio_latency_high", "ratio_latency_typical", "busy",
    "ok", "threads", "intensity", "gmacs_per_s", "gbytes_per_s", "roofline_bound_ms", "roofline_fraction",
    "verdict", "ratio_roofline",
]  # fmt: skip
_FIGURES = CSV_COLUMNS[CSV_COLUMNS.index("params") : CSV_COLUMNS.index("min_bytes") + 1]  # each a layer's and a stage's


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per layer (stage empty) and one per stage of a multi-stage layer."""
    rows = []
    ratios = {item.vs: item for item in comparison.ratios}
    for _, layer, stage, item in _rows(comparison):
        row: dict[str, Any] = {
            "name": comparison.name or "",
            "layer": layer.kind,
            "stage": stage.name if stage else "",
            **{key: csv_shape(getattr(item, key)) for key in ("input_shape", "output_shape", "output_shape_measured")},
            "weight_shape": csv_shape(stage.weight_shape) if stage else "",
            "groups": stage.groups if stage else "",
            **{key: getattr(item, key) for key in _FIGURES},
            "ok": _layer_ok(layer, stage),
        }
        if (stats := item.latency) is not None:
            low, high = stats.interval_ms or (None, None)
            contention = comparison.environment.contention
            row.update(latency_median_ms=stats.median_ms, latency_iqr_ms=stats.iqr_ms, latency_best_ms=stats.shown_ms,
                       latency_low_ms=low, latency_high_ms=high, latency_converged=stats.converged,
                       busy="" if contention is None else contention.busy,
                       threads=comparison.environment.threads)  # fmt: skip
        row.update(_roofline_csv(item.roofline))
        if stage is None and layer.kind in ratios:
            entry = ratios[layer.kind]
            low, high = entry.latency_interval or (None, None)
            row.update(ratio_params=entry.params, ratio_macs=entry.macs, ratio_latency=entry.latency,
                       ratio_latency_low=low, ratio_latency_high=high, ratio_latency_typical=entry.latency_typical,
                       ratio_roofline=entry.roofline)  # fmt: skip
        rows.append(fixed(row, _FIXED))
    return rows


_FIXED = ("latency_median_ms", "latency_iqr_ms", "latency_best_ms", "latency_low_ms", "latency_high_ms",
          "ratio_params", "ratio_macs", "ratio_latency", "ratio_latency_low", "ratio_latency_high",
          "ratio_latency_typical", "ratio_roofline")  # fmt: skip


def _roofline_csv(line: Roofline | None) -> dict[str, Any]:
    if line is None:
        return {}
    figures = {
        "intensity": line.intensity,
        "gmacs_per_s": line.gmacs_per_s,
        "gbytes_per_s": line.gbytes_per_s,
        "roofline_bound_ms": line.bound_ms,
        "roofline_fraction": line.fraction,
    }
    row = {key: "" if value is None else f"{value:.9g}" for key, value in figures.items()}
    return {**row, "verdict": "" if line.verdict is None else str(line.verdict)}


def to_markdown(comparison: Comparison) -> str:
    title, name = layer_title(comparison), comparison.name  # the (user's) entry name escaped for Markdown
    parts = [f"### {markdown_literal(name) + title[len(name) :] if name else title}", ""]
    rows = [
        [_name(layer, stage), shape(item.output_shape), count(item.params), count(item.macs), count(item.bias_adds),
         count(item.other_ops), "·" if not comparison.measured else "✓" if _layer_ok(layer, stage) else "✗"]
        for _, layer, stage, item in _rows(comparison)
    ]  # fmt: skip
    headers = ["Layer", "Output", "Params", "MACs", "Bias adds", "Norm+act ops", "Checks"]
    parts += [markdown_table(headers, rows, {2, 3, 4, 5}), ""]
    ratio_rows = [
        [item.vs, ratio(item.params), ratio(item.macs), speedup(item), "same" if item.shape_match else "DIFFER"]
        for item in comparison.ratios
    ]
    parts += [markdown_table(["vs", "Params ÷", "MACs ÷", "Speedup", "Shapes"], ratio_rows, {1, 2, 3}), ""]
    for _, layer, stage, item in _rows(comparison):
        stats, line = item.latency, item.roofline
        if stats:
            verdict = f", {bound_cell(line)}" if line is not None and line.verdict is not None else ""
            parts.append(
                f"- {_name(layer, stage)}: {ms_interval(stats)} ms best, {milliseconds(stats.median_ms)} ms typical "
                f"({sampling_text(stats)}, {threads_text(comparison.environment.threads)}{verdict})"
            )
    if any(layer.latency for layer in comparison.layers):
        contention = comparison.environment.contention
        parts += [f"- {contention.note}"] if contention and contention.note else []
        parts.append(f"- {calibration_line(comparison)}")
    if not comparison.measured:
        parts.append("- formula only: nothing was built or run, so no figure is checked against a measurement")
    parts += [f"- {note}" for note in comparison.notes]
    parts += [f"- ✗ {failure}" for failure in comparison.failures]
    return "\n".join(parts).rstrip() + "\n"


def render(comparison: Comparison, output_format: OutputFormat, roofline: bool = False) -> str | Group:
    """Text for json/csv/markdown, the tables for table (the caller prints them); ``roofline`` adds the full
    roofline table (JSON and CSV always carry the roofline figures)."""
    if output_format is OutputFormat.JSON:
        return to_json(comparison.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(csv_rows(comparison), CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return to_markdown(comparison)
    table = render_table(comparison)
    return Group(table, render_roofline(comparison)) if roofline else table
