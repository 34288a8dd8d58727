"""Reading input files (batch, model and budget YAML, baseline and calibration JSON): refused before reading when
they are not regular files or are larger than any real one, and never blocking.

A FIFO given as a file would block ``open()`` until a writer appears, ``/dev/zero`` would be read until memory
runs out and a 58 MB YAML file takes minutes to parse: each is refused with one line instead. The file is
checked with ``os.stat`` before it is opened, opened with ``O_NONBLOCK`` (so a file swapped for a FIFO in between
cannot block either) and checked again on the open descriptor.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convcost.spec import bounds
from convcost.spec.files import reading

# No batch, model, budget, baseline or calibration file comes near this: 200,000 YAML values (the most yamlio
# reads) take about 8 MB written out.
MAX_FILE_BYTES = 16 * 2**20

# JSON nested deeper than this is refused (a baseline is 4 levels deep, a calibration cache 3).
MAX_JSON_DEPTH = 32


class UnreadableFile(Exception):
    """Why an input file cannot be read; ``missing`` for a file that does not exist. The message omits the path."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}
_KINDS.update(dict.fromkeys((stat.S_IFCHR, stat.S_IFBLK), "a device"))


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _check(info: os.stat_result) -> None:
    kind = _kind(info.st_mode)
    if kind is not None:
        raise UnreadableFile(f"is {kind}, not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise UnreadableFile(
            f"is {info.st_size / 2**20:,.1f} MiB, over the {MAX_FILE_BYTES / 2**20:,.0f} MiB limit for input files"
        )


def not_regular(path: Path | str) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a named pipe (FIFO)"), else None."""
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return None


def read_bytes(path: Path | str) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; UnreadableFile otherwise (never blocks). Noted as an
    input first (:func:`convcost.spec.files.reading`): UsageError when the command is to write it."""
    reading(path)
    try:
        _check(os.stat(path))
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UnreadableFile("no such file", missing=True) from None
    except OSError as error:
        raise UnreadableFile(f"cannot be read ({error.strerror or error})") from None
    try:
        _check(os.fstat(descriptor))  # the file opened is the one checked
        chunks = []
        left = MAX_FILE_BYTES + 1  # a file that grows past the limit while being read is refused too
        while left > 0:
            chunk = os.read(descriptor, min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as error:
        raise UnreadableFile(f"cannot be read ({error.strerror or error})") from None
    finally:
        os.close(descriptor)
    if left <= 0:
        raise UnreadableFile(f"is over the {MAX_FILE_BYTES / 2**20:,.0f} MiB limit for input files")
    return b"".join(chunks)


def read_text(path: Path | str) -> str:
    """:func:`read_bytes` decoded as UTF-8; UnreadableFile for text that is not UTF-8."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"not UTF-8 text ({error.reason})") from None


class _NumberOutOfRange(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text.lstrip("-").lstrip("0")) > bounds.MAX_NUMBER_TEXT:  # before int(): see convcost.spec.bounds
        raise _NumberOutOfRange(f"a number has {len(text):,} digits (at most {bounds.MAX_NUMBER_TEXT} are read)")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > bounds.MAX_NUMBER_TEXT:
        raise _NumberOutOfRange(f"a number has {len(text):,} characters (at most {bounds.MAX_NUMBER_TEXT} are read)")
    value = float(text)
    if not math.isfinite(value):
        raise _NumberOutOfRange(f"the number {text} is out of range")
    return value


def _json_constant(text: str) -> float:
    raise _NumberOutOfRange(f"{text} is not a number JSON allows")


def parse_json(text: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """JSON with every number bounded in length and finite, nested at most MAX_JSON_DEPTH deep; ValueError with a
    message ready for users (json's own included). What ``object_pairs_hook`` (json's) raises passes through."""
    depth = _depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant,
                          object_pairs_hook=object_pairs_hook)  # fmt: skip
    except _NumberOutOfRange as error:
        raise ValueError(str(error)) from None
    except RecursionError:  # cannot happen below MAX_JSON_DEPTH; kept so that no limit change lets it through
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None


# A string (an unterminated one runs to the end, so every character is looked at once), and what is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings, in linear time (100,000 brackets take milliseconds, where
    json.loads would end in a RecursionError)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)
