"""The options several commands share, each defined once: the same name, metavar, default and help everywhere."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from convcost.report.format import OutputFormat
from convcost.spec import bounds

if TYPE_CHECKING:
    from convcost.run.latency import LatencySettings


# the factory arguments of an import path: model, suggest and convert
ArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        metavar="NAME=VALUE",
        help="Import paths: a keyword argument of the factory, the value a YAML scalar (repeatable).",
    ),
]

FormatOption = Annotated[
    OutputFormat | None,
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
    from convcost.spec.files import claim

    try:
        claim(Path(value), "-o/--output")
    except UsageError as error:  # Click names the flag itself
        raise typer.BadParameter(str(error).removeprefix("-o/--output: ")) from None
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
# the options that only say how to time: given when nothing is timed, each is refused, never ignored
TIMING_ONLY = ("latency", "rounds", "min_time", "target", "max_time", "channels_last", "tune_allocator")


def timed(*implying: str) -> bool:
    """Whether the command times: --latency (or a flag ``implying`` it, unless --no-latency) and not --formula-only.
    When nothing is timed, a timing option given on the command line is refused, naming both flags (exit 2)."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    from convcost.cli.root import fail

    context, source = get_current_context(), ParameterSource.COMMANDLINE
    values, formula_only = context.params, context.params.get("formula_only", False)
    given = [option for option in context.command.params if context.get_parameter_source(option.name or "") == source]
    latency_given = any(option.name == "latency" for option in given)
    if (values["latency"] or (not latency_given and any(values[name] for name in implying))) and not formula_only:
        return True
    why = "with --formula-only" if formula_only else "with --no-latency" if latency_given else "without --latency"
    for option in given:
        if option.name in (*TIMING_ONLY, *implying) and (values[option.name] or option.name != "latency"):
            flag = option.opts[0] if values[option.name] is not False else option.secondary_opts[0]
            fail(f"{flag}: nothing is timed {why}")
    return False


def bounded(name: str) -> Callable[[Any], Any]:
    """A flag's callback that holds its number to the range convcost.spec.bounds gives ``name`` (``threads``: the
    machine's cores), so that ``--threads 100000`` or ``--min-time inf`` is refused before anything runs."""

    def check(value: Any) -> Any:
        if (problem := bounds.problem(name, value)) is not None:
            raise typer.BadParameter(problem)
        return value

    return check


ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads", metavar="N", callback=bounded("threads"),
        help="Threads for the forward passes and timing (at most the CPU cores this process may use).",
    ),
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Timing:
    """The timing options, from --threads to --max-time (see spliced): suggest's, which times in LatencySettings'
    default memory format and allocator."""

    threads: ThreadsOption = 1
    rounds: Annotated[
        int | None,
        typer.Option(
            "--rounds", metavar="N", callback=bounded("rounds"), show_default=False,
            help="Exactly N interleaved rounds (1 to 1,000), no stopping rule [default: adaptive, see --target and "
            "--max-time].",
        ),
    ] = None  # fmt: skip
    min_time: Annotated[
        float,
        typer.Option(
            "--min-time", metavar="SECONDS", callback=bounded("min_time"),
            help="Seconds of timed calls per layer per round (0.001 to 60).",
        ),
    ] = 0.004  # fmt: skip
    target: Annotated[
        float,
        typer.Option(
            "--target", metavar="PCT", callback=bounded("target"),
            help="Stop sampling when every speedup's 95% interval is within ±PCT % (0.1 to 50).",
        ),
    ] = 3.0  # fmt: skip
    max_time: Annotated[
        float,
        typer.Option(
            "--max-time", metavar="SECONDS", callback=bounded("max_time"),
            help="Stop sampling after SECONDS per layer pair even if not converged (0.05 to 600).",
        ),
    ] = 2.0  # fmt: skip

    def settings(self, latency: bool, *, stages: bool = True) -> LatencySettings | None:
        """How to time, or None without latency (the threads are the run context's: see on_threads)."""
        if not latency:
            return None
        from convcost.run.context import LatencySettings

        # the fields are LatencySettings', but the threads are the run context's and the target is a fraction
        return LatencySettings(**{**vars(self), "threads": None, "target": self.target / 100}, stages=stages)


@dataclasses.dataclass(frozen=True)
class LayoutTiming(Timing):
    """The timing options and, after them, the memory format and the allocator: compare, sweep, batch and model."""

    channels_last: Annotated[
        bool, typer.Option("--channels-last/--no-channels-last", help="Time in channels_last memory format.")
    ] = False
    tune_allocator: Annotated[
        bool,
        typer.Option(
            "--tune-allocator/--no-tune-allocator",
            help="Keep large buffers in glibc's heap while timing (mallopt; reported as 'allocator').",
        ),
    ] = True


FormulaOnlyOption = Annotated[
    bool,
    typer.Option(
        "--formula-only",
        help="By formula alone: build and run nothing (fast, but no forward pass, no counters, no latency).",
    ),
]
RooflineOption = Annotated[
    bool,
    typer.Option("--roofline", help="Add the full roofline table (bytes, FLOP/byte, bound, verdict per stage)."),
]


# The layer's options, shared by compare and sweep (where a comma-separated list of cin, cout, kernel or size
# makes an axis of the grid), and the run's dtype and device, shared by every command that builds something.
@dataclasses.dataclass(frozen=True)
class Layer:
    """--cin, --cout and -k (see spliced)."""

    cin: Annotated[str, typer.Option("--cin", metavar="C", help="Input channels C.", show_default=False)]
    cout: Annotated[str, typer.Option("--cout", metavar="K", help="Output channels K.", show_default=False)]
    kernel: Annotated[
        str, typer.Option("--kernel", "-k", metavar="RxS", help="Kernel R×S: 3 or 3x5.", show_default=False)
    ]


@dataclasses.dataclass(frozen=True)
class Stages:
    """From --stride to --bias: every stage's settings (see spliced)."""

    stride: Annotated[str, typer.Option("--stride", metavar="S", help="Stride: 1 or 2x1.")] = "1"
    padding: Annotated[str, typer.Option("--padding", metavar="P", help="Padding: 0, 1x2 or same.")] = "0"
    dilation: Annotated[str, typer.Option("--dilation", metavar="D", help="Dilation: 1 or 2x1.")] = "1"
    groups: Annotated[str, typer.Option("--groups", metavar="G", help="Groups of the 'grouped' alternative.")] = "1"
    multiplier: Annotated[
        str, typer.Option("--multiplier", metavar="M", help="Depth multiplier m of depthwise stages.")
    ] = "1"
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Conv bias on every stage.")] = True


MidOption = Annotated[
    str | None,
    typer.Option("--mid", metavar="M", help="spatial: channels between the R×1 and 1×S convs (default cin)."),
]
NormOption = Annotated[str, typer.Option("--norm", metavar="NORM", help="After each conv: none or batch.")]
ActOption = Annotated[
    str, typer.Option("--act", metavar="ACT", help="After each conv (and norm): none, relu or relu6.")
]
SizeOption = Annotated[str, typer.Option("--size", metavar="HxW", help="Input H=W, or HxW.")]
BatchOption = Annotated[str, typer.Option("--batch", metavar="N", help="Batch size.")]
# model, suggest and convert: a model file has its own batch, which the flag overrides
ModelBatchOption = Annotated[
    str | None, typer.Option("--batch", metavar="N", help="Batch size [default: a model file's own, else 1].")
]
VsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--vs",
        metavar="KIND",
        help="Alternatives: separable, depthwise, pointwise, grouped, spatial, shared, dense "
        "(repeat the flag or separate with commas).",
        show_default="separable",
    ),
]
ConventionOption = Annotated[
    str | None,
    typer.Option(
        "--convention",
        metavar="NAME",
        help="The MAC convention of the figures: convcost (conv and linear weights; the default, or the budget "
        "file's for check) or fvcore (fvcore's and timm's: also batchnorm and adaptive average pools).",
    ),
]
DTypeOption = Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, bfloat16 or float16.")]
DeviceOption = Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu or cuda.")]


def kinds_asked(vs: list[str] | None) -> list[str] | None:
    """``--vs a,b --vs c`` as ['a', 'b', 'c'] (None when not given: the spec's default)."""
    return [kind.strip() for value in vs for kind in value.split(",") if kind.strip()] if vs else None


@contextlib.contextmanager
def on_threads(threads: int, settings: LatencySettings | None, measure: bool = True) -> Iterator[None]:
    """The library's work on ``threads`` (the run context), the process's thread count and allocator restored after;
    by formula alone (not ``measure``) nothing is applied, and torch is never imported."""
    if not measure:
        yield
        return
    from convcost.run.context import RunContext

    with RunContext(threads=threads, latency=settings).applied():
        yield


def spliced(command: Callable[..., None]) -> Callable[..., None]:
    """Typer reads a command's options from its signature: there, each parameter typed as a bundle of options (a
    dataclass: Timing, Layer, ...) becomes the bundle's own parameters, and the command is handed the bundle."""
    signature = inspect.signature(command, eval_str=True)
    bundles: dict[str, Any] = {
        name: p.annotation for name, p in signature.parameters.items() if dataclasses.is_dataclass(p.annotation)
    }
    fields = {name: inspect.signature(bundle, eval_str=True).parameters for name, bundle in bundles.items()}

    @functools.wraps(command)
    def run(**values: Any) -> None:
        for name, bundle in bundles.items():
            values[name] = bundle(**{field: values.pop(field) for field in fields[name]})
        command(**values)

    spread = [fields[name].values() if name in fields else [p] for name, p in signature.parameters.items()]
    run.__signature__ = signature.replace(parameters=[p for group in spread for p in group])  # type: ignore[attr-defined]
    return run
