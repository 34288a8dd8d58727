"""The convcost command line: parse flags → call the library → render → map errors to exit codes.

One module per command group (``compare``, ``batch``, ``model``, ``sweep``, ``check``), the options they share
(``options``) and the app with its error lines and exit codes (``root``). Nothing heavy is imported at module
level: ``convcost --help`` never imports torch.
"""

from __future__ import annotations

import sys

import typer

# the command modules register their commands on the app, in the order --help lists them
# isort: off
from convcost.cli import compare, batch, model, sweep, check, suggest  # noqa: F401

# isort: on
from convcost.cli.root import EXIT_OK, EXIT_PIPE_CLOSED, EXIT_USAGE, FLAGS, STAGE_NAMES_FOR_SET, app, internal_error

__all__ = ["STAGE_NAMES_FOR_SET", "app", "main"]


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
    if code == 130 and not FLAGS.interrupt_reported:  # Click answers a KeyboardInterrupt with 130: Ctrl-C or SIGTERM
        from convcost.run import interrupts

        code = interrupts.exit_code()
        sys.stderr.write(f"convcost: {interrupts.what()}\n")
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _run() -> int | None:
    """The app, with Click's usage errors as one ``convcost: error:`` line and exit code 2."""
    # the exceptions of the Click that Typer runs on: Typer ≥ 0.29 vendors its own
    from typer._click.exceptions import ClickException, UsageError
    from typer.exceptions import Abort

    from convcost.report.literal import visible

    try:
        code = app(standalone_mode=False, prog_name="convcost")
    except ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
            sys.exit(EXIT_USAGE)
        message = " ".join(error.format_message().split())  # one line, as Click wraps
        if isinstance(error, UsageError):
            command = getattr(getattr(error, "ctx", None), "command_path", "convcost") or "convcost"
            where = f"{command.removeprefix('convcost').strip()}: " if command != "convcost" else ""
            message = where + message.replace("Value error, ", "")
        sys.stderr.write(visible(f"convcost: error: {message}") + "\n")
        return int(getattr(error, "exit_code", EXIT_USAGE))
    except (Abort, KeyboardInterrupt):
        return 130
    except SystemExit:
        # Typer turns a closed stdout (while printing --help or --version) into exit 1 after wrapping the streams
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            return EXIT_PIPE_CLOSED
        raise
    return code if isinstance(code, int) else EXIT_OK
