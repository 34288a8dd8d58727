"""The bad-input suite, part A: wrong verdicts, user code, lost files (issue 8).

Each class: the exit code, the exact error line, no traceback, the input file unchanged, the partial output valid.
Numeric bounds, recursion, huge files and hangs are in test_hostile_bounds.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.roofline import Calibration
from convcost.run import calibrate

runner = CliRunner()
CONVCOST = Path(sys.executable).parent / "convcost"  # the console script: sys.path[0] is not the working directory

# dense 3→8 3×3 on 8×8 without bias: params 8·3·9 = 216; MACs 8·64·27 = 13,824
MODEL = "input: {channels: 3, size: 8}\nlayers:\n  - {name: stem, kind: dense, cout: 8, kernel: 3, bias: false}\n"
# two entries: dense 8→8 3×3 on 8×8 (separable: 8·9 + 8·8 = 136 params) and dense 8→16 (8·9 + 16·8 = 200)
BATCH = "defaults: {kernel: 3, size: 8, bias: false}\nlayers:\n  - {cin: 8, cout: 8}\n  - {cin: 8, cout: 16}\n"


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(arg) for arg in args])


def one_error(result: Any) -> str:
    """The single stderr line of a refused run, with the promise that no traceback came with it."""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def user_module(folder: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """A model module in ``folder`` (the working directory), under a name no other test has imported."""
    name = f"hostile_{folder.name.replace('-', '_')}"
    write(folder, f"{name}.py", textwrap.dedent(source))
    monkeypatch.chdir(folder)
    return name


# ---- names that key results are unique ---------------------------------------------------------------------


def test_a_given_name_equal_to_an_automatic_one_is_refused_naming_both_lines(tmp_path: Path) -> None:
    text = BATCH + '  - {name: "layers[0]", cin: 8, cout: 32}\n'
    path = write(tmp_path, "b.yaml", text)
    report = tmp_path / "r.json"
    result = invoke("batch", path, "--formula-only", "-o", report)
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: {path}:5: layers[2].name: duplicate name 'layers[0]': it is also the automatic name of "
        f"layers[0] ({path}:3); names must be unique"
    )
    assert path.read_text(encoding="utf-8") == text
    data = json.loads(report.read_text(encoding="utf-8"))  # the valid entries are still reported
    assert [entry["status"] for entry in data["entries"]] == ["ok", "ok", "invalid"]


def test_a_check_over_a_batch_with_colliding_names_is_refused_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import convcost.run.budget

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured a batch whose names collide")

    monkeypatch.setattr(convcost.run.budget, "measure_check", measured)
    batch = write(tmp_path, "b.yaml", BATCH + '  - {name: "layers[1]", cin: 8, cout: 32}\n')
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {batch: b.yaml, params: {max: 400}}\n")
    # before: the third entry's figures replaced the second's, and the sum 136 + 200 passed max 400
    result = invoke("check", budget)
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: {batch}:5: layers[2].name: duplicate name 'layers[1]': it is also the automatic name of "
        f"layers[1] ({batch}:4); names must be unique"
    )


def test_two_checks_with_one_automatic_name_are_refused_naming_both_lines(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    text = "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n  - {model: tiny.yaml, macs: {max: 1}}\n"
    budget = write(tmp_path, "budget.yaml", text)
    result = invoke("check", budget)
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: {budget}:3: checks[1]: check name 'tiny' (from the file name) is also the name of "
        f"checks[0] ({budget}:2): names must be unique (give each check a 'name')"
    )


def test_a_model_layer_named_like_an_automatic_name_is_refused(tmp_path: Path) -> None:
    text = (
        "input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n"
        "  - {name: dense1, kind: dense, cout: 8, kernel: 3}\n"
    )
    path = write(tmp_path, "m.yaml", text)
    result = invoke("model", path)
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: {path}:4: layers[1].name: layer name 'dense1' is used twice (also layers[0] ({path}:3)): "
        "names must be unique"
    )


def test_a_baseline_with_a_check_given_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1k}}\n")
    # json keeps the last of two keys: the generous second record would hide the first
    base = write(tmp_path, "base.json", '{"version": 1, "checks": {"tiny": {"params": 1}, "tiny": {"params": 1e9}}}')
    result = invoke("check", budget, "--baseline", base)
    assert result.exit_code == 2
    assert one_error(result) == f"convcost: error: {base}: key 'tiny' is given twice (checks are keyed by name)"


def test_a_module_met_again_later_is_still_its_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = user_module(
        tmp_path,
        monkeypatch,
        """
        from torch import nn

        class Again(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False))
                self.b = nn.Sequential(nn.ReLU())

            def forward(self, x):
                return self.a(self.b(self.a(x)))

        def net():
            return Again()
        """,
    )
    result = invoke("model", f"{name}:net", "--input", "4x2x2", "--depth", "1", "-f", "json")
    assert result.exit_code == 0, result.output
    # a (16 params, 4·4·4 = 64 MACs), then b, then a again (no new params, 64 MACs): one row per module, with
    # both of a's calls in a's row (2 · 64 = 128), nothing lost
    layers = json.loads(result.stdout)["layers"]
    assert [(layer["name"], layer["params"], layer["macs"]) for layer in layers] == [("a", 16, 128), ("b", 0, 0)]
    assert [len(layer["ops"]) for layer in layers] == [2, 1]


# ---- user code: one guard, stdout kept off the data -----------------------------------------------------

GUARDED = """
import sys
from torch import nn

class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:  # the traced pass (which counts) passes; the timed forward exits
            sys.exit(0)
        return self.conv(x)

def exits():
    sys.exit(0)

def interrupts():
    raise KeyboardInterrupt

def exits_later():
    return Exits()
"""


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("exits", "calling exits(): the model's code called sys.exit(0), which may not end convcost"),
        ("interrupts", "calling interrupts(): the model's code raised KeyboardInterrupt (no Ctrl-C was pressed)"),
        ("exits_later", "counting or timing the forward pass: the model's code called sys.exit(0), which may not "
                        "end convcost"),
    ],
)  # fmt: skip
def test_user_code_ending_the_process_is_an_error_naming_the_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str, message: str
) -> None:
    name = user_module(tmp_path, monkeypatch, GUARDED)
    result = invoke("model", f"{name}:{factory}", "--input", "3x4x4", "--latency", "--rounds", "1", "-f", "json")
    assert result.exit_code == 2  # before: exit 0 and no output
    assert result.stdout == ""
    assert one_error(result) == f"convcost: error: {name}:{factory}: {message}"


HARD_EXITS = """
import os
from torch import nn

class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        os._exit(0)

def exits():
    os._exit(0)

def exits_in_forward():
    return Exits()
"""


@pytest.mark.parametrize(
    ("factory", "doing"),
    [("exits", "calling exits()"), ("exits_in_forward", "forward pass on input 1×3×4×4")],
)
def test_os_exit_in_user_code_fails_the_gate_instead_of_ending_it_with_0(
    tmp_path: Path, factory: str, doing: str
) -> None:
    # os._exit(0) skips every handler: unguarded, the process ended at once with exit 0 and no output, so a CI
    # gate passed. In a subprocess, so that a regression cannot end this test run with exit 0 too.
    (tmp_path / "hard_exits.py").write_text(HARD_EXITS)
    (tmp_path / "budget.yaml").write_text(f"checks:\n  - {{model: 'hard_exits:{factory}', input: 3x4x4, "
                                          "params: {max: 1}}\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "convcost", "check", "budget.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    said = result.stdout + result.stderr
    assert f"hard_exits:{factory}: {doing}: the model's code called os._exit(0), which may not end convcost" in said
    assert said.count(f"hard_exits:{factory}") == 1  # the check is named by its import path: said once


def test_user_code_that_changes_directory_does_not_move_the_report(tmp_path: Path) -> None:
    # the factory and its forward chdir elsewhere: a relative -o is still written where the user started convcost
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "wanders.py").write_text(
        "import os\nfrom torch import nn\n\nclass Net(nn.Conv2d):\n    def forward(self, x):\n"
        "        os.chdir('/')\n        return super().forward(x)\n\n"
        "def net():\n    os.chdir('elsewhere')\n    return Net(3, 4, 1)\n"
    )
    result = subprocess.run([sys.executable, "-m", "convcost", "model", "wanders:net", "--input", "3x4x4",
                             "--no-latency", "-o", "out.json"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["total"]["params"] == 16  # 4·3 weights + 4 biases
    assert not (tmp_path / "elsewhere" / "out.json").exists() and not Path("/out.json").exists()


def test_a_forward_that_fails_only_when_counted_is_the_models_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = user_module(
        tmp_path,
        monkeypatch,
        """
        from torch import nn

        class Flaky(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
                self.calls = 0

            def forward(self, x):
                self.calls += 1
                if self.calls > 1:  # the traced pass counts; timing runs the model again
                    raise ValueError("only once")
                return self.conv(x)

        def net():
            return Flaky()
        """,
    )
    result = invoke("model", f"{name}:net", "--input", "3x4x4", "--latency", "--rounds", "1")
    assert result.exit_code == 2  # the user's error (its traceback passes through the model's file), not exit 3
    assert one_error(result) == (
        f"convcost: error: {name}:net: counting or timing the forward pass failed: ValueError: only once"
    )


def test_a_module_that_exits_while_imported_fails_the_check_on_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = user_module(tmp_path, monkeypatch, "import sys\nsys.exit(0)\n")
    budget = write(tmp_path, "budget.yaml", f"checks:\n  - {{model: '{name}:net', input: 3x4x4, params: {{max: 1}}}}\n")
    result = invoke("check", budget)
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: {budget}:2: checks[0].model: {name}:net: importing {name}: the model's code called "
        "sys.exit(0), which may not end convcost"
    )


def test_what_user_code_prints_goes_to_stderr_and_json_stays_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = user_module(
        tmp_path,
        monkeypatch,
        """
        from torch import nn
        print("hello from the import")

        class Loud(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)

            def forward(self, x):
                print("hello from forward")
                return self.conv(x)

        def net():
            print("hello from the factory")
            return Loud()
        """,
    )
    result = invoke("model", f"{name}:net", "--input", "3x4x4", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing the model printed is in the data
    assert data["total"]["params"] == 16  # 4·3 weights + 4 biases
    for line in ("hello from the import", "hello from the factory", "hello from forward"):
        assert line in result.stderr.splitlines()


def test_sys_path_is_restored_after_the_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convcost.run.model import load_factory

    name = user_module(tmp_path, monkeypatch, "from torch import nn\n\ndef net():\n    return nn.ReLU()\n")
    before = list(sys.path)
    load_factory(f"{name}:net")
    assert sys.path == before


def run_script(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_ptflops_in_the_working_directory_is_never_run(tmp_path: Path) -> None:
    write(tmp_path, "ptflops.py", "print('HIJACKED')\nraise RuntimeError('hijacked')\n")
    # the model also writes to file descriptor 1 directly, as C code would: that goes to stderr too
    write(tmp_path, "mine.py", "import os\nfrom torch import nn\nos.write(1, b'raw write\\n')\n\n"
                               "def net():\n    return nn.Conv2d(3, 4, 1)\n")  # fmt: skip
    done = run_script(tmp_path, str(CONVCOST), "model", "mine:net", "--input", "3x4x4", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert "HIJACKED" not in done.stdout + done.stderr
    assert "raw write" in done.stderr
    assert json.loads(done.stdout)["total"]["macs"] == 3 * 4 * 16  # cin·cout·H·W


def test_a_real_ctrl_c_during_user_code_is_still_an_interrupt(tmp_path: Path) -> None:
    write(tmp_path, "sigint.py", "import os, signal\n\ndef net():\n    os.kill(os.getpid(), signal.SIGINT)\n")
    done = run_script(tmp_path, str(CONVCOST), "model", "sigint:net", "--input", "3x4x4")
    assert (done.returncode, done.stderr) == (130, "convcost: interrupted\n")


# ---- a gate that compares nothing is an error ---------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "why"),
    [
        (None, "the baseline {base} does not exist yet (write it with --update-baseline)"),
        ({"other": {"params": 1}}, "the baseline {base} has no figures for it (record them with --update-baseline)"),
        ({"tiny": {"params": None, "macs": None, "latency_ms": None}},
         "the baseline {base} has no figures for it (record them with --update-baseline)"),
    ],
)  # fmt: skip
def test_a_check_that_compares_nothing_is_an_error(tmp_path: Path, baseline: object, why: str) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    base = tmp_path / "base.json"
    if baseline is not None:
        base.write_text(json.dumps({"version": 1, "checks": baseline}), encoding="utf-8")
    budget = write(tmp_path, "budget.yaml", "baseline: base.json\nchecks:\n  - {name: tiny, model: tiny.yaml}\n")
    result = invoke("check", budget)
    assert result.exit_code == 2  # before: "ok: 1 check, 0 limits" or a warning, exit 0
    assert one_error(result) == (
        f"convcost: error: {budget}:3: checks[0]: check 'tiny' compares nothing: it gives no limit of its own and "
        + why.format(base=base)
    )


def test_a_baseline_given_on_the_command_line_is_a_comparison(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    base = write(tmp_path, "base.json", json.dumps({"version": 1, "checks": {"tiny": {"params": 200}}}))
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {name: tiny, model: tiny.yaml}\n")
    result = invoke("check", budget, "--baseline", base)
    assert result.exit_code == 1, result.output  # 216 params grew past 200 + 0 %
    assert "params 216 grew past the baseline 200" in result.stdout


# ---- implausible calibrations are a broken cache ------------------------------------------------------

PEAKS = Calibration("m", "t", "cpu", "float32", 1, 1e10, 1e10, 1e-5, 64, 1 << 20, "2026-01-01T00:00:00+00:00", "x")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("peak_flops", 1e-300, "peak_flops 1e-300 FLOP/s is not plausible (a real machine measures 1e+06 to 1e+18)"),
        ("peak_flops", 1e30, "peak_flops 1e+30 FLOP/s is not plausible"),
        ("peak_bandwidth", 10.0, "peak_bandwidth 10 bytes/s is not plausible (a real machine measures 1e+06 to "
                                 "1e+15)"),
        ("call_overhead_s", 1e-15, "call_overhead_s 1e-15 s is not plausible (a real machine measures 1e-08 to 1)"),
        ("grouped_call_overhead_s", 60.0, "grouped_call_overhead_s 60 s is not plausible"),
    ],
)  # fmt: skip
def test_implausible_peaks_are_refused(field: str, value: float, message: str) -> None:
    data = PEAKS.to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        Calibration.from_dict(data)


def broken_cache() -> str:
    """A cached entry for this machine whose peak is 1e-300 FLOP/s; returns the cache file's path."""
    calibrate.store(replace(PEAKS, machine=calibrate.machine_name("cpu"), torch=torch.__version__))
    path = calibrate.cache_path()
    data = json.loads(path.read_text(encoding="utf-8"))
    for entry in data["entries"].values():
        entry["peak_flops"] = 1e-300
    path.write_text(json.dumps(data), encoding="utf-8")
    key = calibrate.key_for("cpu", calibrate.DType.FLOAT32, 1)
    return (
        f"the calibration cache {path} is broken: entry {key!r}: peak_flops 1e-300 FLOP/s is not plausible (a real "
        "machine measures 1e+06 to 1e+18): run convcost calibrate --refresh"
    )


def test_an_implausible_cache_stops_a_timed_batch_once_not_per_entry(tmp_path: Path) -> None:
    message = broken_cache()
    path = write(tmp_path, "b.yaml", BATCH)
    result = invoke("batch", path, "--min-time", "0.001", "--rounds", "1")
    assert result.exit_code == 2
    assert one_error(result) == f"convcost: error: {message}"  # the machine's problem: no entry, no YAML line


def test_a_broken_cache_does_not_stop_a_run_that_times_nothing(tmp_path: Path) -> None:
    message = broken_cache()
    path = write(tmp_path, "b.yaml", BATCH)
    result = invoke("batch", path, "--no-latency", "-f", "json")
    assert result.exit_code == 0, result.output
    assert one_error(result) == f"convcost: warning: {message} (no roofline bounds: nothing is timed)"
    assert [entry["status"] for entry in json.loads(result.stdout)["entries"]] == ["ok", "ok"]


# ---- no file is written over an input -----------------------------------------------------------------


def alias(target: Path, how: str) -> Path:
    """``target`` itself, or a symlink or hardlink to it."""
    if how == "same":
        return target
    other = target.with_name(f"{how}-{target.stem}.json")
    if how == "symlink":
        other.symlink_to(target.name)
    else:
        os.link(target, other)
    return other


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("command", ["batch", "model", "check budget", "check model", "check baseline"])
def test_output_over_an_input_is_refused(tmp_path: Path, command: str, how: str) -> None:
    # inputs named .json, so that -o infers a format and the refusal, not the extension, is what is tested
    batch = write(tmp_path, "b.json", json.dumps({"layers": [{"cin": 4, "cout": 4, "kernel": 3, "size": 4}]}))
    model = write(tmp_path, "m.json", json.dumps({"input": {"channels": 3, "size": 8},
                                                  "layers": [{"kind": "dense", "cout": 8, "kernel": 3}]}))  # fmt: skip
    budget = write(tmp_path, "budget.json", json.dumps({"checks": [{"name": "m", "model": "m.json"}]}))
    base = write(tmp_path, "base.json", json.dumps({"version": 1, "checks": {"m": {"params": 224}}}))
    target = {"batch": batch, "model": model, "check budget": budget, "check model": model, "check baseline": base}
    victim = target[command]
    before = victim.read_bytes()
    output = alias(victim, how)
    args = {
        "batch": ["batch", batch, "--formula-only"],
        "model": ["model", model],
        "check budget": ["check", budget, "--baseline", base],
        "check model": ["check", budget, "--baseline", base],
        "check baseline": ["check", budget, "--baseline", base],
    }[command]
    result = invoke(*args, "-o", output)
    assert result.exit_code == 2, result.output
    same = "" if how == "same" else f" (the same file as {victim})"
    assert one_error(result) == f"convcost: error: -o/--output: {output} is an input{same}: refusing to write over it"
    assert victim.read_bytes() == before


@pytest.mark.parametrize("victim", ["budget.yaml", "tiny.yaml"])
def test_update_baseline_over_an_input_is_refused(tmp_path: Path, victim: str) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n")
    before = (tmp_path / victim).read_bytes()
    result = invoke("check", budget, "--update-baseline", "--baseline", tmp_path / victim)
    assert result.exit_code == 2
    assert (
        one_error(result) == f"convcost: error: --baseline: {tmp_path / victim} is an input: refusing to write over it"
    )
    assert (tmp_path / victim).read_bytes() == before


def test_an_output_over_the_model_source_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = user_module(tmp_path, monkeypatch, "from torch import nn\n\ndef net():\n    return nn.ReLU()\n")
    source = tmp_path / f"{name}.py"
    before = source.read_bytes()
    result = invoke("model", f"{name}:net", "--input", "3x4x4", "-f", "json", "-o", f"{name}.py")
    assert result.exit_code == 2
    assert one_error(result) == f"convcost: error: -o/--output: {name}.py is an input: refusing to write over it"
    assert source.read_bytes() == before


def test_an_unwritable_step_summary_keeps_the_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 100}}\n")
    summary = tmp_path / "missing" / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke("check", budget, "-f", "github")
    assert result.exit_code == 1  # the limit is exceeded: 216 > 100; before: exit 2 and no annotations
    assert result.stdout.startswith(f"::error file={budget},line=2,")
    assert one_error(result) == (
        f"convcost: warning: GITHUB_STEP_SUMMARY: cannot append the summary to {summary}: No such file or directory"
    )


SIGTERM_AFTER_ONE = """
import os, signal, sys
import convcost.run.comparison
from convcost.cli import main

real, calls = convcost.run.comparison.compare, []

def compare(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the second entry: what CI cancellation sends
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

convcost.run.comparison.compare = compare
sys.argv = ["convcost", *sys.argv[1:]]
main()
"""


def test_sigterm_keeps_the_finished_entries_and_exits_143(tmp_path: Path) -> None:
    path = write(tmp_path, "b.yaml", BATCH + "  - {cin: 8, cout: 32}\n")
    report = tmp_path / "r.json"
    done = run_script(tmp_path, sys.executable, "-c", SIGTERM_AFTER_ONE, "batch", str(path), "--no-latency", "-o",
                      str(report))  # fmt: skip
    assert (done.returncode, done.stderr) == (143, "convcost: terminated (SIGTERM) after 1 of 3 entries\n")
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert [entry["status"] for entry in data["entries"]] == ["ok", "not run", "not run"]


# ---- messages that mislead --------------------------------------------------------------------------


def test_an_empty_output_path_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "b.yaml", BATCH)
    done = run_script(tmp_path, str(CONVCOST), "batch", str(path), "--formula-only", "-o", "")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "convcost: error: batch: Invalid value for '--output' / '-o': the file name is empty\n"


@pytest.mark.skipif(not Path("/proc/version").is_file(), reason="needs Linux's /proc")
def test_an_output_that_cannot_be_created_fails_before_measuring(tmp_path: Path) -> None:
    path = write(tmp_path, "b.yaml", BATCH)
    done = run_script(tmp_path, str(CONVCOST), "batch", str(path), "-o", "/proc/version", "-f", "json")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("convcost: error: batch: Invalid value for '--output' / '-o': ")
    # "/proc/version is not writable", or as root "cannot create files in /proc (...)"; one line, before measuring
    assert "/proc" in done.stderr and done.stderr.count("\n") == 1


def test_a_baseline_that_cannot_be_written_is_named_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import convcost.run.budget

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before the baseline path was checked")

    monkeypatch.setattr(convcost.run.budget, "measure_check", measured)
    write(tmp_path, "tiny.yaml", MODEL)
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n")
    result = invoke("check", budget, "--update-baseline", "--baseline", tmp_path / "nowhere" / "base.json")
    assert result.exit_code == 2
    assert one_error(result) == (
        f"convcost: error: --baseline: cannot write {tmp_path}/nowhere/base.json: {tmp_path}/nowhere does not exist"
    )


@pytest.mark.parametrize(("name", "parse"), [("r.json", json.loads), ("r.xml", None), ("r.txt", None)])
def test_check_infers_the_format_from_the_output_name(tmp_path: Path, name: str, parse: Any) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    budget = write(tmp_path, "budget.yaml", "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n")
    result = invoke("check", budget, "-o", tmp_path / name)
    assert result.exit_code == 0, result.output
    text = (tmp_path / name).read_text(encoding="utf-8")
    if name.endswith(".json"):
        assert json.loads(text)["ok"] is True
    elif name.endswith(".xml"):
        from xml.etree import ElementTree

        assert ElementTree.fromstring(text).get("tests") == "1"
    else:
        assert text == "ok: 1 check, 1 limit: 1 passed, 0 errors, 0 warnings\n"


def test_a_step_summary_naming_an_input_is_not_appended_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "tiny.yaml", MODEL)
    text = "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1k}}\n"
    budget = write(tmp_path, "budget.yaml", text)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(budget))
    result = invoke("check", budget, "-f", "github")
    assert result.exit_code == 0, result.output  # 216 params ≤ 1,000
    assert one_error(result) == (
        f"convcost: warning: GITHUB_STEP_SUMMARY: {budget} is an input: refusing to write over it (no summary written)"
    )
    assert budget.read_text(encoding="utf-8") == text


def test_two_outputs_naming_one_file_are_refused(tmp_path: Path) -> None:
    from convcost.errors import UsageError
    from convcost.spec.files import forget_files, will_write

    forget_files()
    (tmp_path / "r.svg").write_text("an older report", encoding="utf-8")
    os.link(tmp_path / "r.svg", tmp_path / "plot.svg")
    will_write(tmp_path / "r.svg", "-o/--output")
    with pytest.raises(UsageError) as caught:
        will_write(tmp_path / "plot.svg", "--plot")  # a hardlink: the same device and inode
    assert str(caught.value) == (
        f"--plot: {tmp_path / 'plot.svg'} is the file -o/--output writes ({tmp_path / 'r.svg'}): one would replace "
        "the other"
    )
    forget_files()
