"""What ``convcost calibrate`` found, as a Rich table, JSON, CSV or Markdown."""

from __future__ import annotations

from rich.console import Group, RenderableType

from convcost.cost.roofline import Calibration
from convcost.report.export import markdown_table, to_csv, to_json
from convcost.report.format import OutputFormat, allocator_text, compact_bytes, significant
from convcost.report.literal import visible
from convcost.report.tables import FitTable, prose


def render(calibration: Calibration, path: str, fresh: bool, output_format: OutputFormat) -> str | Group:
    """Text for json/csv/markdown (the cache entry, its key, and for JSON where it is cached), else the table."""
    row = {**calibration.to_dict(), "key": calibration.key}
    if output_format is OutputFormat.JSON:
        return to_json({**row, "cache": path, "measured_now": fresh})
    if output_format is OutputFormat.CSV:
        return to_csv([row], list(row))
    if output_format is OutputFormat.MARKDOWN:
        return markdown_table(["Key", "Value"], [[key, str(value)] for key, value in row.items()]) + "\n"
    return render_calibration(calibration, path, fresh)


def _figure(value: float, interval: tuple[float, float] | None, scale: float, unit: str) -> str:
    """``value`` in ``unit``, then `` (low–high)``: its interval (if measured) in the unit ``scale`` gives."""
    spread = "" if interval is None else f" ({significant(interval[0] * scale)}–{significant(interval[1] * scale)})"
    return f"{significant(value)}{spread} {unit}"


def render_calibration(calibration: Calibration, path: str, fresh: bool) -> Group:
    """What `convcost calibrate` found, and where it is cached."""
    table = FitTable()
    parts: list[RenderableType] = [prose(visible(calibration.key), style="bold", soft_wrap=True), table]
    table.add_columns(["Peak", "Value"], right=["Value"])
    table.add_column("Measured with", overflow="fold")  # prose: may wrap between words
    compute = _figure(calibration.peak_flops / 1e9, calibration.peak_flops_interval, 1e-9, "GFLOP/s")
    table.add_row("compute", compute, f"{calibration.matmul_size}×{calibration.matmul_size} matmul")
    memory = _figure(calibration.peak_bandwidth / 1e9, calibration.peak_bandwidth_interval, 1e-9, "GB/s")
    table.add_row("memory", memory, f"copy of {compact_bytes(calibration.copy_bytes)} (read + write)")
    per_call = _figure(calibration.call_overhead_s * 1e6, calibration.call_overhead_interval, 1e6, "µs")
    table.add_row("per call", per_call, "1×1 conv on 1×1×1×1")
    if calibration.grouped_call_overhead_s is not None:
        interval = calibration.grouped_call_overhead_interval
        grouped = _figure(calibration.grouped_call_overhead_s * 1e6, interval, 1e6, "µs")
        table.add_row("grouped call", grouped, "3×3 depthwise conv on 1×2×3×3")
    table.add_row("ridge", f"{significant(calibration.ridge)} FLOP/byte", "compute ÷ memory")
    if calibration.probe_bandwidth is not None and calibration.probe_flops is not None:
        table.add_row("probe copy", f"{significant(calibration.probe_bandwidth / 1e9)} GB/s",
                      "8 MiB copy: quiet, for the latency probe")  # fmt: skip
        table.add_row("probe matmul", f"{significant(calibration.probe_flops / 1e9)} GFLOP/s",
                      "128×128 matmul: quiet, for the probe")  # fmt: skip
    if calibration.host_spread is not None:
        table.add_row("window to window", f"±{calibration.host_spread:.1%}",
                      f"probe copy ÷ matmul, {calibration.host_windows} windows: widens latency intervals")  # fmt: skip
    if calibration.peak_flops_interval is not None:
        parts.append(prose("(low–high): 95% interval of the median over the timed blocks", style="dim"))
    if calibration.busy:
        parts.append(prose(f"Warning: {calibration.contention_note} Its peaks may be low, so runs compare their "
                           "probe with their own best instead: calibrate --refresh when the machine is quiet.",
                           style="bold yellow"))  # fmt: skip
    when = "measured now" if fresh else f"cached, measured {calibration.measured_at} (--refresh to redo)"
    parts.append(prose(f"{when}; {allocator_text(calibration.allocator)}; {path}", style="dim", soft_wrap=True))
    return Group(*parts)
