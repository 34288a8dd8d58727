"""``convcost batch`` and ``convcost schema``: every comparison in a YAML file, and that file's JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.cli import options
from convcost.cli.compare import cached_calibration
from convcost.cli.root import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_USAGE,
    FLAGS,
    app,
    debugging,
    emit,
    error_line,
    exit_codes,
    format_for,
    progress_bar,
    stderr,
    write,
)

if TYPE_CHECKING:
    from convcost.cost.roofline import Calibration
    from convcost.results.batch import BatchResult
    from convcost.run.latency import LatencySettings
    from convcost.spec.batch import Batch
    from convcost.spec.compare import CompareSpec


@app.command("batch", short_help="Every comparison in a YAML file, one row each.")
@options.spliced
def batch_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="YAML file of layer configs (`convcost schema` describes it), or a bundled one's name "
            "(`convcost bundled` lists them).",
            show_default=False,
            metavar="FILE",
        ),
    ],
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
    select: Annotated[
        str | None,
        typer.Option("--select", metavar="NAME-GLOB", help="Only the entries whose name matches, e.g. 'block*'."),
    ] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Add each entry's full compare report.")] = False,
    formula_only: options.FormulaOnlyOption = False,
    latency: options.LatencyOption = True,
    timing: options.LayoutTiming = options.LayoutTiming(),
    roofline: options.RooflineOption = False,
) -> None:
    """Evaluate every comparison in a YAML file: a summary row per entry; a failing entry does not stop the rest.

    Exit code 2 if any entry is invalid (the valid ones still run), 1 if any has a shape mismatch or a counter
    disagreement, 130 if interrupted (143 on SIGTERM; what was done is still reported and written).
    """
    from convcost.results.batch import Status
    from convcost.spec.batch import load_batch

    chosen, latency = format_for(output, output_format), options.timed()
    with exit_codes():
        from convcost.spec.bundled import Use, resolve

        plan = load_batch(resolve(str(file), Use.BATCH))
        if select is not None:
            plan = plan.select(select)
        measure = not formula_only  # the formula-only path never imports torch
        # the summary shows whole layers: timing each stage on its own too would double the time
        settings = timing.settings(latency, stages=False)
        result = _run_batch(plan, settings, timing.threads, measure)
        from convcost.report.batch import render_batch

        emit(lambda: render_batch(result, chosen, detail, roofline), output)
    console = stderr()
    for entry in result.entries:
        if entry.status in (Status.INVALID, Status.ERROR):
            for line in entry.problems(result.source):
                error_line(console, line)
        if entry.exception is not None and debugging():
            import traceback

            traceback.print_exception(entry.exception)
    if result.interrupted:
        from convcost.run import interrupts

        done = len(result.entries) - result.count(Status.NOT_RUN)
        console.print(f"convcost: {interrupts.what()} after {done} of {len(result.entries)} entries", markup=False)
        FLAGS.interrupt_reported = True
        raise typer.Exit(interrupts.exit_code())
    # an internal error outranks bad input: it is the tool's fault, not the file's
    for status, code in ((Status.ERROR, EXIT_INTERNAL), (Status.INVALID, EXIT_USAGE), (Status.FAILED, EXIT_FAILED)):
        if result.count(status):
            raise typer.Exit(code)


def _run_batch(plan: Batch, settings: LatencySettings | None, threads: int, measure: bool) -> BatchResult:
    """Evaluate the entries with a progress bar on an interactive stderr; Ctrl-C keeps what was done."""
    from convcost.results.batch import EntryResult
    from convcost.run.batch import collect, run

    calibration = None
    if measure:  # the formula-only path never imports torch
        # read once per device and dtype before anything runs: a broken cache is the machine's problem, reported
        # once (or, when timing, stopping the run), never an invalid entry against the file's lines
        from convcost.errors import UsageError
        from convcost.run.cache import CalibrationCacheError

        peaks: dict[tuple[str, Any], Calibration | None] = {}
        for key in dict.fromkeys((entry.spec.device, entry.spec.dtype) for entry in plan.entries if entry.spec):
            try:
                peaks[key] = cached_calibration(*key, threads, timing=settings is not None)
            except CalibrationCacheError:
                raise
            except UsageError:  # e.g. --device cuda without CUDA: that entry's own problem, reported on its line
                continue

        def calibration(spec: CompareSpec) -> Calibration | None:
            return peaks.get((spec.device, spec.dtype))

    done: list[EntryResult] = []
    names = [entry.name for entry in plan.entries]
    progress, update = progress_bar(len(names), names[0] if names else "")
    try:
        with progress, options.on_threads(threads, settings, measure):
            for outcome in run(plan, settings, measure=measure, calibration=calibration, threads=threads):
                done.append(outcome)
                update(len(done), names[len(done)] if len(done) < len(names) else "done")
    except KeyboardInterrupt:
        return collect(plan, done, interrupted=True)
    return collect(plan, done)


@app.command("schema", short_help="The JSON Schema of batch files.")
def schema_command(output: options.OutputOption = None) -> None:
    """Print the JSON Schema of batch files, so that editors can validate and complete them."""
    import json

    from convcost.spec.batch import json_schema

    write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", output)
