"""The roofline of a result: every stage's and layer's figures set from its MACs, bytes and latencies."""

from __future__ import annotations

from convcost.cost.roofline import Calibration, Roofline, RooflineBound, analyse, combine, is_grouped_call, overhead_s
from convcost.results.comparison import LayerResult


def line(
    macs: int, min_bytes: int, latency_ms: float | None, calibration: Calibration | None, calls: int, grouped: int
) -> Roofline:
    """The roofline of a compare stage or a model layer: ``calls`` eager calls, ``grouped`` of them a grouped
    spatial conv (which pays the grouped call's cost, see :func:`convcost.cost.roofline.is_grouped_call`)."""
    overhead = None if calibration is None else overhead_s(calibration, grouped, calls - grouped)
    return analyse(macs, min_bytes, latency_ms, calibration, calls, overhead)


def annotate(layer: LayerResult, calibration: Calibration | None) -> None:
    """Set the roofline of every stage of ``layer`` and of the layer, from its MACs, bytes and latencies."""
    for stage in layer.stages:
        stage_latency = stage.latency
        if stage_latency is None and len(layer.stages) == 1:
            stage_latency = layer.latency
        latency_ms = None if stage_latency is None else stage_latency.shown_ms
        grouped = int(is_grouped_call(stage.groups, stage.kernel))
        calls = 1 + (stage.norm != "none") + (stage.act != "none")  # eager calls: the conv, its norm, its activation
        stage.roofline = line(stage.macs, stage.min_bytes, latency_ms, calibration, calls, grouped)
    latency_ms = None if layer.latency is None else layer.latency.shown_ms
    layer.roofline = combine([stage.roofline for stage in layer.stages if stage.roofline is not None], latency_ms)


def limited_stages(layer: LayerResult) -> str:
    """A clause naming the stages of ``layer`` that are not compute-bound, and why ('' without verdicts)."""
    parts, causes = [], set()
    for stage in layer.stages:
        line = stage.roofline
        if line is None or line.verdict is None or line.verdict is RooflineBound.COMPUTE:
            continue
        name = stage.name if len(layer.stages) > 1 else layer.kind
        if line.verdict is RooflineBound.MEMORY:
            parts.append(f"{name} is memory-bound ({line.intensity:.2g} FLOP/byte)")
            causes.add("memory traffic")
        else:
            parts.append(f"{name} is overhead-bound (its per-call cost exceeds its roofline bound)")
            causes.add("per-call cost")
    if not parts:
        return ""
    cause = " and ".join(sorted(causes))
    verb = "sets" if len(causes) == 1 else "set"
    whose = "its" if len(parts) == 1 else "their"
    return f"{' and '.join(parts)}, so {cause}, not MACs, {verb} {whose} time"
