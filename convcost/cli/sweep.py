"""``convcost sweep``: compare over a grid of cin × cout × kernel × size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from convcost.cli import options
from convcost.cli.compare import cached_calibration
from convcost.cli.root import EXIT_FAILED, FLAGS, app, emit, exit_codes, fail, format_for, progress_bar, stderr


@app.command("sweep", short_help="Compare over a grid: MAC ratio against speedup.")
@options.spliced
def sweep_command(
    layer: options.Layer,
    size: options.SizeOption = "128",
    stages: options.Stages = options.Stages(),
    norm: options.NormOption = "none",
    act: options.ActOption = "none",
    batch: options.BatchOption = "1",
    dtype: options.DTypeOption = "float32",
    device: options.DeviceOption = "cpu",
    vs: options.VsOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Also write a plot of MAC ratio against speedup (.png or .svg; needs matplotlib: "
            "pip install 'convcost[plot]').",
            dir_okay=False,
        ),
    ] = None,
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
    formula_only: options.FormulaOnlyOption = False,
    latency: options.LatencyOption = True,
    timing: options.LayoutTiming = options.LayoutTiming(),
    roofline: options.RooflineOption = False,
) -> None:
    """Compare over a grid of cin × cout × kernel × size: MAC ratio against measured speedup, table and plot.

    Comma-separated values make the axes, e.g. --cin 8,32,128 --cout 64,256 -k 3,5,7 --size 56,112.
    """
    output_format, latency = format_for(output, output_format), options.timed()
    fixed: dict[str, Any] = {**vars(stages), "norm": norm, "act": act, "batch": batch, "dtype": dtype, "device": device}
    if vs:
        fixed["vs"] = options.kinds_asked(vs)
    axes = {**vars(layer), "size": size}
    with exit_codes():
        from convcost.report.sweep import render_sweep
        from convcost.run import sweep
        from convcost.spec.sweep import describe, plan

        specs = plan(axes, fixed)
        if plot is not None:  # refused before anything is measured
            if not latency or formula_only:
                flag = "--formula-only" if formula_only else "--no-latency"
                fail(f"--plot: the plot shows measured speedups: leave out {flag}")
            from convcost.report.plot import check_plot_path
            from convcost.spec.files import claim

            check_plot_path(plot)
            claim(plot, "--plot")  # as -o: a missing folder, a read-only file, an input
        settings = timing.settings(latency)
        calibration = None
        if not formula_only:  # by formula alone, torch is never imported
            calibration = cached_calibration(specs[0].device, specs[0].dtype, timing.threads, settings is not None)
        # a progress bar on an interactive stderr
        progress, update = progress_bar(len(specs), "sweep")
        with progress, options.on_threads(timing.threads, settings, measure=not formula_only):
            result = sweep.run(specs, axes, fixed, settings, calibration,
                               lambda index, total, spec: update(index, describe(spec)), measure=not formula_only,
                               threads=timing.threads)  # fmt: skip
        emit(lambda: render_sweep(result, output_format, roofline), output)
        if plot is not None:
            from convcost.report.plot import plot_sweep

            try:
                plot_sweep(result, plot)
            except OSError as error:
                fail(f"--plot: cannot write {plot}: {error.strerror or error}")
    if result.interrupted:
        from convcost.run import interrupts

        done = len({(point.cin, point.cout, point.kernel, point.size) for point in result.points})
        stderr().print(f"convcost: {interrupts.what()} after {done} of {result.planned} grid points", markup=False)
        FLAGS.interrupt_reported = True
        raise typer.Exit(interrupts.exit_code())
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
