"""Writing report files: atomically where that is possible, so a reader sees the old file or the new one."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def check_writable(path: Path) -> str | None:
    """Why ``path`` cannot take a report, or None: checked before any measurement, so no work is lost."""
    if str(path) == "-":
        return None
    target = path.resolve()
    if target.is_dir():
        return f"{path} is a directory"
    directory = target.parent
    if not directory.is_dir():
        return f"{directory} does not exist"
    if target.exists() and not os.access(target, os.W_OK):
        return f"{path} is not writable"
    if not target.exists() and not os.access(directory, os.W_OK):
        return f"cannot create files in {directory}"
    return None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: via a temporary file and a rename for a regular file (or a new one).

    A symlink is followed, not replaced; a device or pipe (``/dev/stdout``, a FIFO) is written directly, since
    renaming over it would replace the device node rather than write to it.
    """
    target = path.resolve()
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        with open(target, "w", encoding="utf-8") as stream:
            stream.write(text)
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600; give the report the permissions any new file of the user's would get
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
