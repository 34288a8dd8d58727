"""The Typer app and what every command shares: its root callback, error lines, exit codes and output.

Exit codes: 0 ok, 1 a check failed (shape mismatch, counter disagreement, budget exceeded), 2 usage or input
error, 3 internal error. Nothing heavy is imported at module level: ``convcost --help`` never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from convcost.report.format import CheckFormat, OutputFormat

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from convcost.errors import SpecError

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


def _version(value: bool) -> None:
    if value:
        from convcost.version import __version__

        typer.echo(f"convcost {__version__}")
        raise typer.Exit()


# what one run of the app learns on the way: --debug, and whether a command reported its own interruption
FLAGS = types.SimpleNamespace(debug=False, interrupt_reported=False)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error (exit 3).")] = False,
) -> None:
    """convcost: dense against separable convolutions, analytical against measured."""
    FLAGS.debug = debug
    from convcost.run import interrupts

    # for the command's length: SIGTERM stops a run as Ctrl-C does (finished work kept), and a signal is told
    # apart from a KeyboardInterrupt that the user's model code raises itself
    ctx.with_resource(interrupts.handlers())
    from convcost.spec.files import forget_files

    forget_files()  # what an earlier command (in the same process) read or wrote is not this one's input


def stderr() -> Console:
    from convcost.report.tables import make_console

    return make_console(stderr=True)


def warn(message: str) -> None:
    stderr().print(f"convcost: warning: {message}", markup=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    error_line(stderr(), message)
    raise typer.Exit(code)


def error_line(console: Console, message: str) -> None:
    """``convcost: error: message`` as one line: the message's user values made visible, newlines included."""
    from convcost.report.literal import visible

    console.print(visible(f"convcost: error: {message}"), soft_wrap=True)


def fail_spec(error: SpecError, set_stages: frozenset[str] = frozenset()) -> NoReturn:
    """Each issue on its own line, named by file:line:field or by the flag that set it (``set_stages``: the stage
    names that came from --set, so an unknown one is named as --set, not as a flag that does not exist)."""
    console = stderr()
    if error.source:
        for line in error.lines():
            error_line(console, line)
    else:
        for issue in error.issues:
            names = [part for part in issue.loc if isinstance(part, str)]
            message = issue.message
            if issue.loc and issue.loc[0] in set_stages:
                flag = "--set " + ".".join(str(part) for part in issue.loc)
            elif len(names) >= 2 and names[0] in STAGE_NAMES_FOR_SET:
                flag = f"--set {names[0]}.{names[1]}"
            else:
                flag = "--" + names[0].replace("_", "-") if names else "input"
            error_line(console, f"{flag}: {message}")
    raise typer.Exit(EXIT_USAGE)


# kept here (not imported from convcost.spec.compare) so that --help does not import pydantic
STAGE_NAMES_FOR_SET = ("dense", "depthwise", "pointwise", "grouped", "row", "column", "shared")


def debugging() -> bool:
    return FLAGS.debug or os.environ.get("CONVCOST_DEBUG", "") not in ("", "0")


def internal_error(error: BaseException) -> NoReturn:
    """Exit 3 with one line; with --debug or CONVCOST_DEBUG=1, the traceback first (never exit 1: that means a
    check failed)."""
    if debugging():
        import traceback

        traceback.print_exception(error)
    first = str(error).splitlines()[0] if str(error) else ""
    fail(f"internal error: {type(error).__name__}: {first} (convcost --debug ... or CONVCOST_DEBUG=1 for the "
         "traceback)", EXIT_INTERNAL)  # fmt: skip


@contextlib.contextmanager
def exit_codes(set_stages: frozenset[str] = frozenset()) -> Iterator[None]:
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


def emit(render: Callable[[], str | RenderableType], output: Path | None) -> None:
    """Render tables to stdout, or into the -o file (plain, at the piped width); write text formats as they are.

    One width rule for every command (convcost.report.tables.make_console): $COLUMNS if set, else the terminal's width,
    else 120 columns for a pipe or a file.
    """
    from convcost.report.tables import make_console, show

    to_file = output is not None and str(output) != "-"
    console = make_console(file=io.StringIO(), plain=True) if to_file else make_console()
    shown = render()
    if not isinstance(shown, str):
        with console.capture() as captured:  # rendered as the console would print it, written by write()
            show(console, shown)
        shown = captured.get()
    write(shown, output)


def progress_bar(total: int, first: str) -> tuple[Any, Callable[[int, str], None]]:
    """A transient progress bar on an interactive stderr, else nothing: (context, update(completed, description))."""
    if not sys.stderr.isatty() or total == 0:
        return contextlib.nullcontext(), lambda completed, description: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convcost.report.literal import visible

    # entry names are the user's: never markup (an entry named "[bold" would crash the bar), never raw controls
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=stderr(), transient=True)  # fmt: skip
    task = progress.add_task(visible(first), total=total)
    return progress, lambda completed, description: progress.update(task, completed=completed,
                                                                     description=visible(description))  # fmt: skip


def write(text: str, output: Path | None) -> None:
    from convcost.spec.files import write_all, write_atomic

    try:
        if output is not None and str(output) != "-":
            write_atomic(output, text)
        elif (real := sys.__stdout__) is not None and sys.stdout is real:  # not a test's capture: every byte or EPIPE
            real.flush()
            write_all(real.fileno(), text.encode(real.encoding, real.errors or "strict"))
        else:
            sys.stdout.write(text)
    except BrokenPipeError:
        pipe_closed()
    except OSError as error:
        if output is None or str(output) == "-":
            raise  # stdout's own failure (a full disk behind >): an internal error, as it always was
        fail(f"-o/--output: cannot write {output}: {error.strerror or error}")


_SUFFIX_FORMATS = {".json": OutputFormat.JSON, ".csv": OutputFormat.CSV, ".md": OutputFormat.MARKDOWN,
                   ".markdown": OutputFormat.MARKDOWN, ".txt": OutputFormat.TABLE}  # fmt: skip
Format = TypeVar("Format", OutputFormat, CheckFormat)


def format_for(output: Path | None, chosen: OutputFormat | None) -> OutputFormat:
    """--format if given, else the format -o's extension names, else the table."""
    return format_from(output, chosen, _SUFFIX_FORMATS, ".json, .csv, .md or .txt")


def format_from(output: Path | None, chosen: Format | None, suffixes: dict[str, Format], names: str) -> Format:
    """``chosen`` if given, else the format -o's extension names in ``suffixes``, else the table (``.txt``'s)."""
    if chosen is not None:
        return chosen
    if output is None or str(output) == "-":
        return suffixes[".txt"]
    if output.suffix.lower() in suffixes:
        return suffixes[output.suffix.lower()]
    fail(f"-o/--output: cannot tell the format from {output.name!r}: name it {names}, or give --format")
