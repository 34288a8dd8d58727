"""``convcost suggest`` and ``convcost convert``: what factorising each conv of a model would save, and the
converted model itself (dense → separable / spatial / grouped, or separable → dense)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from convcost.cli import options
from convcost.cli.root import app, emit, exit_codes, fail, format_for

SourceArgument = Annotated[
    str,
    typer.Argument(
        help="A model file (YAML), a bundled model's name (`convcost bundled` lists them), or "
        "package.module:factory returning an nn.Module."
    ),
]
RankOption = Annotated[
    str | None,
    typer.Option("--rank", metavar="M", help="--to spatial: the rank, channels between R×1 and 1×S (default full)."),
]
MinSavingOption = Annotated[
    str | None,
    typer.Option("--min-saving", metavar="RATIO", help="Select only layers whose MACs fall at least this much (2x)."),
]


@dataclasses.dataclass(frozen=True)
class Conversion:
    """The options suggest and convert share, from --input to --min-saving (see options.spliced)."""

    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="SHAPE[:DTYPE]",
            help="Import paths: the input CxHxW (without the batch); one float input (convcost model takes more).",
        ),
    ] = None
    arguments: options.ArgOption = None
    batch: options.ModelBatchOption = None
    to: Annotated[
        str,
        typer.Option(
            "--to", metavar="TARGET", help="separable, spatial, grouped:G, or (convert only) dense: merge each "
            "depthwise conv with the 1×1 conv after it.",
        ),
    ] = "separable"  # fmt: skip
    multiplier: Annotated[
        str | None, typer.Option("--multiplier", metavar="M", help="--to separable: the depth multiplier (default 1).")
    ] = None
    rank: RankOption = None
    min_saving: MinSavingOption = None


@app.command("suggest", short_help="What factorising each conv of a model would save.")
@options.spliced
def suggest_command(
    source: SourceArgument,
    asked: Conversion = Conversion(),
    emit_code: Annotated[
        bool, typer.Option("--emit-code", help="Print the stock-PyTorch module of each selected layer.")
    ] = False,
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Time each layer before and after (off by default).")
    ] = False,
    timing: options.Timing = options.Timing(),
    output_format: options.FormatOption = None,
    output: options.OutputOption = None,
) -> None:
    """One row per conv that can be factorised: params and MACs now and after, the saving, and the error of the
    replacement built from the trained weights; sorted by MAC saving, with the model's totals."""
    output_format = format_for(output, output_format)
    with exit_codes():
        from convcost.spec.convert import parse_convert
        from convcost.spec.model import model_source

        spec = parse_convert(asked.to, asked.multiplier, asked.rank, asked.min_saving, allow_dense=False)
        settings = timing.settings(options.timed())
        from convcost.report.suggest import render
        from convcost.run.context import RunContext

        context = RunContext.of("float32", "cpu", timing.threads, settings)
        checked = model_source(source, asked.input_shape, asked.batch, asked.arguments or ())
        from convcost.run.suggest import load_model_and_input, suggest_spec

        with context.applied():
            model, inputs = load_model_and_input(source, checked)
            result = suggest_spec(model, inputs, spec, settings, timing.threads, source)
        emit(lambda: render(result, output_format, emit_code), output)


@app.command("convert", short_help="Convert a model's convs and save the converted model.")
@options.spliced
def convert_command(
    source: SourceArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            show_default=False,
            help="Where to save the converted model (torch.export; load with torch.export.load(FILE).module()).",
        ),
    ],
    asked: Conversion = Conversion(),
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select", metavar="NAME-GLOB", help="Convert only the layers this name or glob matches (repeatable)."
        ),
    ] = None,
    output_format: options.FormatOption = None,
) -> None:
    """Replace the model's convs by stock modules built from the trained weights, save the converted model and
    report each converted layer (params, MACs, weight error) on stdout."""
    from convcost.report.format import OutputFormat

    output_format = output_format or OutputFormat.TABLE
    if not str(output) or output.is_dir():
        fail(f"-o/--output: {str(output)!r} is not a file name")
    with exit_codes():
        from convcost.spec.convert import parse_convert
        from convcost.spec.model import model_source

        spec = parse_convert(asked.to, asked.multiplier, asked.rank, asked.min_saving)
        from convcost.spec.files import claim

        claim(output, "-o/--output")  # before the model is read: its own .py or YAML file is refused as -o
        checked = model_source(source, asked.input_shape, asked.batch, asked.arguments or ())
        from convcost.report.suggest import render
        from convcost.run.suggest import convert_and_save, load_model_and_input

        model, inputs = load_model_and_input(source, checked)
        result = convert_and_save(model, inputs, spec, output, select, source)
        emit(lambda: render(result, output_format), None)
