"""Ctrl-C and SIGTERM: both stop a run the same way, and a signal is told apart from user code raising.

The CLI installs :func:`handlers` for the length of a command: SIGINT (Ctrl-C) and SIGTERM (what CI cancellation
and ``docker stop`` send) each raise KeyboardInterrupt, so the commands that keep finished work on Ctrl-C keep it
on SIGTERM too, and each signal is counted. A KeyboardInterrupt with no signal counted since user code started
was raised by that code itself (see :mod:`convcost.usercode`). The exit code is 128 + the signal: 130 for
Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []
_installed = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """Count SIGINT and SIGTERM and raise KeyboardInterrupt on each; the previous handlers are restored after."""
    global _installed
    if not _installed:
        _received.clear()  # a new command: signals of an earlier one (in the same process) do not count
    previous: dict[signal.Signals, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread: signals cannot be handled here, KeyboardInterrupt stays as it is
        pass
    was_installed, _installed = _installed, bool(previous) or _installed
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        _installed = was_installed


def installed() -> bool:
    """Whether signals are being counted (else a KeyboardInterrupt cannot be told apart from a Ctrl-C)."""
    return _installed


def received() -> int:
    """How many signals have been received: compare two readings to see if one came in between."""
    return len(_received)


def last() -> int | None:
    return _received[-1] if _received else None


def exit_code() -> int:
    """128 + the signal that stopped the run: 143 for SIGTERM, else 130 (Ctrl-C)."""
    return 128 + signal.SIGTERM if last() == signal.SIGTERM else 128 + signal.SIGINT


def what() -> str:
    """How the run was stopped, in the words of the last message: ``interrupted`` or ``terminated (SIGTERM)``."""
    return "terminated (SIGTERM)" if last() == signal.SIGTERM else "interrupted"
