"""Renderers and number formatting only: Rich tables, JSON, CSV and Markdown from result objects."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.text import Text

from convcost.cost.roofline import Calibration, Roofline
from convcost.cost.stats import BEST_QUANTILE
from convcost.report.literal import json_visible, markdown_literal, visible
from convcost.report.tables import FitTable, literal
from convcost.results.comparison import (
    Comparison,
    Environment,
    LatencyStats,
    LayerResult,
    Ratios,
    StageResult,
    Sweep,
    SweepPoint,
)

if TYPE_CHECKING:
    from convcost.run.batch import BatchResult


class OutputFormat(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"

    def __str__(self) -> str:
        return self.value


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def shape(value: Sequence[int] | None) -> str:
    return "—" if value is None else "×".join(str(v) for v in value)


def csv_shape(value: Sequence[int] | None) -> str:
    """A shape for CSV: plain ASCII ``1x64x126x126``, empty when there is none."""
    return "" if value is None else "x".join(str(v) for v in value)


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    if value == float("inf"):
        return "∞"
    return f"{value:.2f}×"


def speedup(entry: Ratios) -> str:
    """``4.60× (4.21–4.93)``: the measured speedup with its 95 % interval."""
    text = ratio(entry.latency)
    if entry.latency is None or entry.latency_interval is None:
        return text
    low, high = entry.latency_interval
    return f"{text} ({low:.2f}–{high:.2f})"


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


def contention_text(environment: Environment) -> str | None:
    contention = environment.contention
    return None if contention is None else contention.note


def milliseconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def pair(value: Sequence[int] | str) -> str:
    if isinstance(value, str):
        return value
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def channel_map(stage: StageResult) -> str:
    """Which output channels read which input channels, as a rule over groups g."""
    groups = stage.channel_map["groups"]
    if groups == 1:
        return "all ← all"
    out_n, in_n = stage.channel_map["out_per_group"], stage.channel_map["in_per_group"]

    def block(n: int) -> str:
        if n == 1:
            return "g"
        return f"{n}g…{n}g+{n - 1}"

    return f"out {block(out_n)} ← in {block(in_n)}, g=0…{groups - 1}"


def layer_title(comparison: Comparison) -> str:
    spec = comparison.spec
    env = comparison.environment
    dense = comparison.dense.stages[0]
    title = f"{spec['cin']}→{spec['cout']} {dense.kernel[0]}×{dense.kernel[1]}"
    extras = []
    for key, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1))):
        value = getattr(dense, key)
        if value != default:
            extras.append(f"{key} {pair(value)}")
    if not dense.bias:
        extras.append("no bias")
    head = f"{comparison.name}: " if comparison.name else ""
    threads = f"{env.threads} thread" + ("s" if env.threads != 1 else "")
    return (
        f"{head}{title}{', ' + ', '.join(extras) if extras else ''} · input {shape(comparison.dense.input_shape)}"
        f" · {env.dtype} · {env.device} · {threads}"
    )


def _rows(comparison: Comparison) -> list[tuple[str, LayerResult, StageResult | None]]:
    rows: list[tuple[str, LayerResult, StageResult | None]] = []
    for layer in comparison.layers:
        rows.append((layer.kind, layer, None))
        if len(layer.stages) > 1:
            for index, stage in enumerate(layer.stages):
                branch = "└" if index == len(layer.stages) - 1 else "├"
                rows.append((f" {branch} {stage.name}", layer, stage))
    return rows


def _layer_ok(layer: LayerResult, stage: StageResult | None) -> bool:
    if stage is None:
        return layer.ok
    prefix = f"{layer.kind}.{stage.name}"
    return all(check.ok for check in layer.checks if check.subject == prefix)


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


def render_table(comparison: Comparison, console: Console) -> None:
    """The compare report as Rich tables, readable at 80 columns."""
    console.print(Text(visible(layer_title(comparison)), style="bold"))
    show_other = any(layer.other_ops for layer in comparison.layers)
    cost = FitTable(box=box.SIMPLE_HEAD, pad_edge=False, title="Cost (MACs exclude bias adds)", title_justify="left")
    cost.add_column("Layer", no_wrap=True)
    cost.add_column("Output", no_wrap=True)
    cost.add_column("Params", justify="right", no_wrap=True)
    cost.add_column("MACs", justify="right", no_wrap=True)
    cost.add_column("Bias adds", justify="right", no_wrap=True)
    if show_other:
        cost.add_column("Norm+act", justify="right", no_wrap=True)
    cost.add_column("", no_wrap=True)
    for label, layer, stage in _rows(comparison):
        item: LayerResult | StageResult = stage if stage is not None else layer
        mark = Text("✓", style="green") if _layer_ok(layer, stage) else Text("✗", style="bold red")
        if not comparison.measured:
            mark = Text("·", style="dim")
        cells: list[str | Text] = [label, shape(item.output_shape), count(item.params), count(item.macs),
                                   count(item.bias_adds)]  # fmt: skip
        if show_other:
            cells.append(count(item.other_ops))
        cells.append(mark)
        cost.add_row(*cells, style="dim" if stage is not None else None)
    console.print(cost)

    stages = FitTable(box=box.SIMPLE_HEAD, pad_edge=False, title="Stages", title_justify="left")
    stages.add_column("Stage", no_wrap=True)
    stages.add_column("Weight", no_wrap=True)
    stages.add_column("Stride/pad", no_wrap=True)
    stages.add_column("Channels read", overflow="fold")
    for layer in comparison.layers:
        for stage in layer.stages:
            label = layer.kind if len(layer.stages) == 1 else f"{layer.kind}.{stage.name}"
            weight = shape(stage.weight_shape)
            if stage.stored_weight_shape != stage.weight_shape:
                weight += f" (stores {shape(stage.stored_weight_shape)})"
            stages.add_row(label, weight, f"{pair(stage.stride)}/{pair(stage.padding)}", channel_map(stage))
    console.print(stages)
    for layer in comparison.layers:
        for stage in layer.stages:
            for note in stage.notes:
                console.print(Text(visible(f"{layer.kind}.{stage.name}: {note}"), style="yellow"))

    _render_checks(comparison, console)

    console.print()
    ratios = FitTable(box=box.SIMPLE_HEAD, pad_edge=False, title="Dense ÷ alternative", title_justify="left")
    ratios.add_column("vs", no_wrap=True)
    ratios.add_column("Params", justify="right", no_wrap=True)
    ratios.add_column("MACs", justify="right", no_wrap=True)
    ratios.add_column("Latency", justify="right", no_wrap=True)
    predicted = any(entry.roofline is not None for entry in comparison.ratios)
    if predicted:
        ratios.add_column("Roofline", justify="right", no_wrap=True)
    ratios.add_column("Shapes", no_wrap=True)
    for entry in comparison.ratios:
        match = Text("same", style="green") if entry.shape_match else Text("DIFFER", style="bold red")
        ratio_cells: list[str | Text] = [entry.vs, ratio(entry.params), ratio(entry.macs), speedup(entry)]
        if predicted:
            ratio_cells.append(ratio(entry.roofline))
        ratios.add_row(*ratio_cells, match)
    console.print(ratios)
    for entry in comparison.ratios:
        line = textbook_line(entry)
        if line:
            console.print(line)

    if any(layer.latency for layer in comparison.layers):
        _render_latency(comparison, console)
    for note in comparison.notes:
        console.print(Text(visible(note), style="yellow"))
    for failure in comparison.failures:
        console.print(Text(visible(f"✗ {failure}"), style="bold red"))


def _render_checks(comparison: Comparison, console: Console) -> None:
    checks = [check for layer in comparison.layers for check in layer.checks]
    failed = [check for check in checks if not check.ok]
    if not comparison.measured:
        console.print(
            Text(
                "· formula only: nothing built or run, so nothing checked (drop --formula-only to check)",
                style="yellow",
            )
        )
    elif not failed:
        console.print(
            Text(
                f"✓ {len(checks)} checks: output shape, weight shape and params by formula = measured; "
                "MACs by formula = FlopCounterMode = ptflops (its bias adds removed)",
                style="green",
            )
        )
    for check in failed:
        console.print(Text(visible(f"✗ {check.message()}"), style="bold red"))


def _render_latency(comparison: Comparison, console: Console) -> None:
    """Latency with its spread, and the compact roofline: achieved GMAC/s, % of the bound and the verdict."""
    env = comparison.environment
    first = next(layer.latency for layer in comparison.layers if layer.latency)
    # the heading is printed on its own: as a table title it would wrap to the (narrow) table's width
    console.print(
        f"Latency (ms, best = {BEST_QUANTILE:.0%} quantile ± 95% interval, typical = median, "
        f"{threads_text(env.threads)}"
        f"{', channels_last' if env.channels_last else ''}, {allocator_text(env.allocator)})",
        style="italic",
    )
    console.print(f"Sampled {sampling_text(first)}", style="italic")
    table = FitTable(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Layer", no_wrap=True)
    table.add_column("Best (interval)", justify="right", no_wrap=True)
    table.add_column("Typical", justify="right", no_wrap=True)  # the IQR is in JSON and CSV: 80 columns hold this
    table.add_column("GMAC/s", justify="right", no_wrap=True)
    calibrated = comparison.environment.calibration is not None
    if calibrated:  # without peaks there is no bound: no column of dashes
        table.add_column("Roofline", no_wrap=True, min_width=11)
    for label, layer, stage in _rows(comparison):
        stats = layer.latency if stage is None else stage.latency
        line = layer.roofline if stage is None else stage.roofline
        if stats is None:
            continue
        cells = [
            label,
            ms_interval(stats),
            milliseconds(stats.median_ms),
            rate(None if line is None else line.gmacs_per_s),
        ]
        if calibrated:
            cells.append(roofline_cell(line))
        table.add_row(*cells, style="dim" if stage is not None else None)
    console.print(table)
    for entry in comparison.ratios:
        if entry.latency_typical is not None and entry.latency_typical_interval is not None:
            low, high = entry.latency_typical_interval
            unconverged = "" if entry.latency_converged else f" (not within ±{first.target_pct:g}%)"
            console.print(f"{entry.vs}: speedup {speedup(entry)} from best figures{unconverged}, "
                          f"{ratio(entry.latency_typical)} ({low:.2f}–{high:.2f}) from typical")  # fmt: skip
    note = contention_text(env)
    if note:
        console.print(Text(note, style="yellow" if env.contention and env.contention.busy else "dim"))
    console.print(calibration_line(comparison), style="dim", soft_wrap=False)


def threads_text(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads != 1 else "")


def allocator_text(state: str) -> str:
    """'allocator tuned' or the reason it is not (the full state is in the JSON environment)."""
    return "allocator tuned" if state.startswith("glibc mallopt") else f"allocator {state}"


def rate(value: float | None) -> str:
    return "—" if value is None else significant(value)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def roofline_cell(line: Roofline | None) -> str:
    """'78% compute': the fraction of the roofline bound achieved and what bounds it."""
    if line is None or line.verdict is None:
        return "—"
    return f"{percent(line.fraction)} {line.verdict.short}" if line.fraction is not None else line.verdict.short


def peaks_text(calibration: Calibration) -> str:
    grouped = ""
    if calibration.grouped_call_overhead_s is not None:
        grouped = f" ({significant(calibration.grouped_call_overhead_s * 1e6)} grouped)"
    return (
        f"{significant(calibration.peak_flops / 1e9)} GFLOP/s matmul, "
        f"{significant(calibration.peak_bandwidth / 1e9)} GB/s copy, "
        f"{significant(calibration.call_overhead_s * 1e6)} µs per call{grouped}; "
        f"ridge {significant(calibration.ridge)} FLOP/byte"
    )


def calibration_line(comparison: Comparison) -> str:
    """Where the roofline's peaks come from, or how to get them."""
    env = comparison.environment
    calibration = env.calibration
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


def render_roofline(comparison: Comparison, console: Console) -> None:
    """The full roofline: what each layer and stage moves and achieves, then (calibrated) its bound and verdict."""
    work = FitTable(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title="Roofline: work (bytes = input + weights + output once; FLOP = 2·MAC)",
        title_justify="left",
    )
    for header in ("Layer", "MACs", "Bytes", "FLOP/byte", "Measured ms", "GMAC/s", "GB/s"):
        work.add_column(header, justify="left" if header == "Layer" else "right", no_wrap=True)
    rows = [(label, layer.roofline if stage is None else stage.roofline, stage) for label, layer, stage in
            _rows(comparison)]  # fmt: skip
    for label, line, stage in rows:
        if line is not None:
            work.add_row(label, compact_count(line.macs), compact_bytes(line.min_bytes), significant(line.intensity),
                         optional_ms(line.latency_ms), rate(line.gmacs_per_s), rate(line.gbytes_per_s),
                         style="dim" if stage is not None else None)  # fmt: skip
    console.print(work)
    calibration = comparison.environment.calibration
    if calibration is None:
        if not any(layer.latency for layer in comparison.layers):
            console.print(calibration_line(comparison), style="dim")
        return
    bounds = FitTable(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title="Roofline: bounds (ms)",
        title_justify="left",
    )
    for header in ("Layer", "Compute", "Memory", "Per-call", "Bound", "Achieved", "Verdict"):
        bounds.add_column(header, justify="left" if header in ("Layer", "Verdict") else "right", no_wrap=True)
    for label, line, stage in rows:
        if line is not None:
            bounds.add_row(label, optional_ms(line.compute_ms), optional_ms(line.memory_ms),
                           optional_ms(line.overhead_ms), optional_ms(line.bound_ms), percent(line.fraction),
                           "—" if line.verdict is None else str(line.verdict),
                           style="dim" if stage is not None else None)  # fmt: skip
    console.print(bounds)
    console.print(
        f"Peaks: {peaks_text(calibration)}. Bound = max(compute, memory); a layer's is the sum of its stages'. "
        "Achieved = bound ÷ measured (over 100%: the data stayed in cache between calls). Overhead-bound: the "
        "per-call cost exceeds the bound.",
        style="dim",
    )


def significant(value: float) -> str:
    """Three significant digits without an exponent: 0.0123, 1.23, 12.3, 123, 1,234."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def optional_ms(value: float | None) -> str:
    return "—" if value is None else milliseconds(value)


def compact_count(value: int) -> str:
    """1,234,567 → 1.23M: for wide tables where the exact count is shown elsewhere."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{significant(value / limit)}{suffix}"
    return str(value)


def compact_bytes(value: int) -> str:
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= limit:
            return f"{significant(value / limit)} {suffix}"
    return f"{value} B"


def to_json(data: dict[str, Any]) -> str:
    """Indented UTF-8 JSON in which no string carries a raw non-printable character (json_visible)."""
    return json_visible(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


CSV_COLUMNS = [
    "name", "layer", "stage", "input_shape", "output_shape", "output_shape_measured", "weight_shape", "groups",
    "params", "params_measured", "macs", "macs_flop_counter", "macs_ptflops", "ptflops_raw", "flops", "bias_adds",
    "other_ops", "min_bytes", "latency_median_ms", "latency_iqr_ms", "ratio_params", "ratio_macs", "ratio_latency",
    "latency_best_ms", "latency_low_ms", "latency_high_ms", "latency_converged", "ratio_latency_low",
    "ratio_latency_high", "ratio_latency_typical", "busy",
    "ok", "threads", "intensity", "gmacs_per_s", "gbytes_per_s", "roofline_bound_ms", "roofline_fraction",
    "verdict", "ratio_roofline",
]  # fmt: skip


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per layer (stage empty) and one per stage of a multi-stage layer."""
    rows = []
    ratios = {item.vs: item for item in comparison.ratios}
    for _, layer, stage in _rows(comparison):
        item: LayerResult | StageResult = stage if stage is not None else layer
        row: dict[str, Any] = {
            "name": comparison.name or "",
            "layer": layer.kind,
            "stage": stage.name if stage else "",
            "input_shape": csv_shape(item.input_shape),
            "output_shape": csv_shape(item.output_shape),
            "output_shape_measured": csv_shape(item.output_shape_measured),
            "weight_shape": csv_shape(stage.weight_shape) if stage else "",
            "groups": stage.groups if stage else "",
            "params": item.params,
            "params_measured": item.params_measured,
            "macs": item.macs,
            "macs_flop_counter": item.macs_flop_counter,
            "macs_ptflops": item.macs_ptflops,
            "ptflops_raw": item.ptflops_raw,
            "flops": item.flops,
            "bias_adds": item.bias_adds,
            "other_ops": item.other_ops,
            "min_bytes": item.min_bytes,
            "ok": _layer_ok(layer, stage),
        }
        stats = layer.latency if stage is None else stage.latency
        if stats is not None:
            row["latency_median_ms"] = f"{stats.median_ms:.6f}"
            row["latency_iqr_ms"] = f"{stats.iqr_ms:.6f}"
            row["latency_best_ms"] = f"{stats.shown_ms:.6f}"
            if stats.interval_ms is not None:
                row["latency_low_ms"], row["latency_high_ms"] = (f"{value:.6f}" for value in stats.interval_ms)
            row["latency_converged"] = stats.converged
            contention = comparison.environment.contention
            row["busy"] = "" if contention is None else contention.busy
            row["threads"] = comparison.environment.threads
        row.update(_roofline_csv(item.roofline))
        if stage is None and layer.kind in ratios:
            ratio_item = ratios[layer.kind]
            row["ratio_params"] = f"{ratio_item.params:.6f}"
            row["ratio_macs"] = f"{ratio_item.macs:.6f}"
            row["ratio_latency"] = "" if ratio_item.latency is None else f"{ratio_item.latency:.6f}"
            if ratio_item.latency_interval is not None:
                row["ratio_latency_low"], row["ratio_latency_high"] = (
                    f"{value:.6f}" for value in ratio_item.latency_interval
                )
            if ratio_item.latency_typical is not None:
                row["ratio_latency_typical"] = f"{ratio_item.latency_typical:.6f}"
            row["ratio_roofline"] = "" if ratio_item.roofline is None else f"{ratio_item.roofline:.6f}"
        rows.append(row)
    return rows


def _roofline_csv(line: Roofline | None) -> dict[str, Any]:
    if line is None:
        return {}

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.9g}"

    return {
        "intensity": number(line.intensity),
        "gmacs_per_s": number(line.gmacs_per_s),
        "gbytes_per_s": number(line.gbytes_per_s),
        "roofline_bound_ms": number(line.bound_ms),
        "roofline_fraction": number(line.fraction),
        "verdict": "" if line.verdict is None else str(line.verdict),
    }


def csv_value(value: Any) -> Any:
    """The CSV convention: empty for missing, ``true``/``false``, text visible (no raw control characters)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return visible(value)
    return value


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_value(value) for key, value in row.items()})
    return buffer.getvalue()


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if index in right else "---" for index in range(len(headers))) + "|")
    lines.extend("| " + " | ".join(visible(cell).replace("|", "\\|") for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def _markdown_title(comparison: Comparison) -> str:
    """layer_title with the (user's) entry name escaped for Markdown."""
    title, name = layer_title(comparison), comparison.name
    return markdown_literal(name) + title[len(name) :] if name else title


def to_markdown(comparison: Comparison) -> str:
    parts = [f"### {_markdown_title(comparison)}", ""]
    rows = []
    for label, layer, stage in _rows(comparison):
        item: LayerResult | StageResult = stage if stage is not None else layer
        rows.append([
            label.replace("├", "").replace("└", "").strip() if stage is None else f"{layer.kind}.{stage.name}",
            shape(item.output_shape), count(item.params), count(item.macs), count(item.bias_adds),
            count(item.other_ops), "·" if not comparison.measured else "✓" if _layer_ok(layer, stage) else "✗",
        ])  # fmt: skip
    headers = ["Layer", "Output", "Params", "MACs", "Bias adds", "Norm+act ops", "Checks"]
    parts += [markdown_table(headers, rows, {2, 3, 4, 5}), ""]
    ratio_rows = [
        [
            item.vs,
            ratio(item.params),
            ratio(item.macs),
            speedup(item),
            "same" if item.shape_match else "DIFFER",
        ]
        for item in comparison.ratios
    ]
    parts += [markdown_table(["vs", "Params ÷", "MACs ÷", "Speedup", "Shapes"], ratio_rows, {1, 2, 3}), ""]
    for _, layer, stage in _rows(comparison):
        stats, line = (layer.latency, layer.roofline) if stage is None else (stage.latency, stage.roofline)
        if stats:
            name = layer.kind if stage is None else f"{layer.kind}.{stage.name}"
            verdict = f", {roofline_cell(line)}" if line is not None and line.verdict is not None else ""
            parts.append(
                f"- {name}: {ms_interval(stats)} ms best, {milliseconds(stats.median_ms)} ms typical "
                f"({sampling_text(stats)}, {threads_text(comparison.environment.threads)}{verdict})"
            )
    if any(layer.latency for layer in comparison.layers):
        note = contention_text(comparison.environment)
        if note:
            parts.append(f"- {note}")
        parts.append(f"- {calibration_line(comparison)}")
    if not comparison.measured:
        parts.append("- formula only: nothing was built or run, so no figure is checked against a measurement")
    parts += [f"- {note}" for note in comparison.notes]
    parts += [f"- ✗ {failure}" for failure in comparison.failures]
    return "\n".join(parts).rstrip() + "\n"


def render(comparison: Comparison, output_format: OutputFormat, console: Console, roofline: bool = False) -> str | None:
    """Text for json/csv/markdown; tables are printed straight to ``console`` (returns None).

    ``roofline`` adds the full roofline table (JSON and CSV always carry the roofline figures).
    """
    if output_format is OutputFormat.JSON:
        return to_json(comparison.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(csv_rows(comparison), CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return to_markdown(comparison)
    render_table(comparison, console)
    if roofline:
        render_roofline(comparison, console)
    return None


# convcost batch: one summary row per entry and alternative; per-entry detail reuses the compare renderers.

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


def _arrow(dense: int, alternative: int) -> str:
    return f"{count(dense)} → {count(alternative)}"


def compact(value: int) -> str:
    """Exact below a million, else three significant figures: 656, 37,120, 9.27M, 1.23G."""
    if value < 1_000_000:
        return f"{value:,}"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            figure = value / scale
            return f"{figure:.{2 if figure < 10 else 1 if figure < 100 else 0}f}{suffix}"
    return f"{value:,}"  # not reached


def _batch_cells(result: BatchResult, exact: bool = True) -> list[tuple[list[str], str, bool]]:
    """(cells, status, first row of its entry) for every summary row, then one row per total."""
    arrow = _arrow if exact else _compact_arrow
    cells: list[tuple[list[str], str, bool]] = []
    for entry in result.entries:
        for number, row in enumerate(entry.rows()):
            name = entry.name if number == 0 else ""
            if "vs" not in row:
                cells.append(([name, "—", "—", "—", "—", "—", "—", "—", row["status"]], row["status"], True))
                continue
            cells.append((
                [name, row["vs"], "✓" if row["shapes_match"] else "✗",
                 arrow(row["dense_params"], row["params"]), arrow(row["dense_macs"], row["macs"]),
                 ratio(row["ratio_params"]), ratio(row["ratio_macs"]),
                 _with_interval(row["speedup"], row.get("speedup_low"), row.get("speedup_high")), row["status"]],
                row["status"], number == 0,
            ))  # fmt: skip
    return cells


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    """``3.81× (3.70–3.88)``, or the bare ratio without an interval."""
    if value is None or low is None or high is None:
        return ratio(value)
    return f"{ratio(value)} ({low:.2f}–{high:.2f})"


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
    return (
        "Speedup: best figures with their 95% interval; "
        + "; ".join(parts)
        + " (JSON: converged, busy; --detail says more)."
    )


def _compact_arrow(dense: int, alternative: int) -> str:
    return f"{compact(dense)} → {compact(alternative)}"


def _total_cells(result: BatchResult, exact: bool = True) -> list[list[str]]:
    arrow = _arrow if exact else _compact_arrow
    return [
        [f"Total of {item.entries}", item.vs, "", arrow(item.dense_params, item.params),
         arrow(item.dense_macs, item.macs), ratio(item.ratio_params), ratio(item.ratio_macs),
         ratio(item.speedup), ""]
        for item in result.totals
    ]  # fmt: skip


_STATUS_STYLES = {"ok": "green", "failed": "bold red", "invalid": "bold red", "error": "bold red", "not run": "dim"}


def render_batch_table(result: BatchResult, console: Console, detail: bool = False) -> None:
    """The batch summary as a Rich table, the problems under it, then (``detail``) each entry's compare report."""
    console.print(Text(visible(batch_title(result)), style="bold"))
    table = FitTable(box=box.SIMPLE_HEAD, pad_edge=False)
    timed = any(entry.comparison and entry.comparison.dense.latency for entry in result.entries)
    shown = [index for index in range(len(_BATCH_HEADERS)) if timed or _BATCH_HEADERS[index] != "Speedup"]
    for index in shown:
        # fold rather than crop: a cropped figure would read as a different number
        # numbers never wrap (FitTable stacks the rows instead); an entry's name may wrap between words
        table.add_column(_BATCH_HEADERS[index], justify="right" if index in {3, 4, 5, 6, 7} else "left",
                         overflow="fold" if index == 0 else None)  # fmt: skip
    for cells, status, _ in _batch_cells(result, exact=False):
        styled: list[str | Text] = [*cells[:-1], Text(cells[-1], style=_STATUS_STYLES.get(status, ""))]
        if cells[2] == "✗":
            styled[2] = Text("✗", style="bold red")
        table.add_row(*[styled[index] for index in shown])
    totals = _total_cells(result, exact=False)
    if totals and len(result.entries) > 1:
        table.add_section()
        for cells in totals:
            table.add_row(*[cells[index] for index in shown], style="bold")
    console.print(table)
    console.print(Text(_TABLE_CAPTION, style="dim"), soft_wrap=True)
    trust = batch_trust_line(result)
    if trust:
        console.print(Text(trust, style="yellow"), soft_wrap=True)
    for line in result.problems:
        # soft_wrap: one problem per line, whatever the width, so that it can be grepped and copied
        console.print(Text(visible(f"✗ {line}"), style="bold red"), soft_wrap=True)
    if result.interrupted:
        console.print(Text(f"Interrupted: {result.count('not run')} entries not run.", style="yellow"))
    if detail:
        for entry in result.entries:
            if entry.comparison is not None:
                console.rule(literal(entry.name))
                render_table(entry.comparison, console)


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
            for key in ("ratio_params", "ratio_macs", "dense_latency_ms", "latency_ms", "speedup", "speedup_low",
                        "speedup_high", "speedup_typical"):  # fmt: skip
                if out.get(key) is not None:
                    out[key] = f"{out[key]:.6f}"
            rows.append(out)
    return rows


def batch_to_markdown(result: BatchResult, detail: bool = False) -> str:
    parts = [f"### {markdown_literal(str(result.source))}{batch_title(result)[len(str(result.source)) :]}", ""]
    rows = [[markdown_literal(cells[0]), *cells[1:]] for cells, _, _ in _batch_cells(result)]
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
    result: BatchResult, output_format: OutputFormat, console: Console, detail: bool = False
) -> str | None:
    """Text for json/csv/markdown; the table is printed straight to ``console`` (returns None).

    With ``detail``, JSON carries each entry's full comparison and CSV has compare's per-stage rows instead of
    the summary rows.
    """
    if output_format is OutputFormat.JSON:
        return to_json(result.to_dict(detail))
    if output_format is OutputFormat.CSV:
        if detail:
            rows = [row for entry in result.entries if entry.comparison for row in csv_rows(entry.comparison)]
            return to_csv(rows, CSV_COLUMNS)
        return to_csv(batch_csv_rows(result), BATCH_CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return batch_to_markdown(result, detail)
    render_batch_table(result, console, detail)
    return None


# convcost sweep: one row per grid point and alternative.

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
    columns = ["Layer"]
    if len({point.vs for point in sweep.points}) > 1:
        columns.append("vs")
    columns += ["MACs ÷", "Speedup", "of MACs"]
    if any(point.roofline_speedup is not None for point in sweep.points):
        columns.append("Roofline")
    if any(point.dense_ms is not None for point in sweep.points):
        columns.append("ms dense → alt")
    if any(point.dense_verdict for point in sweep.points):
        columns.append("Bound")
    return columns


def _sweep_cells(point: SweepPoint, columns: list[str]) -> list[str]:
    def letter(verdict: str | None) -> str:
        return (verdict or "—")[0].upper()

    cells = {
        "Layer": f"{point.cin}→{point.cout} {point.kernel[0]}×{point.kernel[1]} @{pair(point.size)}",
        "vs": point.vs,
        "MACs ÷": ratio(point.macs_ratio),
        "Speedup": _with_interval(point.speedup, point.speedup_low, point.speedup_high),
        "of MACs": percent(point.efficiency),
        "Roofline": ratio(point.roofline_speedup),
        "ms dense → alt": f"{optional_ms(point.dense_ms)} → {optional_ms(point.alternative_ms)}",
        "Bound": f"{letter(point.dense_verdict)} → {letter(point.alternative_verdict)}",
    }
    return [cells[column] for column in columns]


def render_sweep_table(sweep: Sweep, console: Console) -> None:
    console.print(Text(visible(sweep_title(sweep)), style="bold"))
    columns = _sweep_columns(sweep)
    table = FitTable(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="left" if column in ("Layer", "vs", "Bound") else "right", no_wrap=True)
    for point in sweep.points:
        table.add_row(*_sweep_cells(point, columns), style=None if point.ok else "bold red")
    console.print(table)
    console.print(sweep_legend(sweep, columns), style="dim")
    for failure in sweep.failures:
        console.print(Text(visible(f"✗ {failure}"), style="bold red"))


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
    rows = []
    for point in sweep.points:
        row = point.to_dict()
        row["kernel"], row["size"] = csv_shape(point.kernel), csv_shape(point.size)
        for key in ("params_ratio", "macs_ratio", "speedup", "efficiency", "roofline_speedup", "dense_ms",
                    "alternative_ms", "dense_spread_pct", "alternative_spread_pct", "speedup_low", "speedup_high",
                    "speedup_typical"):  # fmt: skip
            if row[key] is not None:
                row[key] = f"{row[key]:.6f}"
        rows.append(row)
    return rows


def sweep_to_markdown(sweep: Sweep) -> str:
    columns = _sweep_columns(sweep)
    right = {index for index, column in enumerate(columns) if column not in ("Layer", "vs", "Bound")}
    parts = [f"### {sweep_title(sweep)}", ""]
    parts.append(markdown_table(columns, [_sweep_cells(point, columns) for point in sweep.points], right))
    parts += ["", sweep_legend(sweep, columns), *[f"- ✗ {failure}" for failure in sweep.failures]]
    return "\n".join(parts).rstrip() + "\n"


def render_sweep(sweep: Sweep, output_format: OutputFormat, console: Console) -> str | None:
    """Text for json/csv/markdown; the table is printed straight to ``console`` (returns None)."""
    if output_format is OutputFormat.JSON:
        return to_json(sweep.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(sweep_csv_rows(sweep), SWEEP_CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return sweep_to_markdown(sweep)
    render_sweep_table(sweep, console)
    return None


def _giga(interval: tuple[float, float] | None) -> str:
    return _scaled(interval, 1e-9)


def _micro(interval: tuple[float, float] | None) -> str:
    return _scaled(interval, 1e6)


def _scaled(interval: tuple[float, float] | None, scale: float) -> str:
    """`` (low–high)`` of an interval in the unit ``scale`` gives, or nothing when it was not measured."""
    return "" if interval is None else f" ({significant(interval[0] * scale)}–{significant(interval[1] * scale)})"


def render_calibration(calibration: Calibration, path: str, fresh: bool, console: Console) -> None:
    """What `convcost calibrate` found, and where it is cached."""
    console.print(Text(visible(calibration.key), style="bold"), soft_wrap=True)
    table = FitTable(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Peak", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Measured with", overflow="fold")  # prose: may wrap between words
    table.add_row("compute", f"{significant(calibration.peak_flops / 1e9)}{_giga(calibration.peak_flops_interval)} "
                  "GFLOP/s", f"{calibration.matmul_size}×{calibration.matmul_size} matmul")  # fmt: skip
    table.add_row("memory", f"{significant(calibration.peak_bandwidth / 1e9)}"
                  f"{_giga(calibration.peak_bandwidth_interval)} GB/s",
                  f"copy of {compact_bytes(calibration.copy_bytes)} (read + write)")  # fmt: skip
    table.add_row("per call", f"{significant(calibration.call_overhead_s * 1e6)}"
                  f"{_micro(calibration.call_overhead_interval)} µs", "1×1 conv on 1×1×1×1")  # fmt: skip
    if calibration.grouped_call_overhead_s is not None:
        table.add_row("grouped call", f"{significant(calibration.grouped_call_overhead_s * 1e6)}"
                      f"{_micro(calibration.grouped_call_overhead_interval)} µs",
                      "3×3 depthwise conv on 1×2×3×3")  # fmt: skip
    table.add_row("ridge", f"{significant(calibration.ridge)} FLOP/byte", "compute ÷ memory")
    if calibration.probe_bandwidth is not None and calibration.probe_flops is not None:
        table.add_row("probe copy", f"{significant(calibration.probe_bandwidth / 1e9)} GB/s",
                      "8 MiB copy: quiet, for the latency probe")  # fmt: skip
        table.add_row("probe matmul", f"{significant(calibration.probe_flops / 1e9)} GFLOP/s",
                      "128×128 matmul: quiet, for the probe")  # fmt: skip
    console.print(table)
    if calibration.peak_flops_interval is not None:
        console.print("(low–high): 95% interval of the median over the timed blocks", style="dim")
    if calibration.busy:
        console.print(Text(f"Warning: {calibration.contention_note} Its peaks may be low, so runs compare their "
                           "probe with their own best instead: calibrate --refresh when the machine is quiet.",
                           style="bold yellow"))  # fmt: skip
    when = "measured now" if fresh else f"cached, measured {calibration.measured_at} (--refresh to redo)"
    console.print(literal(f"{when}; {allocator_text(calibration.allocator)}; {path}"), style="dim", soft_wrap=True)
