"""``convcost model`` and ``convcost calibrate``: a whole model layer by layer, and this machine's peaks."""

from __future__ import annotations

from typing import Annotated

import typer

from convcost.cli import options
from convcost.cli.root import EXIT_FAILED, app, emit, exit_codes, format_for


@app.command("model", short_help="Cost of a whole model, layer by layer.")
@options.spliced
def model_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A model file (YAML), a bundled model's name (`convcost bundled` lists them), or "
            "package.module:factory returning an nn.Module."
        ),
    ],
    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="SHAPE[:DTYPE]",
            help="Import paths: an input CxHxW (without the batch), optionally :DTYPE (16:int64); repeat it for "
            "each positional input of forward, in order.",
        ),
    ] = None,
    inputs_file: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            metavar="FILE",
            help="Import paths: the inputs by name, YAML or JSON (args: a list, kwargs: a mapping; each a shape "
            "and dtype). With --input, the file gives only kwargs.",
        ),
    ] = None,
    arguments: options.ArgOption = None,
    batch: options.ModelBatchOption = None,
    width_multiplier: Annotated[
        str | None,
        typer.Option("--width-multiplier", metavar="ALPHA", help="Model files: override width_multiplier (α)."),
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", metavar="HxW", help="Model files: override the input size H or HxW.")
    ] = None,
    by_kind: Annotated[bool, typer.Option("--by-kind", help="Add the breakdown by layer kind.")] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            metavar="N",
            callback=options.bounded("depth"),
            help="Import paths: one row per module this deep (1 to 100).",
        ),
    ] = None,
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Measure end-to-end and per-layer latency (off by default).")
    ] = False,
    timing: options.LayoutTiming = options.LayoutTiming(),
    roofline: Annotated[
        bool, typer.Option("--roofline", help="Add the full roofline table per layer (implies --latency).")
    ] = False,
    dtype: options.DTypeOption = "float32",
    device: options.DeviceOption = "cpu",
    formula_only: options.FormulaOnlyOption = False,
    meta: Annotated[
        bool,
        typer.Option(
            "--meta", help="Count on the meta device: shapes and both counters, nothing computed (no --latency)."
        ),
    ] = False,
    convention: options.ConventionOption = None,
    require_complete: Annotated[
        bool, typer.Option("--require-complete", help="Exit 1 also when an op is not counted by formula.")
    ] = False,
) -> None:
    """Cost of a whole model by layer: params, MACs and other ops, checked against both counters."""
    output_format = format_for(output, output_format)
    with exit_codes():
        from convcost.report.model import render
        from convcost.run.source import evaluate_source
        from convcost.spec.bundled import Use, resolve
        from convcost.spec.source import is_import_path

        if not is_import_path(source):
            source = str(resolve(source, Use.MODEL))
        settings = timing.settings(options.timed("roofline"))
        result = evaluate_source(
            source, input_shape, batch, width_multiplier, size, depth, settings, timing.threads, dtype, device,
            formula_only, meta, convention or "convcost", inputs_file, arguments or (),
        )  # fmt: skip
        emit(lambda: render(result, output_format, by_kind, roofline and not formula_only), output)
    if not result.ok or (require_complete and not result.complete):
        raise typer.Exit(EXIT_FAILED)


@app.command("calibrate", short_help="Measure and cache this machine's peaks.")
def calibrate_command(
    threads: options.ThreadsOption = 1,
    dtype: options.DTypeOption = "float32",
    device: options.DeviceOption = "cpu",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even if a calibration is cached.")] = False,
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
) -> None:
    """Measure this machine's peaks once (matmul FLOP/s, copy GB/s, per-call cost) and cache them for rooflines.

    The cache is keyed by machine, torch version, device, dtype and threads; compare and sweep use the entry that
    matches their own settings.
    """
    output_format = format_for(output, output_format)
    with exit_codes():
        from convcost.spec.compare import run_settings

        chosen_dtype, chosen_device = run_settings(dtype, device)
        from convcost.report.calibration import render
        from convcost.run.calibrate import calibration_for
        from convcost.spec.files import cache_path

        calibration, fresh = calibration_for(chosen_device, chosen_dtype, threads, refresh)
        emit(lambda: render(calibration, str(cache_path()), fresh, output_format), output)
