"""The convcost command line: parse flags → call the library → render → map errors to exit codes.

Exit codes: 0 ok, 1 a check failed (shape mismatch, counter disagreement, budget exceeded), 2 usage or input
error, 3 internal error. Nothing heavy is imported at module level: ``convcost --help`` never imports torch.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from convcost.errors import SpecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="convcost",
    help="What replacing a Conv2d with a depthwise-separable, grouped or spatially separable one saves: "
    "params, MACs and latency, by formula and measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


def _version(value: bool) -> None:
    if value:
        from convcost import __version__

        typer.echo(f"convcost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """convcost: dense against separable convolutions, analytical against measured."""


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    _stderr().print(f"convcost: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def flag_for(loc: tuple[str | int, ...]) -> str:
    """The command-line flag that sets the field at ``loc``."""
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return "input"
    if len(names) >= 2 and names[0] in {
        "dense",
        "depthwise",
        "pointwise",
        "grouped",
        "row",
        "column",
        "shared",
    }:
        return f"--set {names[0]}.{names[1]}"
    return "--" + names[0].replace("_", "-")


def fail_spec(error: SpecError) -> NoReturn:
    console = _stderr()
    if error.source:
        for line in error.lines():
            console.print(f"convcost: error: {line}", markup=False, soft_wrap=True)
    else:
        for issue in error.issues:
            console.print(f"convcost: error: {flag_for(issue.loc)}: {issue.message}", markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def internal_error(error: BaseException) -> NoReturn:
    if os.environ.get("CONVCOST_DEBUG"):
        raise error
    fail(
        f"internal error: {type(error).__name__}: {error} (set CONVCOST_DEBUG=1 for a traceback)",
        EXIT_INTERNAL,
    )


def _parse_overrides(values: list[str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for value in values:
        target, _, setting = value.partition("=")
        stage, _, field = target.partition(".")
        if not setting or not stage or not field:
            fail(f"--set: expected STAGE.FIELD=VALUE (e.g. pointwise.padding=1), got {value!r}")
        overrides.setdefault(stage.strip(), {})[field.strip()] = setting.strip()
    return overrides


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from convcost.files import write_atomic

    try:
        write_atomic(output, text)
    except OSError as error:
        fail(f"-o/--output: cannot write {output}: {error.strerror or error}")


# Options shared by the commands that measure, defined once.
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the report to this file (atomically).", dir_okay=False),
]
LatencyOption = Annotated[bool, typer.Option("--latency/--no-latency", help="Measure latency (on by default).")]
ThreadsOption = Annotated[
    int, typer.Option("--threads", metavar="N", min=1, help="Threads for the forward passes and timing.")
]
RoundsOption = Annotated[int, typer.Option("--rounds", metavar="N", min=1, help="Interleaved timing rounds.")]
MinTimeOption = Annotated[
    float, typer.Option("--min-time", metavar="SECONDS", min=0.001, help="Seconds of timed calls per layer per round.")
]
ChannelsLastOption = Annotated[
    bool, typer.Option("--channels-last/--no-channels-last", help="Time in channels_last memory format.")
]


@app.command()
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
    output_format: FormatOption = Format.TABLE,
    output: OutputOption = None,
    latency: LatencyOption = True,
    threads: ThreadsOption = 1,
    rounds: RoundsOption = 5,
    min_time: MinTimeOption = 0.04,
    channels_last: ChannelsLastOption = False,
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
    data.update(_parse_overrides(overrides or []))
    run_compare(data, output_format, output, latency, threads, rounds, min_time, channels_last)


def run_compare(
    data: dict[str, Any],
    output_format: Format,
    output: Path | None,
    latency: bool,
    threads: int,
    rounds: int,
    min_time: float,
    channels_last: bool,
) -> None:
    from convcost.errors import ConvcostError, MeasurementError, SpecError, UsageError
    from convcost.spec import parse_compare

    try:
        spec = parse_compare(data)
    except SpecError as error:
        fail_spec(error)
    try:
        from convcost.comparison import compare as run
        from convcost.latency import LatencySettings
        from convcost.report import OutputFormat, render

        settings = (
            LatencySettings(threads=threads, rounds=rounds, min_time=min_time, channels_last=channels_last)
            if latency
            else None
        )
        if not latency:
            import torch

            torch.set_num_threads(threads)
        comparison = run(spec, settings)
        console = _stdout()
        if output is not None and output_format is Format.TABLE:
            from rich.console import Console

            console = Console(file=__import__("io").StringIO(), width=100, highlight=False, color_system=None)
        text = render(comparison, OutputFormat(output_format.value), console)
        if text is None and output is not None:
            text = console.file.getvalue()  # type: ignore[attr-defined]
        if text is not None:
            _write(text, output)
    except SpecError as error:
        fail_spec(error)
    except UsageError as error:
        fail(str(error))
    except MeasurementError as error:
        fail(str(error), EXIT_INTERNAL)
    except ConvcostError as error:
        fail(str(error))
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as error:  # the promise is "never a traceback"
        internal_error(error)
    if not comparison.ok:
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("convcost: interrupted\n")
        sys.exit(130)
