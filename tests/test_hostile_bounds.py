"""Hostile input, part B: every number bounded, YAML that recurses or nests, files that are not files, pipes that
close, threads past the cores, plans too large to expand, memory guards that name the culprit.

Each case goes through ``convcost.cli.main`` (as users run it) and asserts the exit code and the exact one line on
stderr: no traceback, no "Exception ignored", never advice about ``sys.set_int_max_str_digits``.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from convcost.cli import main
from convcost.errors import SpecError
from convcost.spec import bounds, input_files, yamlio
from convcost.spec.bounds import cores

DIGITS_400 = "1" * 400
DIGITS_5000 = "1" * 5000


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``convcost ARGS`` through main(): (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["convcost", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def one_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, report: bool = False
) -> str:
    """The single error line of a run that must exit 2 with nothing on stdout (``report``: a batch's summary of
    its valid and invalid entries is there)."""
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2, out + err
    assert (out != "") if report else (out == "")
    assert "Traceback" not in err and "set_int_max_str_digits" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


COMPARE = ["compare", "--cin", "8", "--cout", "8", "-k", "3", "--formula-only"]


# ---- 1. numbers are bounded at the boundary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--cin", DIGITS_400], "--cin: must be a positive integer from 1 to 1,000,000, got '11111111111111111111'… "
                                "(400 characters)"),
        (["--cin", DIGITS_5000], "--cin: must be a positive integer from 1 to 1,000,000, got "
                                 "'11111111111111111111'… (5,000 characters)"),
        (["--cout", "1000001"], "--cout: must be a positive integer from 1 to 1,000,000, got 1000001"),
        (["--size", f"3x{DIGITS_5000}"], "--size: must be a positive integer or HxW from 1 to 1,000,000, got "
                                         "'3x111111111111111111'… (5,002 characters)"),
        (["--padding", "2000000"], "--padding: must be a non-negative integer, RxS or 'same' from 0 to 1,000,000, "
                                   "got 2000000"),
        (["--set", f"pointwise.kernel={DIGITS_400}"], "--set pointwise.kernel: must be a positive integer or RxS "
                                                      "from 1 to 1,000,000, got '11111111111111111111'… (400 "
                                                      "characters)"),
        # a flag is not YAML: no YAML 1.1 hint for 1e3
        (["--batch", "1e3"], "--batch: must be a positive integer, got '1e3'"),
    ],
)  # fmt: skip
def test_compare_flags_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    assert one_error(monkeypatch, capsys, *COMPARE, *args) == f"convcost: error: {line}"


TIME_AND_THREAD_FLAGS = [
    (["--threads", "100000"], f"--threads': must be a whole number from 1 to {cores()} (the CPU cores this process "
                              "may use), got 100000"),
    (["--rounds", "1000000"], "--rounds': must be a whole number from 1 to 1,000, got 1000000"),
    (["--min-time", "inf"], "--min-time': must be a number of seconds from 0.001 to 60, got inf"),
    (["--min-time", "nan"], "--min-time': must be a number of seconds from 0.001 to 60, got nan"),
    (["--min-time", "1e400"], "--min-time': must be a number of seconds from 0.001 to 60, got inf"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "args", "line"),
    [
        *((command, args, line) for command in ("compare", "batch", "model", "sweep")
          for args, line in TIME_AND_THREAD_FLAGS),
        ("calibrate", *TIME_AND_THREAD_FLAGS[0]),  # calibrate takes --threads only
    ],
)  # fmt: skip
def test_time_and_thread_flags_are_bounded_on_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str,
    args: list[str], line: str,
) -> None:  # fmt: skip
    given = {
        "compare": COMPARE,
        "batch": ["batch", str(tmp_path / "b.yaml")],
        "model": ["model", str(tmp_path / "m.yaml")],
        "sweep": ["sweep", "--cin", "8", "--cout", "8", "-k", "3"],
        "calibrate": ["calibrate"],
    }[command]
    assert one_error(monkeypatch, capsys, *given, *args) == f"convcost: error: {command}: Invalid value for '{line}"


def test_model_flags_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n")
    assert one_error(monkeypatch, capsys, "model", str(path), "--width-multiplier", "1e308") == (
        "convcost: error: --width-multiplier: must be a positive number above 0 and at most 1,000, got '1e308'"
    )
    assert one_error(monkeypatch, capsys, "model", str(path), "--batch", "1e3") == (
        "convcost: error: --batch: must be a positive integer, got '1e3'"  # a flag: no YAML 1.1 hint
    )
    assert one_error(monkeypatch, capsys, "model", "tests.models_for_tests:scaled", "--input", f"3x{DIGITS_5000}") == (
        "convcost: error: --input: must be CxHxW with each side from 1 to 1,000,000, got '3x111111111111111111'… "
        "(5,002 characters)"
    )
    assert one_error(monkeypatch, capsys, "model", str(path), "--depth", "0") == (
        "convcost: error: model: Invalid value for '--depth': must be a whole number from 1 to 100, got 0"
    )


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (f"{{cin: {DIGITS_400}, cout: 8, kernel: 3}}",
         "layers[0].cin: must be a positive integer from 1 to 1,000,000, got '11111111111111111111'… (400 characters)"),
        (f"{{cin: {DIGITS_5000}, cout: 8, kernel: 3}}",
         "layers[0].cin: must be a positive integer from 1 to 1,000,000, got '11111111111111111111'… "
         "(5,000 characters)"),
        ("{cin: 8, cout: 8, kernel: 3, batch: .inf}",
         "layers[0].batch: must be a positive integer from 1 to 1,000,000, got inf"),
        ("{cin: 8, cout: 8, kernel: 3, size: .nan}",
         "layers[0].size: must be a positive integer or HxW from 1 to 1,000,000, got nan"),
        ("{cin: 8, cout: 8, kernel: 3, size: 1.0e+400}",
         "layers[0].size: must be a positive integer or HxW from 1 to 1,000,000, got inf"),
        ("{cin: 8, cout: 8, kernel: 1.0e+300}",  # an integral float: 301 digits, never printed whole
         "layers[0].kernel: must be a positive integer or RxS from 1 to 1,000,000, got a 301-digit number"),
        ("{cin: 2001-13-45, cout: 8, kernel: 3}",  # a timestamp with month 13: read as its text, not a crash
         "layers[0].cin: must be a positive integer, got '2001-13-45'"),
    ],
)  # fmt: skip
def test_batch_numbers_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, entry: str, line: str
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(f"layers:\n  - {entry}\n")
    before = path.read_bytes()
    line_given = one_error(monkeypatch, capsys, "batch", str(path), "--formula-only", report=True)
    assert line_given == f"convcost: error: {path}:2: {line}"
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("width_multiplier: 1e308\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n",
         "2: width_multiplier: must be a positive number above 0 and at most 1,000, got '1e308'"),
        ("layers:\n  - {kind: dense, cout: 8, kernel: 3, repeat: 1000000000}\n",
         "3: layers[0].repeat: must be a positive integer from 1 to 10,000, got 1000000000"),
        ("layers:\n  - {kind: dense, cout: 8, kernel: 3, repeat: 1e6}\n",
         "3: layers[0].repeat: must be a positive integer, got '1e6' (YAML 1.1 reads 1e6 as a string: write the "
         "number out in full)"),
        # 9,000 + 9,000 = 18,000 planned layers: refused before one copy is made
        ("layers:\n  - {kind: dense, cout: 8, kernel: 3, repeat: 9000}\n"
         "  - {kind: dense, cout: 8, kernel: 3, repeat: 9000}\n",
         "3: layers[0].repeat: the model would have 18,000 layers after repeat, more than the 10,000 allowed"),
        ("layers:\n  - {kind: inverted_residual, cout: 8, expand: 5000}\n",
         "3: layers[0].expand: must be a positive integer from 1 to 1,000, got 5000"),
        # 8,000 × α 1,000 = 8,000,000 channels after scaling
        ("width_multiplier: 1000\nlayers:\n  - {kind: dense, cout: 8000, kernel: 3}\n",
         "4: layers[0].cout: must be a positive integer from 1 to 1,000,000, got 8000000 (after width_multiplier "
         "1000, channel_divisor 1)"),
    ],
)  # fmt: skip
def test_model_file_numbers_and_size_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, line: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 8}\n" + body)
    expected = f"convcost: error: {path}:{line}"
    assert one_error(monkeypatch, capsys, "model", str(path)) == expected


def _model(folder: Path) -> None:
    (folder / "m.yaml").write_text("input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n")


@pytest.mark.parametrize(
    ("budget", "line"),
    [
        # 1e999999999 would be a billion-digit integer if multiplied out: refused from its exponent alone
        ("checks:\n  - {model: m.yaml, params: {max: 1e999999999}}\n",
         "2: checks[0].params.max: must be a number from 0 to 1e+18, got '1e999999999'"),
        (f"checks:\n  - {{model: m.yaml, params: {{max: {DIGITS_5000}}}}}\n",
         "2: checks[0].params.max: must be a number from 0 to 1e+18, got '11111111111111111111'… (5,000 characters)"),
        ("checks:\n  - {model: m.yaml, params: {max: .inf}}\n",
         "2: checks[0].params.max: must be a number from 0 to 1e+18, got inf"),
        ("tolerance: {params: 1e400%}\nchecks:\n  - {model: m.yaml, params: {max: 1M}}\n",
         "1: tolerance.params: must be a percentage from 0 to 10,000, got '1e400'"),
        ("version: 99\nchecks:\n  - {model: m.yaml, params: {max: 1M}}\n",
         "1: version: this convcost reads budget files of version 1, got 99"),
        ("latency: {threads: 100000}\nchecks:\n  - {model: m.yaml, params: {max: 1M}}\n",
         f"1: latency.threads: must be a positive integer from 1 to {cores()} (the CPU cores this process may use), "
         "got 100000"),
        ("latency: {min_time: .inf}\nchecks:\n  - {model: m.yaml, params: {max: 1M}}\n",
         "1: latency.min_time: must be a number of seconds from 0.001 to 60, got inf"),
        ("latency: {rounds: 5000}\nchecks:\n  - {model: m.yaml, params: {max: 1M}}\n",
         "1: latency.rounds: must be a positive integer from 1 to 1,000, got 5000"),
        # the check's size replaces the model file's: reported on the budget's line, not as a --size flag
        ("checks:\n  - name: m\n    model: m.yaml\n    size: 0\n    params: {max: 1M}\n",
         "4: checks[0].size: must be a positive integer or HxW, got 0"),
    ],
)  # fmt: skip
def test_budget_numbers_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, budget: str, line: str
) -> None:
    _model(tmp_path)
    path = tmp_path / "budget.yaml"
    path.write_text(budget)
    assert one_error(monkeypatch, capsys, "check", str(path)) == f"convcost: error: {path}:{line}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": 1, "checks": {"m": {"params": ' + "1" * 401 + "}}}",
         "not a baseline file: a number has 401 digits (at most 40 are read)"),
        ("[" * 100_000 + "]" * 100_000, "not a baseline file: nested more than 32 levels deep"),
        ('{"version": 1, "checks": {"m": {"params": NaN}}}', "not a baseline file: NaN is not a number JSON allows"),
        ('{"version": 1, "checks": {"m": {"params": 1e400}}}', "not a baseline file: the number 1e400 is out of range"),
        ('{"version": 1, "checks": {"m": {"params": 1e30}}}', "checks.m.params: must be a number from 0 to 1e+18 or "
                                                              "null, got 1e+30"),
    ],
)  # fmt: skip
def test_baseline_numbers_and_nesting_are_bounded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    _model(tmp_path)
    (tmp_path / "budget.yaml").write_text("checks:\n  - {name: m, model: m.yaml, params: {max: 1M}}\n")
    baseline = tmp_path / "base.json"
    baseline.write_text(text)
    line = one_error(monkeypatch, capsys, "check", str(tmp_path / "budget.yaml"), "--baseline", str(baseline))
    assert line == f"convcost: error: {baseline}: {message}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"schema_version": 1, "entries": {"k": {"threads": ' + "1" * 401 + "}}}",
         "a number has 401 digits (at most 40 are read)"),
        ("{" + '"a": {' * 100_000 + "}" * 100_001, "nested more than 32 levels deep"),
    ],
)  # fmt: skip
def test_calibration_cache_numbers_and_nesting_are_bounded(text: str, reason: str) -> None:
    from convcost.run.calibrate import CalibrationCacheError, cache_path, cached
    from convcost.spec.compare import DType

    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    with pytest.raises(CalibrationCacheError) as caught:
        cached("cpu", DType.FLOAT32, 1)
    assert str(caught.value) == (
        f"the calibration cache {path} is not readable ({reason}): run convcost calibrate --refresh"
    )


def test_shown_summarises_values_too_long_to_print() -> None:
    # str() of an int over 4,300 digits raises ValueError; shown() works from the bit length instead
    assert bounds.shown(10**5000) == "a 5,001-digit number"
    assert bounds.shown(12) == "12" and bounds.shown("ab") == "'ab'" and bounds.shown(True) == "True"
    assert bounds.shown("x" * 41) == "'xxxxxxxxxxxxxxxxxxxx'… (41 characters)"
    with pytest.raises(ValueError, match=r"^must be a number from 0 to 1,000, got a 401-digit number$"):
        bounds.real(10**400, bounds.Bound(0, 1000, ""), "a number")  # float(10**400) would raise OverflowError


# ---- 2. YAML that recurses or nests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("layers: &x [*x]\n", "1: the alias *x is inside its own anchor &x: a recursive structure cannot be read"),
        ("a: &x\n  b: *x\nlayers: []\n",
         "2: the alias *x is inside its own anchor &x: a recursive structure cannot be read"),
        # 800 levels: below libyaml's own limit of 1,000, past what Python's recursion would survive
        ("layers:\n  - " + "[" * 800 + "]" * 800 + "\n", "2: lists and mappings nested more than 50 levels deep"),
        ("layers:\n  - " + "{a: " * 60 + "1" + "}" * 60 + "\n",
         "2: lists and mappings nested more than 50 levels deep"),
    ],
)  # fmt: skip
def test_recursive_and_deep_yaml_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, line: str
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text)
    for command in ("batch", "model", "check"):
        assert one_error(monkeypatch, capsys, command, str(path)) == f"convcost: error: {path}:{line}"


def test_aliases_nested_past_the_depth_once_expanded() -> None:
    # each anchor holds the one before: 60 levels once expanded, 2 as written
    lines = ["a0: &a0 [1]"] + [f"a{index}: &a{index} [*a{index - 1}]" for index in range(1, 61)]
    with pytest.raises(SpecError) as caught:
        yamlio.loads("\n".join(lines) + "\n", "f.yaml")
    assert caught.value.lines()[0].endswith("lists and mappings nested more than 50 levels deep once aliases are "
                                            "expanded")  # fmt: skip


def test_the_value_cap_is_counted_while_streaming_and_named_as_what_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlio, "MAX_VALUES", 100)
    # 1 mapping + 1 list + 30 entries × (1 mapping + 3 values) = 122 values > 100: the 101st is entry 25's kernel
    text = "layers:\n" + "".join("  - {cin: 8, cout: 8, kernel: 3}\n" for _ in range(30))
    with pytest.raises(SpecError) as caught:
        yamlio.loads(text, "f.yaml")
    assert caught.value.lines() == [
        "f.yaml:26: more than 100 values (about 16 batch entries): convcost reads at most that many from one file"
    ]
    # aliases: 3 lines standing for 1 + 1 + 10 + 10 × 10 values and more: the expansion is what is refused
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b]\n"
    with pytest.raises(SpecError) as caught:
        yamlio.loads(bomb, "f.yaml")
    assert caught.value.lines()[0].endswith(
        "more than 100 values once aliases are expanded: refusing to load (nested aliases can make a short file "
        "enormous)"
    )


# ---- 3. geometry torch refuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "line"),
    [
        # torch: "pad should be at most half of effective kernel size"
        ("{kind: pool, mode: max, kernel: 3, padding: 2}",
         "layers[0].padding: padding 2×2 is more than half the kernel 3×3: a pool pads at most 1×1"),
        ("{kind: pool, mode: avg, kernel: [3, 1], padding: [1, 1]}",
         "layers[0].padding: padding 1×1 is more than half the kernel 3×1: a pool pads at most 1×0"),
        ("{kind: pool, global: true, stride: 2}", "layers[0].stride: a global pool has no stride: it pools the whole "
                                                 "input"),
    ],
)  # fmt: skip
def test_pool_geometry_is_validated_like_conv_geometry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, layer: str, line: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"input: {{channels: 3, size: 8}}\nlayers:\n  - {layer}\n")
    assert one_error(monkeypatch, capsys, "model", str(path)) == f"convcost: error: {path}:3: {line}"


def test_pool_padding_of_half_the_kernel_is_allowed() -> None:
    from convcost.spec.model import plan_document

    # kernel 2, padding 1: (8 + 2·1 − 2) / 2 + 1 = 5
    text = "input: {channels: 3, size: 8}\nlayers:\n  - {kind: pool, mode: max, kernel: 2, padding: 1}\n"
    assert plan_document(yamlio.loads(text, "m.yaml")).output_shape == (1, 3, 5, 5)


# ---- 4. a reader that closes the pipe ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["schema"],
        ["batch", "BATCH", "--formula-only", "-f", "json"],  # a plain report written by _write (model's path too)
        ["compare", "--cin", "8", "--cout", "8", "-k", "3", "--formula-only"],  # Rich printing to stdout
        ["--help"],  # Typer's own printing
    ],
)
def test_a_closed_stdout_stops_quietly_with_141(tmp_path: Path, args: list[str]) -> None:
    batch = tmp_path / "b.yaml"
    batch.write_text(
        "layers:\n" + "".join(f"  - {{name: e{index}, cin: 8, cout: 8, kernel: 3}}\n" for index in range(50))
    )
    args = [str(batch) if arg == "BATCH" else arg for arg in args]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write to stdout fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "convcost", *args], stdout=write, stderr=subprocess.PIPE,
                                text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"


def _batch_of(tmp_path: Path, entries: int) -> Path:
    batch = tmp_path / "b.yaml"
    batch.write_text(
        "layers:\n" + "".join(f"  - {{name: e{index}, cin: 8, cout: 8, kernel: 3}}\n" for index in range(entries))
    )
    return batch


# 1,000 entries by formula: table 111 kB, CSV 127 kB, JSON 1.8 MB, Markdown 96 kB (measured), each over the 64 KiB
# a pipe holds, so the report's one big write() blocks; the reader takes 1 byte and closes, the kernel returns a
# short count (65,536) and the rest can never arrive: convcost must not exit 0, as it did when that count was
# taken as the whole write
@pytest.mark.parametrize("output_format", ["table", "csv", "json", "markdown"])
def test_a_reader_that_closes_partway_is_141_not_0(tmp_path: Path, output_format: str) -> None:
    args = ["batch", str(_batch_of(tmp_path, 1000)), "--formula-only", "-f", output_format]
    read, write = os.pipe()
    with subprocess.Popen([sys.executable, "-m", "convcost", *args], stdout=write, stderr=subprocess.PIPE) as run:
        os.close(write)
        assert os.read(read, 1) != b""  # the report has begun
        os.close(read)
        _, err = run.communicate(timeout=120)
    assert (run.returncode, err) == (141, b"")


def test_an_output_fifo_whose_reader_closes_partway_is_141(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    read = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened first, so neither side blocks in open()
    args = ["batch", str(_batch_of(tmp_path, 1000)), "--formula-only", "-o", str(fifo), "-f", "csv"]
    with subprocess.Popen([sys.executable, "-m", "convcost", *args], stderr=subprocess.PIPE) as run:
        assert select.select([read], [], [], 120)[0] and os.read(read, 1) != b""
        os.close(read)
        _, err = run.communicate(timeout=120)
    assert (run.returncode, err) == (141, b"")  # was 2, "cannot write ...: Broken pipe", after a silent short write


# ---- 6. plans bounded before they are expanded ---------------------------------------------------------------


def test_a_sweep_grid_is_bounded_before_it_is_planned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    axis = ",".join(str(value) for value in range(1, 2001))
    line = one_error(monkeypatch, capsys, "sweep", "--cin", axis, "--cout", axis, "-k", "3", "--no-latency")
    assert line == (
        "convcost: error: --cin: the grid has 2,000 cin × 2,000 cout × 1 kernel × 1 size = 4,000,000 points, "
        "more than the 10,000 a sweep runs"
    )


# ---- 7. files that are not regular files, or too large -------------------------------------------------------


def _inputs(folder: Path, special: Path) -> list[list[str]]:
    """Every command that reads a file, each given ``special`` as that file."""
    _model(folder)
    budget = folder / "budget.yaml"
    budget.write_text("checks:\n  - {name: m, model: m.yaml, params: {max: 1M}}\n")
    return [
        ["batch", str(special), "--formula-only"],
        ["model", str(special)],
        ["check", str(special)],
        ["check", str(budget), "--baseline", str(special)],
    ]


@pytest.mark.parametrize(
    ("make", "kind"),
    [("fifo", "a named pipe (FIFO)"), ("device", "a device"), ("directory", "a directory")],
)
def test_non_regular_files_are_refused_before_they_are_opened(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, make: str, kind: str
) -> None:
    special = {"device": Path("/dev/zero"), "fifo": tmp_path / "fifo", "directory": tmp_path / "dir"}[make]
    if make == "fifo":
        os.mkfifo(special)  # open() of a FIFO with no writer would block forever
    elif make == "directory":
        special.mkdir()
    for args in _inputs(tmp_path, special):
        line = one_error(monkeypatch, capsys, *args)
        if make == "directory" and args[0] != "check":
            assert line == f"convcost: error: {special}: is a directory, not a YAML file"
        elif make == "directory" and args[1] == str(special):
            assert line.endswith(f"'{special}' is a directory."), line  # Typer's own check of the argument
        else:
            assert line == f"convcost: error: {special}: is {kind}, not a regular file", args


def test_calibration_cache_that_is_a_fifo_is_refused() -> None:
    from convcost.run.calibrate import CalibrationCacheError, cache_path, cached
    from convcost.spec.compare import DType

    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    with pytest.raises(CalibrationCacheError) as caught:
        cached("cpu", DType.FLOAT32, 1)
    assert str(caught.value) == f"the calibration cache {path}: is a named pipe (FIFO), not a regular file"


def test_calibrate_refuses_a_fifo_cache_before_measuring(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from convcost.run import calibrate

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before refusing the cache")

    monkeypatch.setattr(calibrate, "measure_peaks", measured)
    path = calibrate.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)  # writing to it would block until a reader appears
    assert one_error(monkeypatch, capsys, "calibrate", "--refresh") == (
        f"convcost: error: cannot write the calibration cache {path}: it is a named pipe (FIFO), not a regular file"
    )


def test_files_over_the_size_limit_are_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(input_files, "MAX_FILE_BYTES", 2**20)  # 1 MiB instead of 16: the test writes 1.5 MiB
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (3 * 2**20 // 20))  # 1,572,860 bytes
    for args in _inputs(tmp_path, big):
        line = one_error(monkeypatch, capsys, *args)
        assert line == f"convcost: error: {big}: is 1.5 MiB, over the 1 MiB limit for input files", args


# ---- 8. the memory guard names the field that caused the blow-up ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # 3×64² input, two dense 3×3 convs of cout 64 at α 100 = 6,400 channels: weights 6,400² × 9 ≈ 369M
        ("width_multiplier: 100\nlayers:\n  - {kind: dense, cout: 64, kernel: 3}\n"
         "  - {kind: dense, cout: 64, kernel: 3}\n", "width_multiplier: at width_multiplier 100"),
        # cout 8 rounded up to a multiple of 100,000
        ("channel_divisor: 100000\nlayers:\n  - {kind: dense, cout: 8, kernel: 3}\n"
         "  - {kind: dense, cout: 8, kernel: 3}\n", "channel_divisor: at channel_divisor 100000"),
        # 64 → 64,000 hidden channels: the expand 1×1 and the depthwise outputs are 64,000 × 64²
        ("layers:\n  - {kind: dense, cout: 64, kernel: 3}\n  - {kind: inverted_residual, cout: 64, expand: 1000}\n",
         "layers[1].expand: at layers[1].expand 1000"),
        ("layers:\n  - {kind: dense, cout: 100000, kernel: 3}\n", "layers[0].cout: at layers[0].cout 100000"),
    ],
)  # fmt: skip
def test_model_memory_guard_names_the_culprit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, field: str
) -> None:
    import convcost.spec.bounds

    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 2**30)  # 1 GiB: half is 512 MiB
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 64}\n" + body)
    line = one_error(monkeypatch, capsys, "model", str(path))
    assert line.startswith(f"convcost: error: {path}: {field} (input 1×3×64×64) "), line
    assert line.endswith(f"use a smaller {field.split(':')[0]}")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        # 1×3×2048² input: the dense output alone is 64·2046²·4 B ≈ 1 GiB: the size
        (["--cin", "3", "--cout", "64", "--size", "2048"], "--size"),
        # weights 20,000 × 20,000 × 9 × 4 B ≈ 13 GiB at size 8: the channels
        (["--cin", "20000", "--cout", "20000", "--size", "8"], "--cin"),
        # 8 × 3 × 512² in, 8 × 64 × 510² out ≈ 533 MiB; at batch 1 ≈ 67 MiB: the batch
        (["--cin", "3", "--cout", "64", "--size", "512", "--batch", "8"], "--batch"),
    ],
)
def test_compare_memory_guard_names_the_culprit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], flag: str
) -> None:
    import convcost.spec.bounds

    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 2**30)
    line = one_error(monkeypatch, capsys, "compare", "-k", "3", "--no-latency", *args)
    assert line.startswith(f"convcost: error: {flag}: these layers need at least "), line
    assert line.endswith(f"use a smaller {flag.removeprefix('--')}")
