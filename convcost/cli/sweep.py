"""``convcost sweep``: compare over a grid of cin × cout × kernel × size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from convcost.cli.compare import cached_calibration
from convcost.cli.options import (
    ChannelsLastOption,
    FormatOption,
    LatencyOption,
    MaxTimeOption,
    MinTimeOption,
    OutputOption,
    RoundsOption,
    TargetOption,
    ThreadsOption,
    TuneAllocatorOption,
    latency_settings,
)
from convcost.cli.root import EXIT_FAILED, FLAGS, app, emit, exit_codes, fail, format_for, progress_bar, stderr


@app.command("sweep", short_help="Compare over a grid: MAC ratio against speedup.")
def sweep_command(
    cin: Annotated[str, typer.Option("--cin", help="Input channels, e.g. 8,32,128.", show_default=False)],
    cout: Annotated[str, typer.Option("--cout", help="Output channels, e.g. 64,256.", show_default=False)],
    kernel: Annotated[str, typer.Option("--kernel", "-k", help="Kernels, e.g. 3,5,7 or 3x5.", show_default=False)],
    size: Annotated[str, typer.Option("--size", help="Input sizes H=W or HxW, e.g. 56,112.")] = "56",
    stride: Annotated[str, typer.Option("--stride", help="Stride: 1 or 2x1.")] = "1",
    padding: Annotated[str, typer.Option("--padding", help="Padding: 0, 1x2 or same.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", help="Dilation: 1 or 2x1.")] = "1",
    groups: Annotated[str, typer.Option("--groups", help="Groups of the 'grouped' alternative.")] = "1",
    multiplier: Annotated[str, typer.Option("--multiplier", help="Depth multiplier m of depthwise stages.")] = "1",
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Conv bias on every stage.")] = True,
    norm: Annotated[str, typer.Option("--norm", help="After each conv: none or batch.")] = "none",
    act: Annotated[str, typer.Option("--act", help="After each conv (and norm): none, relu or relu6.")] = "none",
    batch: Annotated[str, typer.Option("--batch", help="Batch size.")] = "1",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")] = "float32",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    vs: Annotated[
        list[str] | None,
        typer.Option("--vs", help="Alternatives (repeat or separate with commas).", show_default="separable"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also write a plot of MAC ratio against speedup (.png or .svg; needs matplotlib: "
            "pip install 'convcost[plot]').",
            dir_okay=False,
        ),
    ] = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
    latency: LatencyOption = True,
    threads: ThreadsOption = 1,
    rounds: RoundsOption = None,
    min_time: MinTimeOption = 0.004,
    target: TargetOption = 3.0,
    max_time: MaxTimeOption = 2.0,
    channels_last: ChannelsLastOption = False,
    tune_allocator: TuneAllocatorOption = True,
) -> None:
    """Compare over a grid of cin × cout × kernel × size: MAC ratio against measured speedup, table and plot.

    Comma-separated values make the axes, e.g. --cin 8,32,128 --cout 64,256 -k 3,5,7 --size 56,112.
    """
    output_format = format_for(output, output_format)
    fixed: dict[str, Any] = {
        "stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "multiplier": multiplier,
        "bias": bias, "norm": norm, "act": act, "batch": batch, "dtype": dtype, "device": device,
    }  # fmt: skip
    if vs:
        fixed["vs"] = [kind.strip() for value in vs for kind in value.split(",") if kind.strip()]
    axes = {"cin": cin, "cout": cout, "kernel": kernel, "size": size}
    with exit_codes():
        from convcost.report.comparison import OutputFormat, render_sweep
        from convcost.run import sweep

        specs = sweep.plan(axes, fixed)
        if plot is not None:  # refused before anything is measured
            if not latency:
                fail("--plot: the plot shows measured speedups: leave out --no-latency")
            from convcost.report.plot import check_plot_path
            from convcost.spec.files import will_write

            check_plot_path(plot)
            will_write(plot, "--plot")
        result = _run_sweep(specs, axes, fixed, latency, threads, rounds, min_time, channels_last, tune_allocator,
                            target, max_time)  # fmt: skip
        emit(lambda console: render_sweep(result, OutputFormat(output_format.value), console), output)
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


def _run_sweep(
    specs: list[Any], axes: dict[str, str], fixed: dict[str, Any], latency: bool, threads: int, rounds: int | None,
    min_time: float, channels_last: bool, tune_allocator: bool, target: float = 3.0, max_time: float = 2.0,
) -> Any:  # fmt: skip
    """Run the sweep with a progress bar on an interactive stderr."""
    from convcost.run import sweep

    settings = latency_settings(latency, threads, rounds, min_time, channels_last, tune_allocator, target=target,
                                 max_time=max_time)  # fmt: skip
    calibration = cached_calibration(specs[0].device, specs[0].dtype, threads, timing=latency)
    progress, update = progress_bar(len(specs), "sweep")
    with progress:
        return sweep.run(specs, axes, fixed, settings, calibration,
                         lambda index, total, spec: update(index, sweep.describe(spec)))  # fmt: skip


# ---- convcost check ----------------------------------------------------------------------------------------
