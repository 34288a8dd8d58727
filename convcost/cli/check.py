"""``convcost check`` (the CI gate of a budget file) and ``convcost bundled`` (the shipped example files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from convcost.cli.options import ConventionOption, FormulaOnlyOption, OutputOption
from convcost.cli.root import EXIT_FAILED, EXIT_USAGE, app, exit_codes, fail, format_from, warn, write
from convcost.report.format import CheckFormat

_CHECK_SUFFIX_FORMATS = {".json": CheckFormat.JSON, ".xml": CheckFormat.JUNIT, ".txt": CheckFormat.TABLE}


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
        Path | None,
        typer.Option("--baseline", metavar="FILE", help="Baseline file (default: the budget file's 'baseline')."),
    ] = None,
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Write the baseline from this run (limits still apply).")
    ] = False,
    output: OutputOption = None,
    strict_latency: Annotated[
        bool,
        typer.Option(
            "--strict-latency",
            help="An inconclusive latency limit (its interval straddles the limit) is an error, not a warning.",
        ),
    ] = False,
    formula_only: FormulaOnlyOption = False,
    convention: ConventionOption = None,
) -> None:
    """CI gate: fail when a model exceeds its budget. Exit 0 ok, 1 a limit exceeded, 2 invalid input, 3 internal."""
    chosen = format_from(output, output_format, _CHECK_SUFFIX_FORMATS, ".json, .xml (JUnit) or .txt")
    with exit_codes():
        from convcost.report import budget as budget_report
        from convcost.run import budget as budgets
        from convcost.run.source import parse_convention
        from convcost.spec.budget import load_budget
        from convcost.spec.bundled import Use, resolve

        chosen_convention = None if convention is None else parse_convention(convention)
        plan = load_budget(resolve(str(budget_file), Use.CHECK))
        target = baseline or plan.baseline_path
        if update_baseline and target is None:
            fail("--update-baseline: no baseline file: give --baseline or a 'baseline' key in the budget file")
        if update_baseline and target is not None:
            # refused before anything is measured: a path that cannot be written, or one of the inputs
            from convcost.spec.files import check_writable, will_write

            flag = "--baseline" if baseline is not None else f"{plan.source}: baseline"
            if problem := check_writable(target):
                fail(f"{flag}: cannot write {target}: {problem}")
            will_write(target, flag)
        result = budgets.run_checks(plan, baseline, update_baseline, strict_latency=strict_latency,
                                    formula_only=formula_only, convention=chosen_convention)  # fmt: skip
        renderers = {
            CheckFormat.TABLE: budget_report.to_lines,
            CheckFormat.JSON: budget_report.to_json_text,
            CheckFormat.GITHUB: budget_report.to_github,
            CheckFormat.JUNIT: budget_report.to_junit,
        }
        if update_baseline and target is not None and not result.not_run:  # a check that did not run has no figures
            from convcost.spec.files import write_atomic

            try:
                write_atomic(target, budgets.baseline_text(result))
            except OSError as error:
                fail(f"--update-baseline: cannot write {target}: {error.strerror or error}")
            result.baseline_path, result.baseline_written = str(target), True
        text = renderers[chosen](result)
    # the verdict and the annotations first: a step summary that cannot be written changes neither
    write(text, output)
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
            warn(f"GITHUB_STEP_SUMMARY: cannot append the summary to {summary_path}: {error.strerror or error}")
        except UsageError as error:
            warn(f"{error} (no summary written)")
    if result.not_run:  # a model whose code raised is bad input, after every other check's verdict
        raise typer.Exit(EXIT_USAGE)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("bundled", short_help="The example files that ship with convcost, by name.")
def bundled_command(
    name: Annotated[
        str | None, typer.Argument(help="Print where this bundled file lies (e.g. to copy it).", show_default=False)
    ] = None,
) -> None:
    """List the example files that ship with convcost and the command that uses each, from any folder."""
    with exit_codes():
        from convcost.spec import bundled

        if name is not None:
            item = bundled.find(name)
            if item is None:
                names = ", ".join(entry.name for entry in bundled.BUNDLED)
                fail(f"{name}: not a bundled file; bundled: {names}")
            write(f"{bundled.path_of(item)}\n", None)
            return
        width = max(len(bundled.command_for(item)) for item in bundled.BUNDLED) + 2
        lines = [f"{bundled.command_for(item):<{width}}{item.about}" for item in bundled.BUNDLED]
        write("\n".join([*lines, f"(files in {bundled.configs_dir()}; a real file path wins over a name)\n"]), None)
