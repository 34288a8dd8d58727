"""Renderers and number formatting only: Rich tables, JSON, CSV and Markdown from result objects."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from convcost.results import Comparison, LayerResult, StageResult


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


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    if value == float("inf"):
        return "∞"
    return f"{value:.2f}×"


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


def render_table(comparison: Comparison, console: Console) -> None:
    """The compare report as Rich tables, readable at 80 columns."""
    console.print(Text(layer_title(comparison), style="bold"))
    show_other = any(layer.other_ops for layer in comparison.layers)
    cost = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Cost (MACs exclude bias adds)", title_justify="left")
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
        cells: list[str | Text] = [label, shape(item.output_shape), count(item.params), count(item.macs),
                                   count(item.bias_adds)]  # fmt: skip
        if show_other:
            cells.append(count(item.other_ops))
        cells.append(mark)
        cost.add_row(*cells, style="dim" if stage is not None else None)
    console.print(cost)

    stages = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Stages", title_justify="left")
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
                console.print(Text(f"{layer.kind}.{stage.name}: {note}", style="yellow"))

    _render_checks(comparison, console)

    ratios = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Dense ÷ alternative", title_justify="left")
    ratios.add_column("vs", no_wrap=True)
    ratios.add_column("Params", justify="right", no_wrap=True)
    ratios.add_column("MACs", justify="right", no_wrap=True)
    ratios.add_column("Latency", justify="right", no_wrap=True)
    ratios.add_column("Shapes", no_wrap=True)
    for entry in comparison.ratios:
        match = Text("same", style="green") if entry.shape_match else Text("DIFFER", style="bold red")
        ratios.add_row(entry.vs, ratio(entry.params), ratio(entry.macs), ratio(entry.latency), match)
    console.print(ratios)
    for entry in comparison.ratios:
        if entry.textbook is not None and entry.bound is not None:
            console.print(
                f"{entry.vs}: MAC ratio {ratio(entry.macs)}; textbook 1/(1/K + 1/(R·S)) = {entry.textbook:.2f} "
                f"(multiplier 1, no bias); bound R·S = {entry.bound}"
            )

    if any(layer.latency for layer in comparison.layers):
        _render_latency(comparison, console)
    for note in comparison.notes:
        console.print(Text(note, style="yellow"))
    for failure in comparison.failures:
        console.print(Text(f"✗ {failure}", style="bold red"))


def _render_checks(comparison: Comparison, console: Console) -> None:
    checks = [check for layer in comparison.layers for check in layer.checks]
    failed = [check for check in checks if not check.ok]
    if not failed:
        console.print(
            Text(
                f"✓ {len(checks)} checks: output shape, weight shape and params by formula = measured; "
                "MACs by formula = FlopCounterMode = ptflops (its bias adds removed)",
                style="green",
            )
        )
    for check in failed:
        console.print(Text(f"✗ {check.message()}", style="bold red"))


def _render_latency(comparison: Comparison, console: Console) -> None:
    env = comparison.environment
    first = next(layer.latency for layer in comparison.layers if layer.latency)
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"Latency (ms, median of {first.rounds} interleaved rounds, {env.threads} thread"
        f"{'s' if env.threads != 1 else ''}{', channels_last' if env.channels_last else ''})",
        title_justify="left",
    )
    table.add_column("Layer", no_wrap=True)
    table.add_column("Median", justify="right", no_wrap=True)
    table.add_column("IQR", justify="right", no_wrap=True)
    table.add_column("Min–max", justify="right", no_wrap=True)
    table.add_column("Calls", justify="right", no_wrap=True)
    for layer in comparison.layers:
        stats = layer.latency
        if stats is None:
            continue
        table.add_row(
            layer.kind,
            milliseconds(stats.median_ms),
            f"{milliseconds(stats.iqr_ms)} ({stats.spread_pct:.0f}%)",
            f"{milliseconds(stats.min_ms)}–{milliseconds(stats.max_ms)}",
            count(stats.calls),
        )
    console.print(table)


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS = [
    "name", "layer", "stage", "input_shape", "output_shape", "output_shape_measured", "weight_shape", "groups",
    "params", "params_measured", "macs", "macs_flop_counter", "macs_ptflops", "ptflops_raw", "flops", "bias_adds",
    "other_ops", "min_bytes", "latency_median_ms", "latency_iqr_ms", "ratio_params", "ratio_macs", "ratio_latency",
    "ok",
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
            "input_shape": shape(item.input_shape),
            "output_shape": shape(item.output_shape),
            "output_shape_measured": shape(item.output_shape_measured),
            "weight_shape": shape(stage.weight_shape) if stage else "",
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
        if stage is None and layer.latency is not None:
            row["latency_median_ms"] = f"{layer.latency.median_ms:.6f}"
            row["latency_iqr_ms"] = f"{layer.latency.iqr_ms:.6f}"
        if stage is None and layer.kind in ratios:
            ratio_item = ratios[layer.kind]
            row["ratio_params"] = f"{ratio_item.params:.6f}"
            row["ratio_macs"] = f"{ratio_item.macs:.6f}"
            row["ratio_latency"] = "" if ratio_item.latency is None else f"{ratio_item.latency:.6f}"
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if index in right else "---" for index in range(len(headers))) + "|")
    lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def to_markdown(comparison: Comparison) -> str:
    parts = [f"### {layer_title(comparison)}", ""]
    rows = []
    for label, layer, stage in _rows(comparison):
        item: LayerResult | StageResult = stage if stage is not None else layer
        rows.append([
            label.replace("├", "").replace("└", "").strip() if stage is None else f"{layer.kind}.{stage.name}",
            shape(item.output_shape), count(item.params), count(item.macs), count(item.bias_adds),
            count(item.other_ops), "✓" if _layer_ok(layer, stage) else "✗",
        ])  # fmt: skip
    headers = ["Layer", "Output", "Params", "MACs", "Bias adds", "Norm+act ops", "Checks"]
    parts += [markdown_table(headers, rows, {2, 3, 4, 5}), ""]
    ratio_rows = [
        [
            item.vs,
            ratio(item.params),
            ratio(item.macs),
            ratio(item.latency),
            "same" if item.shape_match else "DIFFER",
        ]
        for item in comparison.ratios
    ]
    parts += [markdown_table(["vs", "Params ÷", "MACs ÷", "Speedup", "Shapes"], ratio_rows, {1, 2, 3}), ""]
    for layer in comparison.layers:
        if layer.latency:
            parts.append(
                f"- {layer.kind}: {milliseconds(layer.latency.median_ms)} ms median "
                f"(IQR {milliseconds(layer.latency.iqr_ms)} ms, {layer.latency.rounds} rounds)"
            )
    parts += [f"- {note}" for note in comparison.notes]
    parts += [f"- ✗ {failure}" for failure in comparison.failures]
    return "\n".join(parts).rstrip() + "\n"


def render(comparison: Comparison, output_format: OutputFormat, console: Console) -> str | None:
    """Text for json/csv/markdown; tables are printed straight to ``console`` (returns None)."""
    if output_format is OutputFormat.JSON:
        return to_json(comparison.to_dict())
    if output_format is OutputFormat.CSV:
        return to_csv(csv_rows(comparison), CSV_COLUMNS)
    if output_format is OutputFormat.MARKDOWN:
        return to_markdown(comparison)
    render_table(comparison, console)
    return None
