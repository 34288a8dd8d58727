"""The calibration cache: where it is, its key for this machine, and reading and writing its entries.

One JSON file (see :mod:`convcost.run.calibrate`, which measures what goes into it); looking an entry up needs
no timing, so the pipelines that only read a calibration import this and not the probes.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from convcost.cost.roofline import Calibration, cache_key
from convcost.errors import UsageError
from convcost.spec.compare import DType
from convcost.spec.files import cache_path, write_atomic

CACHE_SCHEMA = 1


class CalibrationCacheError(UsageError):
    """The cache file exists but cannot be read as a calibration cache."""


def machine_name(device: str) -> str:
    """What identifies this machine in the cache: host, CPU model and count (or the GPU's name)."""
    host = platform.node() or "unknown host"
    if device == "cuda":
        return f"{host}: {torch.cuda.get_device_name(0)}"
    return f"{host}: {cpu_model()} × {os.cpu_count() or 1}"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def key_for(device: str, dtype: DType, threads: int) -> str:
    from convcost.run.measure import check_device

    check_device(device)  # naming a GPU needs one
    return cache_key(machine_name(device), torch.__version__, device, str(dtype), threads)


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries by key; {} when there is no file; CalibrationCacheError when it is unreadable."""
    from convcost.spec.input_files import UnreadableFile, parse_json, read_text

    try:
        text = read_text(path)
    except UnreadableFile as error:
        if error.missing:
            return {}
        raise CalibrationCacheError(f"the calibration cache {path}: {error}") from None
    try:
        data = parse_json(text)
        entries = data["entries"]
        if data.get("schema_version") != CACHE_SCHEMA or not isinstance(entries, dict):
            raise ValueError(f"schema_version {data.get('schema_version')!r}")
    except (ValueError, KeyError, TypeError) as error:
        raise CalibrationCacheError(
            f"the calibration cache {path} is not readable ({error}): run convcost calibrate --refresh"
        ) from None
    return entries


def cached(device: str, dtype: DType, threads: int) -> Calibration | None:
    """The cached calibration for this machine, torch, device, dtype and threads, or None."""
    path = cache_path()
    key = key_for(device, dtype, threads)
    entry = _read_cache(path).get(key)
    if entry is None:
        return None
    try:
        return Calibration.from_dict(entry)
    except (KeyError, TypeError, ValueError) as error:
        problem = f" has no {error}" if isinstance(error, KeyError) else f": {error}"
        raise CalibrationCacheError(
            f"the calibration cache {path} is broken: entry {key!r}{problem}: run convcost calibrate --refresh"
        ) from None


def store(calibration: Calibration) -> Path:
    """Add or replace this calibration in the cache file (atomically); returns the file's path."""
    path = cache_path()
    _check_storable(path)
    try:
        entries = _read_cache(path)
    except CalibrationCacheError:
        entries = {}  # a broken cache is replaced, not merged
    entries[calibration.key] = calibration.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"schema_version": CACHE_SCHEMA, "entries": entries}, indent=2) + "\n")
    except OSError as error:
        raise UsageError(f"cannot write the calibration cache {path}: {error.strerror or error}") from None
    return path


def _check_storable(path: Path) -> None:
    """UsageError when the cache path exists but is not a regular file (a FIFO, a device, a directory)."""
    from convcost.spec.input_files import not_regular

    kind = not_regular(path)
    if kind is not None:
        raise UsageError(f"cannot write the calibration cache {path}: it is {kind}, not a regular file")
