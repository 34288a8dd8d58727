"""The options commands share: one definition each, so the same name, metavar and default everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app

# options that mean something else on some commands, by meaning: each is compared only with the same meaning
# elsewhere. model's --size overrides a model file's own; model, suggest and convert's --batch too (compare's and
# sweep's is the layer's); model's and suggest's --latency are off by default (model times the whole model and
# each layer, suggest each layer before and after); model's --roofline implies --latency; --input is model's
# inputs, suggest's and convert's one float input; suggest's and convert's --multiplier is for --to separable
# only; convert's -o is the converted model, its --select picks layers (batch's: entries)
MEANING = {("model", "--size"): "a model file's", ("model", "--batch"): "a model file's",
           ("suggest", "--batch"): "a model file's", ("convert", "--batch"): "a model file's",
           ("model", "--latency"): "model's latency", ("suggest", "--latency"): "suggest's latency",
           ("model", "--roofline"): "implies --latency", ("suggest", "--input"): "one input",
           ("convert", "--input"): "one input", ("suggest", "--multiplier"): "--to separable",
           ("convert", "--multiplier"): "--to separable", ("convert", "--output"): "the converted model",
           ("convert", "--select"): "layers"}  # fmt: skip


def _options() -> dict[str, dict[str, tuple[str, str, str]]]:
    """By command, from its --help: each option's long name → (metavar, [default: ...] or '', help)."""
    runner = CliRunner()
    found: dict[str, dict[str, tuple[str, str, str]]] = {}
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        entries: list[str] = []
        for line in result.output.split("Options:", 1)[1].splitlines():
            if re.match(r"^  -", line):
                entries.append(line.strip())
            elif entries and line.startswith("    "):
                entries[-1] += " " + line.strip()
        options = {}
        for entry in entries:
            match = re.match(r"^(?:-\w, )?(--[\w-]+)(?: / --[\w-]+)?(?: (\S+))?(?:\s+|$)", entry)
            assert match, entry
            flag, metavar = match.group(1), match.group(2) or ""
            default = re.search(r"\[default: [^\]]*\]", entry)
            text = " ".join(entry[match.end() :].replace(default.group(0) if default else "\0", "").split())
            options[flag] = (metavar, default.group(0) if default else "", text)
        found[name] = options
    return found


def test_a_shared_option_has_one_metavar_default_and_help() -> None:
    seen: dict[tuple[str, str], tuple[str, tuple[str, str, str]]] = {}
    for command, options in _options().items():
        for flag, definition in options.items():
            if flag in ("--format", "--help"):  # check has its own formats (github, junit)
                continue
            first = seen.setdefault((flag, MEANING.get((command, flag), "")), (command, definition))
            assert definition == first[1], f"{flag}: {command} {definition} != {first[0]} {first[1]}"
    flags = {flag for flag, _ in seen}
    assert {"--dtype", "--device", "--vs", "--size", "--threads", "--roofline", "--formula-only"} <= flags
    # every difference of meaning names a flag that exists on that command
    assert all(flag in _options()[command] for command, flag in MEANING)


def test_batch_shows_its_default_the_same_way_everywhere() -> None:
    # compare's and sweep's `[default: 1]`; model's, suggest's and convert's said "(default 1)" in the help text
    shown = {command: options["--batch"][1] for command, options in _options().items() if "--batch" in options}
    assert set(shown) == {"compare", "sweep", "model", "suggest", "convert"}
    assert shown["compare"] == shown["sweep"] == "[default: 1]"
    assert shown["model"] == shown["suggest"] == shown["convert"] == "[default: a model file's own, else 1]"


def test_no_option_shows_a_python_type_as_its_metavar() -> None:
    for command, options in _options().items():
        for flag, (metavar, *_) in options.items():
            assert "<" not in metavar or "|" in metavar, f"{command} {flag}: {metavar}"  # choices: <a|b>


def test_options_that_make_sense_exist() -> None:
    options = _options()
    assert "--roofline" in options["batch"] and "--roofline" in options["compare"]
    assert "--formula-only" in options["sweep"]


def test_sweep_formula_only_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from convcost.cli import main\n"
        "sys.argv = ['convcost', 'sweep', '--cin', '8,16', '--cout', '32', '-k', '3', '--size', '16', "
        "'--formula-only', '-f', 'csv']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # 8·32·9·14·14 = 451,584 dense MACs against 8·9·196 + 8·32·196 = 64,288: a MAC ratio of 7.024
    assert "7.02" in result.stdout and result.stdout.count("\n") == 3  # header and two points


def test_batch_roofline_adds_each_entrys_roofline_table(tmp_path: Path) -> None:
    layers = tmp_path / "layers.yaml"
    layers.write_text("layers:\n  - {name: small, cin: 8, cout: 16, kernel: 3, size: 8}\n", encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(app, ["batch", str(layers), "--no-latency"])
    roofline = runner.invoke(app, ["batch", str(layers), "--no-latency", "--roofline"])
    assert plain.exit_code == 0 and roofline.exit_code == 0, roofline.output
    assert roofline.output.startswith(plain.output)
    assert "FLOP/byte" in roofline.output[len(plain.output) :] or "intensity" in roofline.output.lower()


def test_sweep_roofline_adds_each_grid_points_roofline_tables() -> None:
    runner = CliRunner()
    grid = ["sweep", "--cin", "8", "--cout", "16,32", "-k", "3", "--size", "8", "--formula-only"]
    plain = runner.invoke(app, grid)
    roofline = runner.invoke(app, [*grid, "--roofline"])
    assert plain.exit_code == 0 and roofline.exit_code == 0, roofline.output
    added = roofline.output[len(plain.output) :]
    assert roofline.output.startswith(plain.output)
    # one section per grid point, in grid order, each with the layers' and stages' work
    assert added.index("8→16 3×3 @8") < added.index("8→32 3×3 @8") and added.count("FLOP/byte") == 2
    # 8→16 dense: input 8·8·8 = 512 + weights 16·8·9 + bias 16 = 1,168 + output 16·6·6 = 576, 2,256 floats,
    # 9,024 bytes = 8.81 KiB; MACs 16·6·6·8·9 = 41,472
    assert re.search(r"dense\s+41\.5k\s+8\.81 KiB", added), added
    # the JSON is the contract: --roofline adds nothing to it
    as_json = [*grid, "--format", "json"]
    assert runner.invoke(app, [*as_json, "--roofline"]).output == runner.invoke(app, as_json).output


# One rule on every command that times: when nothing is timed (--formula-only, --no-latency, or no --latency where
# latency is off by default), an option that only says how to time is refused, naming both flags, before torch.
ROOT = Path(__file__).resolve().parent.parent
TIMING_COMMANDS = {
    "compare": ["compare", "--cin", "8", "--cout", "16", "-k", "3", "--size", "8"],
    "sweep": ["sweep", "--cin", "8", "--cout", "16", "-k", "3", "--size", "8"],
    "batch": ["batch", str(ROOT / "configs" / "seeds.yaml")],
    "model": ["model", str(ROOT / "configs" / "mobilenet_v1.yaml")],
    "suggest": ["suggest", "tests.models_for_tests:mobilenet_v2"],
}
CONFLICTS = [
    (["--no-latency", "--rounds", "3"], "--rounds: nothing is timed with --no-latency", set(TIMING_COMMANDS)),
    (["--no-latency", "--target", "5"], "--target: nothing is timed with --no-latency", set(TIMING_COMMANDS)),
    (["--formula-only", "--latency"], "--latency: nothing is timed with --formula-only",
     {"compare", "sweep", "batch", "model"}),
    (["--latency", "--formula-only", "--max-time", "1"], "--latency: nothing is timed with --formula-only",
     {"compare", "sweep", "batch", "model"}),
    (["--formula-only", "--min-time", "0.01"], "--min-time: nothing is timed with --formula-only",
     {"compare", "sweep", "batch", "model"}),
    (["--no-latency", "--no-tune-allocator"], "--no-tune-allocator: nothing is timed with --no-latency",
     {"compare", "sweep", "batch", "model"}),
    (["--formula-only", "--channels-last"], "--channels-last: nothing is timed with --formula-only",
     {"compare", "sweep", "batch", "model"}),
    (["--rounds", "3"], "--rounds: nothing is timed without --latency", {"model", "suggest"}),
    # model's --roofline is per timed layer (it implies --latency): by formula alone or with --no-latency, a
    # contradiction, where compare's, sweep's and batch's show the formula roofline (tests above)
    (["--formula-only", "--roofline"], "--roofline: nothing is timed with --formula-only", {"model"}),
    (["--roofline", "--no-latency"], "--roofline: nothing is timed with --no-latency", {"model"}),
]  # fmt: skip
CASES = [(command, extra, message) for extra, message, commands in CONFLICTS for command in sorted(commands)]


@pytest.mark.parametrize(("command", "extra", "message"), CASES)
def test_a_timing_option_when_nothing_is_timed_is_refused(command: str, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, [*TIMING_COMMANDS[command], *extra])
    assert (result.exit_code, result.output) == (2, f"convcost: error: {message}\n")


def test_the_refusals_come_before_torch_is_imported() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from convcost.cli import app\n"
        f"for args in {[[*TIMING_COMMANDS[command], *extra] for command, extra, _ in CASES]!r}:\n"
        "    assert CliRunner().invoke(app, args).exit_code == 2, args\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_what_agrees_with_nothing_timed_is_accepted() -> None:
    # --threads also sets the forward passes' threads; --formula-only --no-latency says the same thing twice
    runner = CliRunner()
    for extra in (["--formula-only", "--no-latency"], ["--formula-only", "--threads", "1"], ["--formula-only"]):
        result = runner.invoke(app, [*TIMING_COMMANDS["compare"], *extra, "-f", "csv"])
        assert result.exit_code == 0, result.output


# every command that takes --dtype and --device: the arguments that make each run only by formula (or, for
# calibrate, stop at the bad choice: it is refused before anything is measured)
CHOICE_RUNS = {
    "compare": ["compare", "--cin", "8", "--cout", "8", "-k", "3", "--formula-only"],
    "sweep": ["sweep", "--cin", "8", "--cout", "8", "-k", "3", "--formula-only"],
    "model": ["model", "mobilenet_v2", "--formula-only"],
    "calibrate": ["calibrate"],
}


@pytest.mark.parametrize("command", CHOICE_RUNS)
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--device", "tpu", "--device: Input should be 'cpu' or 'cuda', got 'tpu'"),
        ("--dtype", "float8", "--dtype: Input should be 'float32', 'bfloat16' or 'float16', got 'float8'"),
    ],
)
def test_a_bad_choice_is_worded_alike_on_every_command(command: str, flag: str, value: str, message: str) -> None:
    result = CliRunner().invoke(app, [*CHOICE_RUNS[command], flag, value])
    assert (result.exit_code, result.output.strip()) == (2, f"convcost: error: {message}")


@pytest.mark.parametrize("command", ["compare", "sweep", "model"])
def test_a_choice_is_read_alike_on_every_command(command: str) -> None:
    # ' CPU' and 'Float32' are cpu and float32 wherever --device and --dtype are read
    result = CliRunner().invoke(app, [*CHOICE_RUNS[command], "--device", " CPU", "--dtype", "Float32", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert '"device": "cpu"' in result.output and '"dtype": "float32"' in result.output
