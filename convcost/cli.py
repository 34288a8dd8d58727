"""The convcost command line: parse flags → call the library → render → map errors to exit codes.

Exit codes: 0 ok, 1 a check failed (shape mismatch, counter disagreement, budget exceeded), 2 usage or input
error, 3 internal error. Nothing heavy is imported at module level: ``convcost --help`` never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from convcost.cost.roofline import Calibration
    from convcost.errors import SpecError
    from convcost.results.comparison import Comparison
    from convcost.run.batch import Batch, BatchResult
    from convcost.run.latency import LatencySettings
    from convcost.spec.compare import CompareSpec

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="convcost",
    help="What replacing a Conv2d with a depthwise-separable, grouped or spatially separable one saves: "
    "params, MACs and latency, by formula and measured.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (typer's, no torch import)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


def _version(value: bool) -> None:
    if value:
        from convcost.version import __version__

        typer.echo(f"convcost {__version__}")
        raise typer.Exit()


_debug_flag = False  # --debug, set by the root callback on every run


def _debug(value: bool) -> None:
    global _debug_flag
    _debug_flag = value


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", callback=_debug, is_eager=True, help="Show the traceback of an internal error (exit 3)."
        ),
    ] = False,
) -> None:
    """convcost: dense against separable convolutions, analytical against measured."""
    from convcost.run import interrupts

    # for the command's length: SIGTERM stops a run as Ctrl-C does (finished work kept), and a signal is told
    # apart from a KeyboardInterrupt that the user's model code raises itself
    ctx.with_resource(interrupts.handlers())
    from convcost.spec.files import forget_files

    forget_files()  # what an earlier command (in the same process) read or wrote is not this one's input


def _stderr() -> Console:
    from convcost.report.tables import make_console

    return make_console(stderr=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    error_line(_stderr(), message)
    raise typer.Exit(code)


def error_line(console: Console, message: str) -> None:
    """``convcost: error: message`` as one line: the message's user values made visible, newlines included."""
    from convcost.report.literal import visible

    console.print(visible(f"convcost: error: {message}"), soft_wrap=True)


def flag_for(loc: tuple[str | int, ...]) -> str:
    """The command-line flag that sets the field at ``loc``."""
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return "input"
    if len(names) >= 2 and names[0] in STAGE_NAMES_FOR_SET:
        return f"--set {names[0]}.{names[1]}"
    return "--" + names[0].replace("_", "-")


def fail_spec(error: SpecError, set_stages: frozenset[str] = frozenset()) -> NoReturn:
    """Each issue on its own line, named by file:line:field or by the flag that set it (``set_stages``: the stage
    names that came from --set, so an unknown one is named as --set, not as a flag that does not exist)."""
    console = _stderr()
    if error.source:
        for line in error.lines():
            error_line(console, line)
    else:
        for issue in error.issues:
            flag, message = flag_for(issue.loc), issue.message
            if issue.loc and issue.loc[0] in set_stages:
                flag = "--set " + ".".join(str(part) for part in issue.loc)
                if len(issue.loc) == 1 and message == "unknown key":
                    message = "unknown stage (stages: " + ", ".join(STAGE_NAMES_FOR_SET) + ")"
            error_line(console, f"{flag}: {message}")
    raise typer.Exit(EXIT_USAGE)


# kept here (not imported from convcost.spec.compare) so that --help does not import pydantic
STAGE_NAMES_FOR_SET = ("dense", "depthwise", "pointwise", "grouped", "row", "column", "shared")


def _debugging() -> bool:
    return _debug_flag or os.environ.get("CONVCOST_DEBUG", "") not in ("", "0")


def internal_error(error: BaseException) -> NoReturn:
    """Exit 3 with one line; with --debug or CONVCOST_DEBUG=1, the traceback first (never exit 1: that means a
    check failed)."""
    if _debugging():
        import traceback

        traceback.print_exception(error)
    first = str(error).splitlines()[0] if str(error) else ""
    fail(f"internal error: {type(error).__name__}: {first} (convcost --debug ... or CONVCOST_DEBUG=1 for the "
         "traceback)", EXIT_INTERNAL)  # fmt: skip


@contextlib.contextmanager
def _exit_codes(set_stages: frozenset[str] = frozenset()) -> Iterator[None]:
    """Map the library's exceptions to one error line and an exit code: 2 bad input, 3 internal, never a traceback."""
    from convcost.errors import ConvcostError, MeasurementError, SpecError

    try:
        yield
    except SpecError as error:
        fail_spec(error, set_stages)
    except MeasurementError as error:
        fail(str(error), EXIT_INTERNAL)
    except ConvcostError as error:
        fail(str(error))
    except (typer.Exit, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        pipe_closed()
    except Exception as error:  # the promise is "never a traceback"
        internal_error(error)


EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`; never 0, a cut-off report is no pass


def pipe_closed() -> NoReturn:
    """The reader of stdout went away (``convcost batch big.yaml | head``): stop quietly, as other CLIs do.

    Nothing more can reach the reader; stdout is pointed at /dev/null so that Python's final flush of what is
    still buffered does not print "Exception ignored ... BrokenPipeError" on the way out.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    raise typer.Exit(EXIT_PIPE_CLOSED)


def _latency_settings(
    latency: bool, threads: int, rounds: int | None, min_time: float, channels_last: bool, tune_allocator: bool,
    *, stages: bool = True, target: float = 3.0, max_time: float = 2.0,
) -> LatencySettings | None:  # fmt: skip
    """How to time, or None without latency (the forward passes then still run on ``threads``)."""
    if not latency:
        import torch

        torch.set_num_threads(threads)
        return None
    from convcost.run.latency import LatencySettings

    return LatencySettings(threads=threads, rounds=rounds, min_time=min_time, channels_last=channels_last,
                           tune_allocator=tune_allocator, stages=stages, target=target / 100,
                           max_time=max_time)  # fmt: skip


def _emit(render: Callable[[Console], str | None], output: Path | None) -> None:
    """Render tables to stdout, or into the -o file (plain, at the piped width); write text formats as they are.

    One width rule for every command (convcost.report.tables.make_console): $COLUMNS if set, else the terminal's width,
    else 120 columns for a pipe or a file.
    """
    from convcost.report.tables import make_console

    to_file = output is not None and str(output) != "-"
    buffer = io.StringIO()
    console = make_console(file=buffer, plain=True) if to_file else make_console()
    if not to_file:  # Rich's own handling of a closed pipe exits 1; convcost's is pipe_closed() (exit 141)
        setattr(console, "on_broken_pipe", pipe_closed)  # noqa: B010 - a method replaced on this instance only
    text = render(console)
    if text is None and to_file:
        text = buffer.getvalue()
    if text is not None:
        _write(text, output)


def _progress_bar(total: int, first: str) -> tuple[Any, Callable[[int, str], None]]:
    """A transient progress bar on an interactive stderr, else nothing: (context, update(completed, description))."""
    if not sys.stderr.isatty() or total == 0:
        return contextlib.nullcontext(), lambda completed, description: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convcost.report.literal import visible

    # entry names are the user's: never markup (an entry named "[bold" would crash the bar), never raw controls
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=_stderr(), transient=True)  # fmt: skip
    task = progress.add_task(visible(first), total=total)
    return progress, lambda completed, description: progress.update(task, completed=completed,
                                                                     description=visible(description))  # fmt: skip


def _parse_overrides(values: list[str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for value in values:
        target, _, setting = value.partition("=")
        stage, _, field = target.partition(".")
        if not setting or not stage or not field:
            fail(f"--set: expected STAGE.FIELD=VALUE (e.g. pointwise.padding=1), got {value!r}")
        settings = overrides.setdefault(stage.strip(), {})
        if field.strip() in settings:
            fail(f"--set: {stage.strip()}.{field.strip()} is given twice")
        settings[field.strip()] = setting.strip()
    return overrides


def _write(text: str, output: Path | None) -> None:
    if output is None or str(output) == "-":
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            pipe_closed()
        return
    from convcost.spec.files import write_atomic

    try:
        write_atomic(output, text)
    except OSError as error:
        fail(f"-o/--output: cannot write {output}: {error.strerror or error}")


# Options shared by the commands that measure, defined once.
FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format [default: from -o's extension, else table].",
        case_sensitive=False,
        show_default=False,
    ),
]


def _output_path(value: str | Path) -> Path:
    """Refuse an unusable -o before anything is measured (nothing computed may be lost to a typo).

    A parser rather than a Path type: Path('') is '.', and an empty -o must say that it is empty.
    """
    if isinstance(value, Path):
        return value
    if not value:
        raise typer.BadParameter("the file name is empty")
    from convcost.errors import UsageError
    from convcost.spec.files import check_writable, will_write

    problem = check_writable(Path(value))
    if problem:
        raise typer.BadParameter(problem)
    try:
        will_write(value, "-o/--output")
    except UsageError as error:
        raise typer.BadParameter(str(error)) from None
    return Path(value)


OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the report to this file (atomically; - for stdout).",
        parser=_output_path,
        metavar="FILE",
    ),
]
LatencyOption = Annotated[bool, typer.Option("--latency/--no-latency", help="Measure latency (on by default).")]


def _bounded(name: str, what: str) -> Callable[[Any], Any]:
    """A flag's callback that holds its number to the range convcost.spec.bounds gives ``name`` (``threads``: the
    machine's cores), so that ``--threads 100000`` or ``--min-time inf`` is refused before anything runs."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        from convcost.spec import bounds

        bound = bounds.threads_bound() if name == "threads" else getattr(bounds, name.upper())
        try:
            bounds.real(value, bound, what)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        return value

    return check


ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads", metavar="N", callback=_bounded("threads", "a whole number"),
        help="Threads for the forward passes and timing (at most the CPU cores this process may use).",
    ),
]  # fmt: skip
RoundsOption = Annotated[
    int | None,
    typer.Option(
        "--rounds", metavar="N", callback=_bounded("rounds", "a whole number"), show_default=False,
        help="Exactly N interleaved rounds (1 to 1,000), no stopping rule [default: adaptive, see --target and "
        "--max-time].",
    ),
]  # fmt: skip
MinTimeOption = Annotated[
    float,
    typer.Option(
        "--min-time", metavar="SECONDS", callback=_bounded("min_time", "a number of seconds"),
        help="Seconds of timed calls per layer per round (0.001 to 60).",
    ),
]  # fmt: skip
TargetOption = Annotated[
    float,
    typer.Option(
        "--target", metavar="PCT", callback=_bounded("target", "a percentage"),
        help="Stop sampling when every speedup's 95% interval is within ±PCT % (0.1 to 50).",
    ),
]  # fmt: skip
MaxTimeOption = Annotated[
    float,
    typer.Option(
        "--max-time", metavar="SECONDS", callback=_bounded("max_time", "a number of seconds"),
        help="Stop sampling after SECONDS per layer pair even if not converged (0.05 to 600).",
    ),
]  # fmt: skip
FormulaOnlyOption = Annotated[
    bool,
    typer.Option(
        "--formula-only",
        help="By formula alone: build and run nothing (fast, but no forward pass, no counters, no latency).",
    ),
]
ChannelsLastOption = Annotated[
    bool, typer.Option("--channels-last/--no-channels-last", help="Time in channels_last memory format.")
]
TuneAllocatorOption = Annotated[
    bool,
    typer.Option(
        "--tune-allocator/--no-tune-allocator",
        help="Keep large buffers in glibc's heap while timing (mallopt; reported as 'allocator').",
    ),
]
RooflineOption = Annotated[
    bool,
    typer.Option("--roofline", help="Add the full roofline table (bytes, FLOP/byte, bound, verdict per stage)."),
]


@app.command(short_help="Dense Conv2d against its alternatives, checked two ways.")
def compare(
    cin: Annotated[str, typer.Option("--cin", metavar="C", help="Input channels C.", show_default=False)],
    cout: Annotated[str, typer.Option("--cout", metavar="K", help="Output channels K.", show_default=False)],
    kernel: Annotated[
        str, typer.Option("--kernel", "-k", metavar="RxS", help="Kernel R×S: 3 or 3x5.", show_default=False)
    ],
    stride: Annotated[str, typer.Option("--stride", metavar="S", help="Stride: 1 or 2x1.")] = "1",
    padding: Annotated[str, typer.Option("--padding", metavar="P", help="Padding: 0, 1x2 or same.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", metavar="D", help="Dilation: 1 or 2x1.")] = "1",
    groups: Annotated[str, typer.Option("--groups", metavar="G", help="Groups of the 'grouped' alternative.")] = "1",
    multiplier: Annotated[
        str, typer.Option("--multiplier", metavar="M", help="Depth multiplier m of depthwise stages.")
    ] = "1",
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Conv bias on every stage.")] = True,
    mid: Annotated[
        str | None,
        typer.Option("--mid", metavar="M", help="spatial: channels between the R×1 and 1×S convs (default cin)."),
    ] = None,
    norm: Annotated[str, typer.Option("--norm", metavar="NORM", help="After each conv: none or batch.")] = "none",
    act: Annotated[
        str, typer.Option("--act", metavar="ACT", help="After each conv (and norm): none, relu or relu6.")
    ] = "none",
    size: Annotated[str, typer.Option("--size", metavar="HxW", help="Input H=W, or HxW.")] = "128",
    batch: Annotated[str, typer.Option("--batch", metavar="N", help="Batch size.")] = "1",
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, bfloat16 or float16.")] = "float32",
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu or cuda.")] = "cpu",
    vs: Annotated[
        list[str] | None,
        typer.Option(
            "--vs",
            metavar="KIND",
            help="Alternatives: separable, depthwise, pointwise, grouped, spatial, shared, dense "
            "(repeat the flag or separate with commas).",
            show_default="separable",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="STAGE.FIELD=VALUE",
            help="Override one stage's setting: STAGE.FIELD=VALUE, e.g. pointwise.padding=1.",
        ),
    ] = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
    formula_only: FormulaOnlyOption = False,
    latency: LatencyOption = True,
    threads: ThreadsOption = 1,
    rounds: RoundsOption = None,
    min_time: MinTimeOption = 0.004,
    target: TargetOption = 3.0,
    max_time: MaxTimeOption = 2.0,
    channels_last: ChannelsLastOption = False,
    tune_allocator: TuneAllocatorOption = True,
    roofline: RooflineOption = False,
) -> None:
    """Compare a dense Conv2d with its alternatives: shapes, params, MACs and latency, each checked two ways."""
    data: dict[str, Any] = {
        "cin": cin, "cout": cout, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
        "groups": groups, "multiplier": multiplier, "bias": bias, "norm": norm, "act": act, "size": size,
        "batch": batch, "dtype": dtype, "device": device,
    }  # fmt: skip
    if mid is not None:
        data["mid"] = mid
    if vs:
        data["vs"] = [kind.strip() for value in vs for kind in value.split(",") if kind.strip()]
    # a flag typed for a kind that is not compared would be silently unused: say so instead
    kinds_asked = data.get("vs", ["separable"])
    if groups.strip() != "1" and "grouped" not in kinds_asked:
        fail("--groups: only the grouped kind uses groups: add --vs grouped")
    if mid is not None and "spatial" not in kinds_asked:
        fail("--mid: only the spatial kind has a middle width: add --vs spatial")
    stage_settings = _parse_overrides(overrides or [])
    data.update(stage_settings)
    run_compare(data, _format_for(output, output_format), output, latency and not formula_only, threads, rounds,
                min_time, channels_last, tune_allocator=tune_allocator, roofline=roofline,
                formula_only=formula_only, set_stages=frozenset(stage_settings), target=target,
                max_time=max_time)  # fmt: skip


def _cached_calibration(device: str, dtype: Any, threads: int, timing: bool) -> Calibration | None:
    """The cached calibration; a broken cache stops a timed run, but a run that times nothing goes on without it.

    A broken cache is the machine's problem, not the input's: a warning names the cache, never an input line.
    """
    from convcost.run.calibrate import CalibrationCacheError, cached

    try:
        return cached(device, dtype, threads)
    except CalibrationCacheError as error:
        if timing:
            raise
        _stderr().print(f"convcost: warning: {error} (no roofline bounds: nothing is timed)", markup=False,
                        soft_wrap=True)  # fmt: skip
        return None


def _measured_comparison(
    spec: CompareSpec, latency: bool, threads: int, rounds: int | None, min_time: float, channels_last: bool,
    tune_allocator: bool, target: float = 3.0, max_time: float = 2.0,
) -> Comparison:  # fmt: skip
    from convcost.run.comparison import compare

    settings = _latency_settings(latency, threads, rounds, min_time, channels_last, tune_allocator, target=target,
                                 max_time=max_time)  # fmt: skip
    return compare(spec, settings, _cached_calibration(spec.device, spec.dtype, threads, timing=latency))


def run_compare(
    data: dict[str, Any],
    output_format: Format,
    output: Path | None,
    latency: bool,
    threads: int,
    rounds: int | None,
    min_time: float,
    channels_last: bool,
    *,
    tune_allocator: bool = True,
    roofline: bool = False,
    formula_only: bool = False,
    set_stages: frozenset[str] = frozenset(),
    target: float = 3.0,
    max_time: float = 2.0,
) -> None:
    from convcost.spec.compare import parse_compare

    with _exit_codes(set_stages):
        spec = parse_compare(data)
        from convcost.report.comparison import OutputFormat, render

        if formula_only:  # pure Python: torch is never imported
            from convcost.run.estimate import estimate

            comparison = estimate(spec, threads)
        else:
            comparison = _measured_comparison(spec, latency, threads, rounds, min_time, channels_last, tune_allocator,
                                              target, max_time)  # fmt: skip
        _emit(lambda console: render(comparison, OutputFormat(output_format.value), console, roofline), output)
    if not comparison.ok:
        raise typer.Exit(EXIT_FAILED)


# --- convcost batch / convcost schema ---------------------------------------------------------------------

EXIT_INTERRUPTED = 130  # 143 when SIGTERM stopped the run (convcost.run.interrupts.exit_code)
_SUFFIX_FORMATS = {".json": Format.JSON, ".csv": Format.CSV, ".md": Format.MARKDOWN, ".markdown": Format.MARKDOWN,
                   ".txt": Format.TABLE}  # fmt: skip


def _format_for(output: Path | None, chosen: Format | None) -> Format:
    """--format if given, else the format -o's extension names, else the table."""
    if chosen is not None:
        return chosen
    if output is None or str(output) == "-":
        return Format.TABLE
    if output.suffix.lower() in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[output.suffix.lower()]
    fail(f"-o/--output: cannot tell the format from {output.name!r}: name it .json, .csv, .md or .txt, "
         "or give --format")  # fmt: skip


@app.command("batch", short_help="Every comparison in a YAML file, one row each.")
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
    output_format: FormatOption = None,
    output: OutputOption = None,
    select: Annotated[
        str | None,
        typer.Option("--select", metavar="NAME-GLOB", help="Only the entries whose name matches, e.g. 'block*'."),
    ] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Add each entry's full compare report.")] = False,
    formula_only: FormulaOnlyOption = False,
    latency: LatencyOption = True,
    threads: ThreadsOption = 1,
    rounds: RoundsOption = None,
    min_time: MinTimeOption = 0.004,
    target: TargetOption = 3.0,
    max_time: MaxTimeOption = 2.0,
    channels_last: ChannelsLastOption = False,
    tune_allocator: TuneAllocatorOption = True,
) -> None:
    """Evaluate every comparison in a YAML file: a summary row per entry; a failing entry does not stop the rest.

    Exit code 2 if any entry is invalid (the valid ones still run), 1 if any has a shape mismatch or a counter
    disagreement, 130 if interrupted (143 on SIGTERM; what was done is still reported and written).
    """
    from convcost.run.batch import Status, load_batch

    chosen = _format_for(output, output_format)
    with _exit_codes():
        from convcost.spec.bundled import Use, resolve

        plan = load_batch(resolve(str(file), Use.BATCH))
        if select is not None:
            plan = plan.select(select)
        settings = None
        if not formula_only:  # the formula-only path never imports torch
            # the summary shows whole layers: timing each stage on its own too would double the time
            settings = _latency_settings(latency, threads, rounds, min_time, channels_last, tune_allocator,
                                         stages=False, target=target, max_time=max_time)  # fmt: skip
        result = _run_batch(plan, settings, threads, not formula_only)
        from convcost.report.comparison import OutputFormat, render_batch

        _emit(lambda console: render_batch(result, OutputFormat(chosen.value), console, detail), output)
    console = _stderr()
    for entry in result.entries:
        if entry.status in (Status.INVALID, Status.ERROR):
            for line in entry.problems(result.source):
                error_line(console, line)
        if entry.exception is not None and _debugging():
            import traceback

            traceback.print_exception(entry.exception)
    if result.interrupted:
        from convcost.run import interrupts

        done = len(result.entries) - result.count(Status.NOT_RUN)
        console.print(f"convcost: {interrupts.what()} after {done} of {len(result.entries)} entries", markup=False)
        global _interrupt_reported
        _interrupt_reported = True
        raise typer.Exit(interrupts.exit_code())
    if result.count(Status.ERROR):  # an internal error outranks bad input: it is the tool's fault, not the file's
        raise typer.Exit(EXIT_INTERNAL)
    if result.count(Status.INVALID):
        raise typer.Exit(EXIT_USAGE)
    if result.count(Status.FAILED):
        raise typer.Exit(EXIT_FAILED)


def _run_batch(plan: Batch, settings: LatencySettings | None, threads: int, measure: bool) -> BatchResult:
    """Evaluate the entries with a progress bar on an interactive stderr; Ctrl-C keeps what was done."""
    from convcost.run.batch import EntryResult, collect, run

    calibration = None
    if measure:  # the formula-only path never imports torch
        # read once per device and dtype before anything runs: a broken cache is the machine's problem, reported
        # once (or, when timing, stopping the run), never an invalid entry against the file's lines
        from convcost.errors import UsageError
        from convcost.run.calibrate import CalibrationCacheError

        peaks: dict[tuple[str, Any], Calibration | None] = {}
        for key in dict.fromkeys((entry.spec.device, entry.spec.dtype) for entry in plan.entries if entry.spec):
            try:
                peaks[key] = _cached_calibration(*key, threads, timing=settings is not None)
            except CalibrationCacheError:
                raise
            except UsageError:  # e.g. --device cuda without CUDA: that entry's own problem, reported on its line
                continue

        def calibration(spec: CompareSpec) -> Calibration | None:
            return peaks.get((spec.device, spec.dtype))

    done: list[EntryResult] = []
    names = [entry.name for entry in plan.entries]
    progress, update = _progress_bar(len(names), names[0] if names else "")
    try:
        with progress:
            for outcome in run(plan, settings, measure=measure, calibration=calibration):
                done.append(outcome)
                update(len(done), names[len(done)] if len(done) < len(names) else "done")
    except KeyboardInterrupt:
        return collect(plan, done, interrupted=True)
    return collect(plan, done)


@app.command("schema", short_help="The JSON Schema of batch files.")
def schema_command(output: OutputOption = None) -> None:
    """Print the JSON Schema of batch files, so that editors can validate and complete them."""
    import json

    from convcost.run.batch import json_schema

    _write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", output)


# ---- convcost model ----------------------------------------------------------------------------------------


@app.command("model", short_help="Cost of a whole model, layer by layer.")
def model_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A model file (YAML), a bundled model's name (`convcost bundled` lists them), or "
            "package.module:factory returning an nn.Module."
        ),
    ],
    input_shape: Annotated[
        str | None, typer.Option("--input", help="Import paths: the input CxHxW (without the batch).")
    ] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Batch size (default 1).")] = None,
    width_multiplier: Annotated[
        str | None, typer.Option("--width-multiplier", help="Model files: override width_multiplier (α).")
    ] = None,
    size: Annotated[str | None, typer.Option("--size", help="Model files: override the input size H or HxW.")] = None,
    by_kind: Annotated[bool, typer.Option("--by-kind", help="Add the breakdown by layer kind.")] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            callback=_bounded("depth", "a whole number"),
            help="Import paths: one row per module this deep (1 to 100).",
        ),
    ] = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Measure end-to-end and per-layer latency (off by default).")
    ] = False,
    threads: ThreadsOption = 1,
    rounds: RoundsOption = None,
    min_time: MinTimeOption = 0.004,
    target: TargetOption = 3.0,
    max_time: MaxTimeOption = 2.0,
    channels_last: ChannelsLastOption = False,
    tune_allocator: TuneAllocatorOption = True,
    roofline: Annotated[
        bool, typer.Option("--roofline", help="Add the full roofline table per layer (implies --latency).")
    ] = False,
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, bfloat16 or float16.")] = "float32",
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu or cuda.")] = "cpu",
) -> None:
    """Cost of a whole model by layer: params, MACs and other ops, checked against both counters."""
    output_format = _format_for(output, output_format)
    with _exit_codes():
        from convcost.report.comparison import OutputFormat
        from convcost.report.model import render
        from convcost.run.model import evaluate_source, is_import_path
        from convcost.spec.bundled import Use, resolve

        if not is_import_path(source):
            source = str(resolve(source, Use.MODEL))
        settings = _latency_settings(latency or roofline, threads, rounds, min_time, channels_last, tune_allocator,
                                     target=target, max_time=max_time)  # fmt: skip
        result = evaluate_source(
            source, input_shape, batch, width_multiplier, size, depth, settings, threads, dtype, device
        )
        _emit(lambda console: render(result, OutputFormat(output_format.value), console, by_kind, roofline), output)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


# --- convcost calibrate / convcost sweep ---------------------------------------------------------------


@app.command("calibrate", short_help="Measure and cache this machine's peaks.")
def calibrate_command(
    threads: ThreadsOption = 1,
    dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")] = "float32",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even if a calibration is cached.")] = False,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Measure this machine's peaks once (matmul FLOP/s, copy GB/s, per-call cost) and cache them for rooflines.

    The cache is keyed by machine, torch version, device, dtype and threads; compare and sweep use the entry that
    matches their own settings.
    """
    output_format = _format_for(output, output_format)
    with _exit_codes():
        from convcost.spec.compare import run_settings

        chosen_dtype, chosen_device = run_settings(dtype, device)
        from convcost.report.comparison import markdown_table, render_calibration, to_csv, to_json
        from convcost.run.calibrate import cache_path, calibration_for

        calibration, fresh = calibration_for(chosen_device, chosen_dtype, threads, refresh)
        path = str(cache_path())
        row = {**calibration.to_dict(), "key": calibration.key}

        def render(console: Console) -> str | None:
            if output_format is Format.JSON:
                return to_json({**row, "cache": path, "measured_now": fresh})
            if output_format is Format.CSV:
                return to_csv([row], list(row))
            if output_format is Format.MARKDOWN:
                return markdown_table(["Key", "Value"], [[key, str(value)] for key, value in row.items()]) + "\n"
            render_calibration(calibration, path, fresh, console)
            return None

        _emit(render, output)


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
    output_format = _format_for(output, output_format)
    fixed: dict[str, Any] = {
        "stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "multiplier": multiplier,
        "bias": bias, "norm": norm, "act": act, "batch": batch, "dtype": dtype, "device": device,
    }  # fmt: skip
    if vs:
        fixed["vs"] = [kind.strip() for value in vs for kind in value.split(",") if kind.strip()]
    axes = {"cin": cin, "cout": cout, "kernel": kernel, "size": size}
    with _exit_codes():
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
        _emit(lambda console: render_sweep(result, OutputFormat(output_format.value), console), output)
        if plot is not None:
            from convcost.report.plot import plot_sweep

            try:
                plot_sweep(result, plot)
            except OSError as error:
                fail(f"--plot: cannot write {plot}: {error.strerror or error}")
    if result.interrupted:
        from convcost.run import interrupts

        done = len({(point.cin, point.cout, point.kernel, point.size) for point in result.points})
        _stderr().print(f"convcost: {interrupts.what()} after {done} of {result.planned} grid points", markup=False)
        global _interrupt_reported
        _interrupt_reported = True
        raise typer.Exit(interrupts.exit_code())
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _run_sweep(
    specs: list[Any], axes: dict[str, str], fixed: dict[str, Any], latency: bool, threads: int, rounds: int | None,
    min_time: float, channels_last: bool, tune_allocator: bool, target: float = 3.0, max_time: float = 2.0,
) -> Any:  # fmt: skip
    """Run the sweep with a progress bar on an interactive stderr."""
    from convcost.run import sweep

    settings = _latency_settings(latency, threads, rounds, min_time, channels_last, tune_allocator, target=target,
                                 max_time=max_time)  # fmt: skip
    calibration = _cached_calibration(specs[0].device, specs[0].dtype, threads, timing=latency)
    progress, update = _progress_bar(len(specs), "sweep")
    with progress:
        return sweep.run(specs, axes, fixed, settings, calibration,
                         lambda index, total, spec: update(index, sweep.describe(spec)))  # fmt: skip


# ---- convcost check ----------------------------------------------------------------------------------------


class CheckFormat(str, Enum):
    TABLE = "table"
    JSON = "json"
    GITHUB = "github"
    JUNIT = "junit"


_CHECK_SUFFIX_FORMATS = {".json": CheckFormat.JSON, ".xml": CheckFormat.JUNIT, ".txt": CheckFormat.TABLE}


def _check_format_for(output: Path | None, chosen: CheckFormat | None) -> CheckFormat:
    """--format if given, else the format -o's extension names (as every command does), else the table."""
    if chosen is not None:
        return chosen
    if output is None or str(output) == "-":
        return CheckFormat.TABLE
    if output.suffix.lower() in _CHECK_SUFFIX_FORMATS:
        return _CHECK_SUFFIX_FORMATS[output.suffix.lower()]
    fail(f"-o/--output: cannot tell the format from {output.name!r}: name it .json, .xml (JUnit) or .txt, "
         "or give --format")  # fmt: skip


@app.command("check", short_help="CI gate: fail when a model exceeds its budget.")
def check_command(
    budget_file: Annotated[
        Path,
        typer.Argument(help="The budget file (YAML), or a bundled one's name (`convcost bundled`).", dir_okay=False),
    ],
    output_format: Annotated[
        CheckFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format [default: from -o's extension (.json, .xml, .txt), else table].",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Baseline file (default: the budget file's 'baseline').")
    ] = None,
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Write the baseline from this run (limits still apply).")
    ] = False,
    output: OutputOption = None,
    strict_latency: Annotated[
        bool,
        typer.Option(
            "--strict-latency",
            help="An inconclusive latency limit (unconverged or on a busy machine) is an error, not a warning.",
        ),
    ] = False,
) -> None:
    """CI gate: fail when a model exceeds its budget. Exit 0 ok, 1 a limit exceeded, 2 invalid input, 3 internal."""
    chosen = _check_format_for(output, output_format)
    with _exit_codes():
        from convcost.report import budget as budget_report
        from convcost.run import budget as budgets
        from convcost.spec.bundled import Use, resolve

        plan = budgets.load_budget(resolve(str(budget_file), Use.CHECK))
        target = baseline or plan.baseline_path
        if update_baseline and target is None:
            fail("--update-baseline: no baseline file: give --baseline or a 'baseline' key in the budget file")
        if update_baseline and target is not None:
            # refused before anything is measured: a path that cannot be written, or one of the inputs
            from convcost.spec.files import check_writable, will_write

            flag = "--baseline" if baseline is not None else f"{plan.source}: baseline"
            problem = check_writable(target)
            if problem:
                fail(f"{flag}: cannot write {target}: {problem}")
            will_write(target, flag)
        result = budgets.run_checks(plan, baseline, update_baseline, strict_latency=strict_latency)
        renderers = {
            CheckFormat.TABLE: budget_report.to_lines,
            CheckFormat.JSON: budget_report.to_json_text,
            CheckFormat.GITHUB: budget_report.to_github,
            CheckFormat.JUNIT: budget_report.to_junit,
        }
        if update_baseline and target is not None:
            from convcost.spec.files import write_atomic

            try:
                write_atomic(target, budgets.baseline_text(result))
            except OSError as error:
                fail(f"--update-baseline: cannot write {target}: {error.strerror or error}")
            result.baseline_path, result.baseline_written = str(target), True
        text = renderers[chosen](result)
    # the verdict and the annotations first: a step summary that cannot be written changes neither
    _write(text, output)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if chosen is CheckFormat.GITHUB and summary_path:
        from convcost.errors import UsageError
        from convcost.spec.files import will_write

        try:
            will_write(summary_path, "GITHUB_STEP_SUMMARY")  # never appended to the budget or a model file
            # non-blocking: a FIFO nobody reads is refused at once instead of waiting forever
            handle = os.open(summary_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
            with os.fdopen(handle, "a", encoding="utf-8") as stream:
                stream.write(budget_report.to_markdown_summary(result))
        except OSError as error:
            _stderr().print(
                f"convcost: warning: GITHUB_STEP_SUMMARY: cannot append the summary to {summary_path}: "
                f"{error.strerror or error}",
                markup=False,
                soft_wrap=True,
            )
        except UsageError as error:
            _stderr().print(f"convcost: warning: {error} (no summary written)", markup=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


# ---- convcost bundled --------------------------------------------------------------------------------------


@app.command("bundled", short_help="The example files that ship with convcost, by name.")
def bundled_command(
    name: Annotated[
        str | None, typer.Argument(help="Print where this bundled file lies (e.g. to copy it).", show_default=False)
    ] = None,
) -> None:
    """List the example files that ship with convcost and the command that uses each, from any folder."""
    with _exit_codes():
        from convcost.spec import bundled

        if name is not None:
            item = bundled.find(name)
            if item is None:
                names = ", ".join(entry.name for entry in bundled.BUNDLED)
                fail(f"{name}: not a bundled file; bundled: {names}")
            typer.echo(str(bundled.path_of(item)))
            return
        width = max(len(bundled.command_for(item)) for item in bundled.BUNDLED) + 2
        lines = [f"{bundled.command_for(item):<{width}}{item.about}" for item in bundled.BUNDLED]
        typer.echo("\n".join([*lines, f"(files in {bundled.configs_dir()}; a real file path wins over a name)"]))


_interrupt_reported = False  # a command that reported its own interruption sets this


def _click_exceptions() -> tuple[type[Exception], type[Exception], type[BaseException]]:
    """(UsageError, ClickException, Abort) of the Click that Typer runs on: Typer ≥ 0.29 vendors its own."""
    from typer._click.exceptions import ClickException, UsageError
    from typer.exceptions import Abort

    return UsageError, ClickException, Abort


def main() -> None:
    """Console-script entry point: Click's usage errors become one ``convcost: error:`` line with exit code 2."""
    import warnings

    # torch notes that an even kernel with padding='same' costs a padded copy: true, and not the user's concern
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")
    try:
        code = _run()
    except Exception as error:  # outside every command's guard (e.g. while importing a dependency): still exit 3
        try:
            internal_error(error)
        except typer.Exit as stop:
            code = stop.exit_code
    if code == 130 and not _interrupt_reported:  # Click answers a KeyboardInterrupt with 130: Ctrl-C or SIGTERM
        from convcost.run import interrupts

        code = interrupts.exit_code()
        sys.stderr.write(f"convcost: {interrupts.what()}\n")
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _run() -> int | None:
    """The app, with Click's usage errors as one ``convcost: error:`` line and exit code 2."""
    from convcost.report.literal import visible

    usage_error, click_exception, abort = _click_exceptions()
    try:
        code = app(standalone_mode=False, prog_name="convcost")
    except usage_error as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # type: ignore[attr-defined]
            sys.exit(EXIT_USAGE)
        context = getattr(error, "ctx", None)
        command = getattr(context, "command_path", "convcost") or "convcost"
        where = f"{command.removeprefix('convcost').strip()}: " if command != "convcost" else ""
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]  # one line, as Click wraps
        message = message.replace("Value error, ", "")
        sys.stderr.write(visible(f"convcost: error: {where}{message}") + "\n")
        return EXIT_USAGE
    except click_exception as error:
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
        sys.stderr.write(visible(f"convcost: error: {message}") + "\n")
        return int(getattr(error, "exit_code", EXIT_USAGE))
    except (abort, KeyboardInterrupt):
        return 130
    except SystemExit:
        # Typer turns a closed stdout (while printing --help or --version) into exit 1 after wrapping the streams
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            return EXIT_PIPE_CLOSED
        raise
    return code if isinstance(code, int) else EXIT_OK
