"""Running the user's code (an import path's module, factory and forward) inside one guard.

* **Any exception ends as an error naming the import path**: ``SystemExit`` (a ``sys.exit(0)`` in a factory would
  otherwise end convcost with exit 0 and no output), ``KeyboardInterrupt`` raised by the code itself (a real
  Ctrl-C or SIGTERM is told apart by :mod:`convcost.interrupts` and still stops the run) and every other
  exception become :class:`UserCodeError`.
* **Its stdout goes to stderr** while it runs, at the Python level and (on a real terminal or pipe) at the file
  descriptor level too, so ``--format json`` on stdout stays valid data and what it printed is still shown.
* **Its directory is on sys.path only while it is imported** (and its factory called), after convcost's own
  dependencies: a ``ptflops.py`` lying in the working directory is never run in place of ptflops.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import NoReturn

from convcost.errors import ConvcostError, UsageError
from convcost.run import interrupts

# Imported before the user's module, so that none of them can be found in the user's working directory.
OWN_DEPENDENCIES = ("torch", "torch.nn", "torch.utils.flop_counter", "ptflops", "ptflops.aten_engine", "yaml",
                    "pydantic")  # fmt: skip


class UserCodeError(UsageError):
    """The user's code (module, factory, forward) raised, exited or was refused."""


def import_module(name: str) -> ModuleType:
    """Import the user's module with the working directory at the front of sys.path for this import only."""
    for dependency in OWN_DEPENDENCIES:
        importlib.import_module(dependency)
    with working_directory_on_path():
        return importlib.import_module(name)


@contextlib.contextmanager
def working_directory_on_path() -> Iterator[None]:
    """The working directory first on sys.path (like ``python -m``), then sys.path exactly as it was."""
    saved = list(sys.path)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        sys.path[:] = saved


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """What is printed to stdout goes to stderr instead (Python's sys.stdout, and fd 1 when it is the real one)."""
    real = sys.stdout is sys.__stdout__ and sys.__stdout__ is not None
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    saved_fd: int | None = None
    if real:
        try:
            saved_fd = os.dup(1)
            os.dup2(2, 1)
        except OSError:
            saved_fd = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


@contextlib.contextmanager
def guard(path: str, doing: str, *, only_if_user_frames: tuple[str, ...] | None = None) -> Iterator[None]:
    """Run user code: its stdout on stderr, and anything it raises a UserCodeError ``{path}: {doing} ...``.

    ``only_if_user_frames``: for a region that runs convcost's own code around the user's (counting, timing),
    an ordinary exception is the user's only when its traceback passes through a file under one of these paths;
    otherwise it is convcost's own and propagates as it is. SystemExit and a KeyboardInterrupt with no signal
    received are always the user's: convcost raises neither.
    """
    mark = interrupts.received()

    def no_exit(status: int) -> NoReturn:  # os._exit(0) would end convcost at once, a gate passed with no output
        raise UserCodeError(f"{path}: {doing}: the model's code called os._exit({status}), which may not end convcost")

    with stdout_to_stderr(), contextlib.chdir(os.getcwd()), contextlib.ExitStack() as restore:  # cwd kept
        restore.callback(setattr, os, "_exit", os._exit)  # not unittest.mock: 20 ms of imports for one attribute
        os._exit = no_exit
        try:
            yield
        except ConvcostError:
            raise
        except KeyboardInterrupt:
            if not interrupts.installed() or interrupts.received() > mark:
                raise  # a real Ctrl-C or SIGTERM
            raise UserCodeError(
                f"{path}: {doing}: the model's code raised KeyboardInterrupt (no Ctrl-C was pressed)"
            ) from None
        except SystemExit as error:
            raise UserCodeError(
                f"{path}: {doing}: the model's code called sys.exit({error.code!r}), which may not end convcost"
            ) from None
        except Exception as error:
            if only_if_user_frames is not None and not _passes_through(error.__traceback__, only_if_user_frames):
                raise
            raise UserCodeError(f"{path}: {doing} failed: {type(error).__name__}: {error}") from None
        except BaseException as error:  # GeneratorExit or the user's own BaseException subclass
            raise UserCodeError(f"{path}: {doing}: the model's code raised {type(error).__name__}: {error}") from None


def _passes_through(traceback: TracebackType | None, roots: tuple[str, ...]) -> bool:
    while traceback is not None:
        filename = str(Path(traceback.tb_frame.f_code.co_filename).resolve())
        if any(filename == root or filename.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
            return True
        traceback = traceback.tb_next
    return False


def source_roots(module: ModuleType) -> tuple[str, ...]:
    """Where the code of the user's module lives: its top-level package's folder, or its own file."""
    top = sys.modules.get(module.__name__.partition(".")[0], module)
    paths = list(getattr(top, "__path__", []) or [])
    if paths:
        return tuple(str(Path(path).resolve()) for path in paths)
    file = getattr(top, "__file__", None)
    return (str(Path(file).resolve()),) if file else ()
