"""`convcost check`: budgets, verdicts, baselines and the CI output formats, on a small model file."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

import convcost.run.budget
from convcost.cli import app
from convcost.spec.budget import percent, si_number

runner = CliRunner()

# dense 3→8 3×3 on 8×8: params 8·3·9 = 216 (+16 BN); MACs 8·64·27 = 13,824
# separable 8→16: dw 8·9 = 72 (+16 BN), pw 16·8 = 128 (+32 BN) params; MACs 8·64·9 + 16·64·8 = 4,608 + 8,192
# total params 216 + 16 + 72 + 16 + 128 + 32 = 480; MACs 13,824 + 12,800 = 26,624
MODEL = """\
input: {channels: 3, size: 8}
defaults: {bias: false, norm: batch, act: relu}
layers:
  - {name: stem, kind: dense, cout: 8, kernel: 3}
  - {name: block, kind: separable, cout: 16, kernel: 3}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(MODEL)
    return tmp_path


def budget(folder: Path, text: str) -> Path:
    path = folder / "budgets.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "value"), [("4.3M", 4_300_000), ("600M", 6e8), ("1.2G", 1.2e9), ("500k", 5e5), (12, 12), ("1e3", 1e3)]
)
def test_si_numbers(text: object, value: float) -> None:
    assert si_number(text) == pytest.approx(value)


def test_si_and_percent_refusals() -> None:
    for bad in ("4.3Q", True, "", "M", "4,3M", "1,00", "1,000,00", "1,000_000", ","):
        with pytest.raises(ValueError, match="must be a number such as"):
            si_number(bad)
    for negative in ("-1M", "-5", -1):
        with pytest.raises(ValueError, match="must be a non-negative number"):
            si_number(negative)
    assert percent("10%") == 10 and percent(0) == 0


@pytest.mark.parametrize(("text", "value"), [("4,300,000", 4_300_000), ("4_300_000", 4_300_000),
                                             ("12,345.5", 12_345.5), ("1,000k", 1e6)])  # fmt: skip
def test_thousands_separators_in_groups_of_three(text: str, value: float) -> None:
    assert si_number(text) == value


def test_all_limits_hold(folder: Path) -> None:
    path = budget(folder, "checks:\n  - {model: tiny.yaml, params: {max: 480}, macs: {max: 26.7k}}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 1 check, 2 limits: 2 passed, 0 errors, 0 warnings\n"


def test_exceeded_limits_exit_1_with_linter_lines(folder: Path) -> None:
    path = budget(
        folder,
        "checks:\n"
        "  - name: tiny\n"
        "    model: tiny.yaml\n"
        "    params: {max: 400}\n"
        "    macs: {max: 30k, level: warn}\n"
        "    layers:\n"
        "      - {match: 'blo*', macs: {max: 12k, level: warn}}\n"
        "      - {match: 'head', params: {max: 1}}\n",
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1, result.output
    # 480 − 400 = 80 over, 20.0%; block 12,800 − 12,000 = 800 over, 6.7%
    assert result.stdout.splitlines() == [
        f"{path}:4: error: tiny: params 480 > max 400, exceeded by 80 (20.0%)",
        f"{path}:8: error: tiny: layers head: no layer matches 'head' (there are: stem, block)",
        f"{path}:7: warning: tiny: layer block: macs 12,800 (12.8k) > max 12,000 (12.0k), exceeded by 800 (6.7%)",
        "FAILED: 1 check, 4 limits: 1 passed, 2 errors, 1 warning",
    ]


def test_warnings_alone_pass(folder: Path) -> None:
    path = budget(folder, "checks:\n  - {model: tiny.yaml, latency_ms: {max: 0.000001}}\n")
    result = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (verdict,) = data["verdicts"]
    assert (verdict["metric"], verdict["level"], verdict["passed"]) == ("latency_ms", "warn", False)
    assert data["ok"] is True and data["warnings"] == 1


def test_github_annotations_and_summary(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layers = "".join(f"      - {{match: 'b*', params: {{max: {n}}}}}\n" for n in range(12))
    path = budget(folder, f"checks:\n  - name: tiny\n    model: tiny.yaml\n    layers:\n{layers}")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = runner.invoke(app, ["check", str(path), "--format", "github"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 10  # GitHub's cap per level; the rest are counted
    assert errors[0] == (
        # block: dw 72 + BN 16 + pw 128 + BN 32 = 248 params; no percentage over a limit of 0
        f"::error file={path},line=5,title=convcost budget%3A tiny::tiny: layer block: params 248 > max 0, "
        "exceeded by 248"
    )
    assert "… and 2 more errors (see the job summary)" in lines
    text = summary.read_text()
    assert text.startswith("### ❌ convcost check: 1 check, 12 limits: 0 passed, 12 errors, 0 warnings")
    assert "| tiny | 480 | 26,624 (26.6k) | — | error |" in text


def test_junit(folder: Path) -> None:
    path = budget(folder, "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1}, macs: {max: 1G}}\n")
    result = runner.invoke(app, ["check", str(path), "-f", "junit"])
    assert result.exit_code == 1
    root = ElementTree.fromstring(result.stdout.split("\n", 1)[1])
    assert (root.get("tests"), root.get("failures")) == ("2", "1")
    failures = root.findall(".//failure")
    assert len(failures) == 1 and "params 480 > max 1" in (failures[0].get("message") or "")


def test_baseline_update_then_growth(folder: Path) -> None:
    path = budget(folder, "baseline: base.json\ntolerance: {macs: 1%}\nchecks:\n  - {name: tiny, model: tiny.yaml}\n")
    # before the first --update-baseline this check compares nothing: an error, not a pass with a warning
    first = runner.invoke(app, ["check", str(path)])
    assert first.exit_code == 2, first.output
    assert first.stderr == (
        f"convcost: error: {path}:4: checks[0]: check 'tiny' compares nothing: it gives no limit of its own and "
        f"the baseline {folder / 'base.json'} does not exist yet (write it with --update-baseline)\n"
    )
    written = runner.invoke(app, ["check", str(path), "--update-baseline"])
    assert written.exit_code == 0, written.output
    baseline = json.loads((folder / "base.json").read_text())
    recorded = baseline["checks"]["tiny"]
    assert {key: recorded[key] for key in ("params", "macs", "latency_ms")} == {
        "params": 480, "macs": 26_624, "latency_ms": None,
    }  # fmt: skip
    assert baseline["environment"]["torch"] and recorded["environment"]["threads"] == 1
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    # the model grows: block 8 → 24 channels; params grow past 0 %, MACs past 1 %
    (folder / "tiny.yaml").write_text(MODEL.replace("cout: 16", "cout: 24"))
    grown = runner.invoke(app, ["check", str(path)])
    assert grown.exit_code == 1
    assert f"{path}:4: error: tiny: params 560 grew past the baseline 480 + 0% = 480, exceeded by 80 (16.7%)" in (
        grown.stdout.splitlines()
    )


def test_baseline_from_another_environment_warns_about_latency(folder: Path) -> None:
    base = {
        "version": 1,
        "environment": {"torch": "0.0", "threads": 64, "device": "cpu"},
        "checks": {"tiny": {"params": 480, "macs": 26_624, "latency_ms": 0.001}},
    }
    (folder / "old.json").write_text(json.dumps(base))
    path = budget(folder, "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1k}}\n")
    result = runner.invoke(app, ["check", str(path), "--baseline", str(folder / "old.json"), "-f", "json"])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.stdout)["verdicts"]
    rules = {(v["metric"], v["rule"], v["passed"]) for v in verdicts}
    assert ("params", "growth", True) in rules and ("macs", "growth", True) in rules
    assert ("latency_ms", "environment", False) in rules  # not compared: warned
    assert any("another environment" in v["message"] and "threads: 64 → 1" in v["message"] for v in verdicts)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("checks:\n  - {model: tiny.yaml, params: {max: 4.3Q}}\n",
         "budgets.yaml:2: checks[0].params.max: must be a number such as 4.3M, 600M or 1.2G, got '4.3Q'"),
        ("checks:\n  - {model: tiny.yaml, parms: {max: 1}}\n",
         "budgets.yaml:2: checks[0].parms: unknown key; did you mean 'params'?"),
        ("checks:\n  - {model: missing.yaml}\n", "budgets.yaml:2: checks[0].model: no such file: "),
        ("checks:\n  - {name: x}\n",
         "budgets.yaml:2: checks[0]: give exactly one of 'model' (a model file or import path) or 'batch'"),
        ("checks:\n  - {model: 'tests.models_for_tests:tiny_residual'}\n",
         "budgets.yaml:2: checks[0].input: required for an import path: CxHxW, e.g. 3x224x224"),
        ("checks:\n  - {model: tiny.yaml, macs: {max: 1, level: fatal}}\n", "budgets.yaml:2: checks[0].macs.level: "),
    ],
)  # fmt: skip
def test_invalid_budget_exits_2(folder: Path, text: str, line: str) -> None:
    path = budget(folder, text)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"convcost: error: {folder}/{line}")


def test_invalid_model_exits_2(folder: Path) -> None:
    (folder / "tiny.yaml").write_text(MODEL.replace("kernel: 3}", "kernal: 3}", 1))
    path = budget(folder, "checks:\n  - {model: tiny.yaml, params: {max: 1}}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"convcost: error: {folder}/tiny.yaml:4: layers[0].kernal: unknown key; did you mean 'kernel'?"
    )


def test_import_path_check(folder: Path) -> None:
    text = "checks:\n  - {model: 'tests.models_for_tests:tiny_residual', input: 3x6x6, macs: {max: 28552}}\n"
    result = runner.invoke(app, ["check", str(budget(folder, text))])
    assert result.exit_code == 0, result.output


def test_batch_check(folder: Path) -> None:
    (folder / "layers.yaml").write_text(
        "version: 1\ndefaults: {kernel: 3, padding: 1, bias: false, size: 8}\n"
        "layers:\n  - {name: a, cin: 8, cout: 16}\n  - {name: b, cin: 16, cout: 16}\n"
    )
    # separable a: 8·9 + 16·8 = 200 params; b: 16·9 + 16·16 = 400; MACs ×64 each: 12,800 and 25,600
    text = (
        "checks:\n  - name: layers\n    batch: layers.yaml\n    params: {max: 600}\n"
        "    layers:\n      - {match: b, macs: {max: 25k}}\n"
    )
    result = runner.invoke(app, ["check", str(budget(folder, text))])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0].endswith(
        "error: layers: entry b: macs 25,600 (25.6k) > max 25,000 (25.0k), exceeded by 600 (2.4%)"
    )


def test_check_without_limits_is_an_error(folder: Path) -> None:
    path = budget(folder, "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n  - {name: bare, model: tiny.yaml}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"convcost: error: {path}:3: checks[1]: check 'bare' gives no limit: add params, macs, latency_ms or layers "
        "(or a baseline)\n"
    )


def test_import_paths_are_validated_before_anything_is_measured(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.run.budget

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before every check was validated")

    monkeypatch.setattr(convcost.run.budget, "measure_check", measured)
    path = budget(
        folder,
        "checks:\n  - {model: tiny.yaml, params: {max: 1k}}\n"
        "  - {name: gone, model: 'nosuchpackage.mod:net', input: 3x8x8, params: {max: 1k}}\n"
        "  - {name: flat, model: 'tests.models_for_tests:scaled', input: 3x8x8x, params: {max: 1k}}\n",
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"convcost: error: {path}:3: checks[1].model: nosuchpackage.mod:net: cannot import")
    assert lines[1].startswith(f"convcost: error: {path}:4: checks[2].input: expected SHAPE[:DTYPE]")


def test_batch_check_whose_entries_fail_fails_its_own_limits(folder: Path) -> None:
    (folder / "wrong.yaml").write_text(
        "version: 1\ndefaults: {kernel: 3, padding: 1, bias: false, size: 8}\n"
        "layers:\n  - {name: padded, cin: 8, cout: 16, pointwise: {padding: 1}}\n"
    )
    path = budget(folder, "checks:\n  - {name: wrong, batch: wrong.yaml, params: {max: 1G}}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    # the entry's own problem, once prefixed with the check's name; then the limit that cannot be shown to hold
    assert lines[0].startswith(f"{path}:2: error: wrong: {folder}/wrong.yaml:4: padded: separable: output shape")
    assert "wrong: wrong:" not in result.stdout
    assert lines[1] == f"{path}:2: error: wrong: batch total: params not measured: 1 of 1 entries failed"


@pytest.mark.parametrize(
    ("checks", "environment", "message"),
    [
        ({"tiny": {"params": "abc"}}, {},
         "base.json: checks.tiny.params: must be a non-negative number or null, got 'abc'"),
        ({"tiny": [1]}, {}, "base.json: checks.tiny: must be a mapping of figures, got [1]"),
        ({"tiny": {"macs": -5}}, {}, "base.json: checks.tiny.macs: must be a non-negative number or null, got -5"),
        ({"tiny": {"macs": True}}, {}, "base.json: checks.tiny.macs: must be a non-negative number or null, got True"),
        ({"tiny": {}}, "x", "base.json: environment: must be a mapping or null, got 'x'"),
        ({"tiny": {"environment": 3}}, {}, "base.json: checks.tiny.environment: must be a mapping or null, got 3"),
    ],
)  # fmt: skip
def test_malformed_baseline_exits_2_naming_the_field(
    folder: Path, checks: dict[str, object], environment: object, message: str
) -> None:
    (folder / "base.json").write_text(json.dumps({"version": 1, "environment": environment, "checks": checks}))
    path = budget(folder, "checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1k}}\n")
    result = runner.invoke(app, ["check", str(path), "--baseline", str(folder / "base.json")])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"convcost: error: {folder}/{message}\n"


def test_baseline_records_each_checks_environment_and_compares_latency_across_kernels(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one round never converges: taken as conclusive here (the inconclusive verdict has its own tests)
    monkeypatch.setattr(convcost.run.budget, "latency_doubt", lambda stats, contention: "")
    path = budget(
        folder,
        "baseline: base.json\nlatency: {threads: 2, rounds: 1, min_time: 0.001}\n"
        "checks:\n  - {name: counts, model: tiny.yaml, params: {max: 1k}}\n"
        "  - {name: timed, model: tiny.yaml, latency_ms: {max: 10000}}\n",
    )
    assert runner.invoke(app, ["check", str(path), "--update-baseline"]).exit_code == 0
    base = json.loads((folder / "base.json").read_text())
    counts, timed = base["checks"]["counts"], base["checks"]["timed"]
    assert counts["latency_ms"] is None and timed["latency_ms"] > 0
    # every run records the chosen thread count; the run's environment is the timed check's
    assert counts["environment"]["threads"] == timed["environment"]["threads"] == 2
    assert base["environment"] == timed["environment"] and timed["environment"]["allocator"] != "not tuned"
    # another OS kernel (platform) alone still compares latency; another thread count does not
    timed["latency_ms"] = 1e6
    timed["environment"]["platform"] = "Linux-0.0.1-other-kernel"
    (folder / "base.json").write_text(json.dumps(base))
    data = json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)
    latency = [v for v in data["verdicts"] if v["check"] == "timed" and v["metric"] == "latency_ms"]
    assert {(v["rule"], v["passed"]) for v in latency} == {("max", True), ("growth", True)}
    timed["environment"]["threads"] = 64
    (folder / "base.json").write_text(json.dumps(base))
    data = json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)
    latency = [v for v in data["verdicts"] if v["check"] == "timed" and v["metric"] == "latency_ms"]
    assert {v["rule"] for v in latency} == {"max", "environment"}
    assert any("threads: 64 → 2" in v["message"] for v in latency)


def test_shipped_budgets_are_valid() -> None:
    from convcost.spec.budget import load_budget

    budgets = load_budget(Path(__file__).resolve().parent.parent / "configs" / "budgets.yaml")
    assert [check.name for check in budgets.checks] == ["mobilenet_v1", "mobilenet_v2"]


def test_the_metrics_a_budget_limits_are_the_figures_a_check_measures() -> None:
    from convcost.results import budget as results
    from convcost.spec import budget as spec

    assert spec.METRICS == results.METRICS == tuple(spec.Tolerance.model_fields) == ("params", "macs", "latency_ms")


def test_an_invalid_budget_or_grid_is_refused_without_importing_torch(folder: Path) -> None:
    import subprocess
    import sys

    # past the schema, into the per-check rules (an import path needs an input): before, that imported torch
    path = budget(folder, "checks:\n  - {model: 'pkg.mod:net', params: {max: 1k}}\n")
    probe = (
        "import sys; from typer.testing import CliRunner; from convcost.cli import app\n"
        f"r = CliRunner().invoke(app, ['check', {str(path)!r}]); assert r.exit_code == 2, r.output\n"
        "assert 'checks[0].input: required for an import path' in r.output, r.output\n"
        "r = CliRunner().invoke(app, ['sweep', '--cin', '8,x', '--cout', '8', '-k', '3']); assert r.exit_code == 2\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_an_import_path_check_takes_several_inputs_with_dtypes_and_factory_args(folder: Path) -> None:
    path = budget(
        folder,
        "checks:\n"
        "  - {name: pair, model: 'tests.models_inputs:two_inputs', input: [3x8x8, '5'], macs: {max: 7000}}\n"
        "  - {name: wide, model: 'tests.models_inputs:mlp', args: {width: 8, depth: 3, name: wide}, input: '8',\n"
        "     params: {max: 216}, macs: {max: 191}}\n",
    )
    result = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert result.exit_code == 1, result.output  # wide's MACs are over: 3 linears 8→8 = 3·64 = 192 > 191
    data = json.loads(result.stdout)
    found = {
        (verdict["check"], verdict["metric"]): (verdict["found"], verdict["passed"]) for verdict in data["verdicts"]
    }
    # pair: conv 4·64 outputs · 27 = 6,912, the vector's linear 5·6 = 30, the head 10·2 = 20 → 6,962 ≤ 7,000
    assert found[("pair", "macs")] == (6_962, True)
    # wide (width 8, depth 3 from args): params 3·(64 + 8) = 216 within, MACs 3·64 = 192 over
    assert found[("wide", "params")] == (216, True) and found[("wide", "macs")] == (192, False)


def test_budget_input_errors_name_the_list_item_and_args_belong_to_import_paths(folder: Path) -> None:
    path = budget(
        folder,
        "checks:\n"
        "  - {name: pair, model: 'tests.models_inputs:two_inputs', input: [3x8x8, '5:complex'], macs: {max: 7k}}\n"
        "  - {name: bad, model: 'tests.models_inputs:mlp', args: {widht: 8}, input: '8', macs: {max: 7k}}\n",
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert (
        lines[0] == f"convcost: error: {path}:2: checks[0].input[1]: dtype must be one of float32, float16, "
        "bfloat16, float64, int64, int32, int16, int8, uint8, bool, got 'complex'"
    )
    assert lines[1].startswith(f"convcost: error: {path}:3: checks[1].model: ") and "widht=8" in lines[1]
    (folder / "other.yaml").write_text("checks:\n  - {model: tiny.yaml, args: {width: 8}, params: {max: 1k}}\n")
    result = runner.invoke(app, ["check", str(folder / "other.yaml")])
    assert result.exit_code == 2, result.output
    expected = f"convcost: error: {folder / 'other.yaml'}:2: checks[0].args: applies to import paths; a model file"
    assert result.stderr.startswith(expected)


def test_a_baseline_records_its_convention_and_never_compares_across_conventions(folder: Path) -> None:
    path = budget(folder, "baseline: base.json\nchecks:\n  - {name: tiny, model: tiny.yaml}\n")
    written = runner.invoke(app, ["check", str(path), "--update-baseline", "--convention", "fvcore"])
    assert written.exit_code == 0, written.output
    baseline = json.loads((folder / "base.json").read_text())
    assert baseline["convention"] == "fvcore"
    # tiny's convs 26,624 MACs; fvcore adds each batchnorm's input elements × 2 (affine): it recorded more
    assert baseline["checks"]["tiny"]["macs"] > 26_624
    assert runner.invoke(app, ["check", str(path), "--convention", "fvcore"]).exit_code == 0
    ours = runner.invoke(app, ["check", str(path)])  # our MACs are fewer: against fvcore's they would pass
    assert ours.exit_code == 2, ours.output
    assert ours.stderr == (
        f"convcost: error: {folder / 'base.json'}: convention: its MACs are by fvcore's convention, this run's by "
        "convcost's: run with --convention fvcore, or write a new baseline with --update-baseline\n"
    )
    baseline["convention"] = "thop"
    (folder / "base.json").write_text(json.dumps(baseline))
    wrong = runner.invoke(app, ["check", str(path)])
    assert wrong.exit_code == 2 and "convention: must be one of convcost, fvcore, got 'thop'" in wrong.stderr
