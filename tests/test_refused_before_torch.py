"""Every bad flag combination is refused before torch is imported: it answers in the time ``--help`` takes.

Each case runs the CLI in a fresh interpreter (torch must not be in ``sys.modules`` already) and checks the exit
code, the exact one-line message and that torch was never imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app

ROOT = Path(__file__).resolve().parent.parent
MODEL = "configs/mobilenet_v2.yaml"
IMPORTED = "tests.models_for_tests:functional"

# the CLI's main in-process, with 1 GiB of memory available (so the memory guard's message is the same anywhere)
SCRIPT = """
import sys
import convcost.spec.bounds
convcost.spec.bounds.available_memory = lambda: 2**30
from convcost.cli import main
sys.argv = ["convcost", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    print("exit", stop.code)
print("torch imported:", "torch" in sys.modules)
"""

CASES = [
    ([MODEL, "--depth", "2"], "--depth: is for import paths; a model file gives its own layers"),
    (
        [MODEL, "--meta", "--latency"],
        "--meta: counts without running anything; --latency times a real run: drop one of them",
    ),
    ([MODEL, "--meta", "--device", "cuda"], "--meta: counts on the meta device, not on cuda: drop --device"),
    (
        [IMPORTED, "--input", "3x16x16", "--meta", "--latency"],
        "--meta: counts without running anything; --latency times a real run: drop one of them",
    ),
    (
        [IMPORTED, "--input", "3x16x16", "--size", "8"],
        "--size: is for model files; give an import path's input with --input",
    ),
    (
        [IMPORTED, "--input", "3x16x16", "--width-multiplier", "0.5"],
        "--width-multiplier: is for model files; give an import path's input with --input",
    ),
    ([IMPORTED, "--input", "3x16x16", "--batch", "0"], "--batch: must be a positive integer, got 0"),
    ([IMPORTED, "--input", "3x16x16", "--arg", "bad"], "--arg: expected NAME=VALUE with NAME a Python name, got 'bad'"),
    ([IMPORTED, "--inputs", "/missing"], "/missing: no such file"),
    ([IMPORTED], "--input: required for an import path: the input CxHxW, e.g. 3x224x224"),
]
MODEL_CASES = [(["model", *args], message) for args, message in CASES]
SUGGEST_CASES = [
    (["suggest", MODEL, "--input", "3x8x8"], "--input: is for import paths; a model file gives its own input"),
    (["suggest", MODEL, "--input", "3x8x8:int64"], "--input: is for import paths; a model file gives its own input"),
    (["suggest", IMPORTED, "--input", "3x8x8:int64"], "--input: runs in float32: drop :int64"),
    (
        ["suggest", IMPORTED, "--input", "3x8x8", "--batch", "0", "--latency"],
        "--batch: must be a positive integer, got 0",
    ),
    (
        ["convert", IMPORTED, "--input", "3x8", "--input", "3x8", "-o", "out.pt2"],
        "--input: one input here (the convs replaced see one image); convcost model counts a model with more",
    ),
]
# dense and depthwise, 3×3 padding 1, on 16×8×1024×1024 float32: each has input and output 16·8·1024·1024·4 B =
# 512 MiB, so 2 GiB in all (plus 8·8·9·4 + 8·9·4 B of weights and 2·8·4 B of bias), over half of 1 GiB; at batch
# 1 it is 2 GiB / 16 = 128 MiB, under 512 MiB: the batch is what makes it too large
MEMORY = (["compare", "--cin", "8", "--cout", "8", "-k", "3", "--padding", "1", "--size", "1024", "--batch", "16",
           "--vs", "depthwise"],
          "--batch: these layers need at least 2.0 GiB of tensors, more than half of the 1.0 GiB available: "
          "use a smaller batch")  # fmt: skip


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CONVCOST_CACHE_DIR": str(cwd / "cache"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=120)  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [*MODEL_CASES, *SUGGEST_CASES, MEMORY], ids=lambda value: str(value))
def test_bad_flags_are_refused_before_torch_is_imported(args: list[str], message: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    result = cli(args, tmp_path)
    assert result.stderr == f"convcost: error: {message}\n"
    assert result.stdout == "exit 2\ntorch imported: False\n"


def test_convert_refuses_writing_over_its_model_file_before_torch(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    before = (tmp_path / MODEL).read_bytes()
    result = cli(["convert", MODEL, "-o", MODEL], tmp_path)
    assert result.stderr == f"convcost: error: -o/--output: {MODEL} is an input: refusing to write over it\n"
    assert result.stdout == "exit 2\ntorch imported: False\n"
    assert (tmp_path / MODEL).read_bytes() == before


def test_a_missing_gpu_still_outranks_the_memory_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # --device cuda is checked by torch first (is there a GPU?), as before the guard moved ahead of torch
    import torch

    import convcost.spec.bounds

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 2**30)
    result = CliRunner().invoke(app, [*MEMORY[0], "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("convcost: error: --device cuda: CUDA is not available on this machine")
