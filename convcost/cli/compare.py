"""``convcost compare``: one dense Conv2d against its alternatives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.cli import options
from convcost.cli.root import EXIT_FAILED, STAGE_NAMES_FOR_SET, app, emit, exit_codes, fail, format_for, warn

if TYPE_CHECKING:
    from convcost.cost.roofline import Calibration


def _parse_overrides(values: list[str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for value in values:
        target, _, setting = value.partition("=")
        stage, _, field = (part.strip() for part in target.partition("."))
        if not setting or not stage or not field:
            fail(f"--set: expected STAGE.FIELD=VALUE (e.g. pointwise.padding=1), got {value!r}")
        if stage not in STAGE_NAMES_FOR_SET:  # not a flag's name either: --set size.x=1 sets no stage
            fail(f"--set {stage}: unknown stage (stages: {', '.join(STAGE_NAMES_FOR_SET)})")
        settings = overrides.setdefault(stage, {})
        if field in settings:
            fail(f"--set: {stage}.{field} is given twice")
        settings[field] = setting.strip()
    return overrides


@app.command(short_help="Dense Conv2d against its alternatives, checked two ways.")
@options.spliced
def compare(
    layer: options.Layer,
    stages: options.Stages = options.Stages(),
    mid: options.MidOption = None,
    norm: options.NormOption = "none",
    act: options.ActOption = "none",
    size: options.SizeOption = "128",
    batch: options.BatchOption = "1",
    dtype: options.DTypeOption = "float32",
    device: options.DeviceOption = "cpu",
    vs: options.VsOption = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="STAGE.FIELD=VALUE",
            help="Override one stage's setting: STAGE.FIELD=VALUE, e.g. pointwise.padding=1.",
        ),
    ] = None,
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
    formula_only: options.FormulaOnlyOption = False,
    latency: options.LatencyOption = True,
    timing: options.LayoutTiming = options.LayoutTiming(),
    roofline: options.RooflineOption = False,
) -> None:
    """Compare a dense Conv2d with its alternatives: shapes, params, MACs and latency, each checked two ways."""
    data: dict[str, Any] = {**vars(layer), **vars(stages), "norm": norm, "act": act, "size": size, "batch": batch,
                            "dtype": dtype, "device": device}  # fmt: skip
    if mid is not None:
        data["mid"] = mid
    if vs:
        data["vs"] = options.kinds_asked(vs)
    stage_settings = _parse_overrides(overrides or [])
    data.update(stage_settings)
    output_format, latency = format_for(output, output_format), options.timed()
    from convcost.spec.kinds import check_memory, parse_compare

    with exit_codes(frozenset(stage_settings)):
        spec = parse_compare(data)
        from convcost.report.compare import render

        if formula_only:  # pure Python: torch is never imported
            from convcost.run.estimate import estimate

            comparison = estimate(spec, timing.threads)
        else:
            if spec.device == "cpu":  # before torch; on cuda, torch first says whether there is a GPU (check_device)
                check_memory(spec)
            from convcost.run.comparison import compare as measure

            settings = timing.settings(latency)
            calibration = cached_calibration(spec.device, spec.dtype, timing.threads, timing=latency)
            with options.on_threads(timing.threads, settings):
                comparison = measure(spec, settings, calibration, timing.threads)
        emit(lambda: render(comparison, output_format, roofline), output)
    if not comparison.ok:
        raise typer.Exit(EXIT_FAILED)


def cached_calibration(device: str, dtype: Any, threads: int, timing: bool) -> Calibration | None:
    """The cached calibration; a broken cache stops a timed run, but a run that times nothing goes on without it.

    A broken cache is the machine's problem, not the input's: a warning names the cache, never an input line.
    """
    from convcost.run.cache import CalibrationCacheError, cached

    try:
        return cached(device, dtype, threads)
    except CalibrationCacheError as error:
        if timing:
            raise
        warn(f"{error} (no roofline bounds: nothing is timed)")
        return None
