"""Writing report files: atomically where that is possible, so a reader sees the old file or the new one.

Never over an input: every file convcost reads is noted with :func:`reading` and every file a command will
write with :func:`will_write`; whichever comes second refuses the pair (UsageError) when both are one file, by
its real path (a symlink) or its device and inode (a hardlink). Both happen before anything is measured. The
calibration cache counts as read by every command, whether or not it gets to read it: no report replaces it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path

from convcost.errors import UsageError

Identity = tuple[object, ...]
_inputs: dict[Identity, str] = {}  # every file read so far, as it was named
_outputs: dict[Identity, tuple[str, str]] = {}  # every file to be written: (as named, the flag that named it)


def _identities(path: Path | str) -> list[Identity]:
    """What makes two names one file: the real path, and the device and inode of an existing regular file."""
    if str(path) in ("", "-"):
        return []
    real = os.path.realpath(path)
    try:
        status = os.stat(real)
    except OSError:
        return [("path", real)]
    if not stat.S_ISREG(status.st_mode):
        return []  # a device or pipe (/dev/stdout) is written through, never replaced
    return [("path", real), ("inode", status.st_dev, status.st_ino)]


def cache_dir() -> Path:
    """The user's cache directory for convcost (created on first write, not here)."""
    override = os.environ.get("CONVCOST_CACHE_DIR")
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "convcost"
    if sys.platform.startswith("win"):
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / "convcost" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "convcost"


def cache_path() -> Path:
    """The calibration cache file (:mod:`convcost.run.cache` reads and writes it)."""
    return cache_dir() / "calibration.json"


def forget_files() -> None:
    """Start a new command: no file to be written yet, and nothing read but the calibration cache."""
    _inputs.clear()
    _outputs.clear()
    with contextlib.suppress(RuntimeError):  # no home directory: no cache to write over (the commands that need one
        reading(cache_path())  # say so when they read it)


def will_write(path: Path | str, flag: str) -> None:
    """Note a file the command will write; UsageError when it is a file already read."""
    for identity in _identities(path):
        if identity in _inputs:
            raise UsageError(_overwrite(flag, str(path), _inputs[identity]))
        if identity in _outputs and _outputs[identity][1] != flag:
            other, other_flag = _outputs[identity]
            raise UsageError(f"{flag}: {path} is the file {other_flag} writes ({other}): one would replace the other")
    _outputs.update(dict.fromkeys(_identities(path), (str(path), flag)))


def reading(path: Path | str) -> None:
    """Note a file the command reads; UsageError when it is a file the command is to write."""
    identities = _identities(path)
    for identity in identities:
        if identity in _outputs:
            output, flag = _outputs[identity]
            raise UsageError(_overwrite(flag, output, str(path)))
    for identity in identities:
        _inputs.setdefault(identity, str(path))


def _overwrite(flag: str, output: str, source: str) -> str:
    same = "" if os.path.abspath(output) == os.path.abspath(source) else f" (the same file as {source})"
    return f"{flag}: {output} is an input{same}: refusing to write over it"


def claim(path: Path, flag: str) -> None:
    """Refuse a file ``flag`` cannot write (:func:`check_writable`, :func:`will_write`), before anything runs."""
    if problem := check_writable(path):
        raise UsageError(f"{flag}: {problem}")
    will_write(path, flag)


def check_writable(path: Path) -> str | None:
    """Why ``path`` cannot take a report, or None: checked before any measurement, so no work is lost."""
    if str(path) == "-":
        return None
    if not str(path):
        return "the file name is empty"
    target = path.resolve()
    if target.is_dir():
        return f"{path} is a directory"
    directory = target.parent
    if not directory.is_dir():
        return f"{directory} does not exist"
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        return None  # a device or pipe is written through (see write_atomic); opening it here could block
    if target.exists() and not os.access(target, os.W_OK):
        return f"{path} is not writable"
    # the report replaces the file by a rename from a temporary file beside it: try creating one (os.access says
    # yes to root everywhere, even in /proc)
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as error:
        return f"cannot create files in {directory} ({error.strerror or error})"
    os.close(handle)
    os.unlink(probe)
    return None


def write_all(handle: int, data: bytes) -> None:
    """Every byte of ``data`` to the file descriptor ``handle``: Python's buffered writers take a short write (a pipe
    whose reader closed partway) as done and lose the rest silently; here the next write raises BrokenPipeError."""
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view) :]


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (a report, or the bytes of a saved model) to ``path``: via a temporary file and a rename for a
    regular file (or a new one), so a failed write never leaves half a file. A symlink is followed, not replaced; a
    device or pipe (``/dev/stdout``, a FIFO) is written directly, since renaming over it would replace the device
    node rather than write to it."""
    target = path.resolve()
    data = text.encode() if isinstance(text, str) else text
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        with open(target, "wb", buffering=0) as stream:
            write_all(stream.fileno(), data)
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb", buffering=0) as stream:
            write_all(stream.fileno(), data)
            os.fsync(stream.fileno())
        # mkstemp creates 0600; give the report the permissions any new file of the user's would get
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
