"""benchmarks/bench.py --json: written where it is told, checked before the benchmark runs."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_path_is_relative_to_where_bench_was_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the children run in the repository root (cwd=ROOT): the path is fixed before they start
    assert bench().json_target("out.json") == tmp_path / "out.json"
    assert bench().json_target(str(tmp_path / "a.json")) == tmp_path / "a.json"


def test_json_path_refused_up_front(tmp_path: Path) -> None:
    module = bench()
    with pytest.raises(argparse.ArgumentTypeError, match="is a directory"):
        module.json_target(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="not a writable directory"):
        module.json_target(str(tmp_path / "missing" / "out.json"))
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(argparse.ArgumentTypeError):
            module.json_target(str(locked / "out.json"))
