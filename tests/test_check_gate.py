"""`convcost check` cannot pass what it could not judge: MACs with ops not counted, a latency whose whole interval
exceeds its limit, and a budget one of whose models raises (the others still judged and reported)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.stats import classify
from convcost.results.budget import Figures, Level, LimitVerdict
from convcost.results.comparison import LatencyStats
from convcost.run.budget import _doubted, _figures

runner = CliRunner()

# tests.models_for_gate:conv_then_bilinear on 1×2×2: conv 1→1 1×1 has 1·1·1·(2·2) = 4 MACs (counted) and 1 + 1 = 2
# params; nn.Bilinear(4, 4, 2) has 4·4·2 = 32 MACs (no formula: not counted) and 4·4·2 + 2 = 34 params (counted)
BILINEAR = "{name: bil, model: 'tests.models_for_gate:conv_then_bilinear', input: 1x2x2"
NOT_COUNTED = "1 operation(s) not counted: b.bilinear (functional bilinear, 34 params): their cost is not in the totals"

# dense 3→8 3×3 on 8×8, no bias: 8·3·9 = 216 params
TINY = "input: {channels: 3, size: 8}\nlayers:\n  - {name: stem, kind: dense, cout: 8, kernel: 3, bias: false}\n"


def write(folder: Path, text: str) -> Path:
    (folder / "tiny.yaml").write_text(TINY)
    path = folder / "budgets.yaml"
    path.write_text(text)
    return path


def test_a_macs_limit_on_an_incomplete_count_fails_in_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # counted 4 ≤ 10, but the real 4 + 32 = 36 is not: the limit cannot be shown to hold. Params (36) are complete.
    layers = "[{match: 'b*', macs: {max: 100}}, {match: c, macs: {max: 4}}]"
    path = write(
        tmp_path, f"checks:\n  - {BILINEAR}, macs: {{max: 10}}, params: {{max: 36}},\n    layers: {layers}}}\n"
    )
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    table = runner.invoke(app, ["check", str(path)])
    assert table.exit_code == 1, table.output
    assert table.stdout.splitlines() == [
        f"{path}:2: error: bil: macs 4 counted against max 10 is incomplete: {NOT_COUNTED}",
        f"{path}:3: error: bil: layer b.bilinear: macs 0 counted against max 100 is incomplete: {NOT_COUNTED}",
        "FAILED: 1 check, 4 limits: 2 passed, 2 errors, 0 warnings",  # params 36 ≤ 36 and layer c's 4 ≤ 4 pass
    ]
    verdicts = json.loads(runner.invoke(app, ["check", str(path), "-f", "json"]).stdout)["verdicts"]
    assert [(v["subject"], v["metric"], v["rule"], v["passed"]) for v in verdicts] == [
        ("model", "params", "max", True),
        ("model", "macs", "incomplete", False),
        ("layer b.bilinear", "macs", "incomplete", False),
        ("layer c", "macs", "max", True),
    ]
    junit = ElementTree.fromstring(runner.invoke(app, ["check", str(path), "-f", "junit"]).stdout)
    assert [item.get("type") for item in junit.iter("failure")] == ["incomplete", "incomplete"]
    github = runner.invoke(app, ["check", str(path), "-f", "github"])
    assert github.exit_code == 1 and github.stdout.count("::error ") == 2, github.output
    assert f"is incomplete: {NOT_COUNTED}" in github.stdout
    assert "| bil | 36 | 4 | — | error |" in summary.read_text()


def test_growth_on_an_incomplete_count_fails_and_a_baseline_refuses_one(tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"version": 1, "checks": {"bil": {"params": 36, "macs": 4, "latency_ms": None}}}))
    path = write(tmp_path, f"baseline: base.json\nchecks:\n  - {BILINEAR}}}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1, result.output  # 4 counted, 4 recorded: growth 0%, yet 32 MACs are not in either
    assert result.stdout.splitlines()[0] == (
        f"{path}:3: error: bil: macs 4 counted against baseline + tolerance 4 is incomplete: {NOT_COUNTED}"
    )
    before = base.read_text()
    update = runner.invoke(app, ["check", str(path), "--update-baseline"])
    assert update.exit_code == 2, update.output
    assert update.stderr == (
        "convcost: error: --update-baseline: bil: macs incomplete: 1 operation(s) not counted: b.bilinear "
        "(functional bilinear, 34 params): not written\n"
    )
    assert base.read_text() == before


def stats(interval: tuple[float, float], rounds: int = 5) -> LatencyStats:
    # five rounds never converge (at least 30 are taken before convergence is judged)
    return LatencyStats(5.0, 4.9, 5.1, 4.8, 5.6, rounds, rounds, best_ms=4.9, interval_ms=interval, sampled_s=2.0,
                        converged=False, target_pct=3.0, stopped_by="rounds")  # fmt: skip


@pytest.mark.parametrize(
    ("limit", "passed", "rule", "level"),
    [
        (4.0, False, "max", Level.ERROR),  # 4.5–5.4 wholly above 4: fails, converged or not
        (6.0, True, "max", Level.ERROR),  # wholly below 6: holds
        (5.0, False, "inconclusive", Level.WARN),  # 4.5 ≤ 5 ≤ 5.4: straddles, so it cannot decide
        (4.5, False, "inconclusive", Level.WARN),  # touching the low end is straddling too
    ],
)  # fmt: skip
def test_an_unconverged_latency_interval_on_one_side_of_the_limit_decides_it(
    limit: float, passed: bool, rule: str, level: Level
) -> None:
    figures = _figures(100, 1000, stats((4.5, 5.4)), None)
    assert figures.latency_interval == (4.5, 5.4) and figures.latency_doubt
    verdict = LimitVerdict("net", "model", "latency_ms", "max", Level.ERROR, limit >= 4.9, 3, limit, 4.9)
    judged = _doubted(verdict, figures, strict=False)
    assert (judged.rule, judged.passed, judged.level) == (rule, passed, level)


def test_a_single_round_gives_no_interval_to_decide_by_and_a_busy_machine_is_judged_by_its_interval() -> None:
    assert _figures(100, 1000, stats((4.9, 4.9), rounds=1), None).latency_interval is None
    verdict = LimitVerdict("net", "model", "latency_ms", "max", Level.ERROR, False, 3, 4.0, 4.9)
    assert _doubted(verdict, Figures(100, 1000, 4.9, "one round"), strict=False).rule == "inconclusive"
    busy = classify([4.2e9] * 20, [49e9] * 20, 10e9, 50e9)  # memory at 42%, compute at 98% of the calibration
    figures = _figures(100, 1000, stats((4.5, 5.4)), busy)
    assert "the machine was busy" in figures.latency_doubt
    judged = _doubted(verdict, figures, strict=False)  # 4.5–5.4 wholly above 4, as that machine ran it
    assert (judged.rule, judged.passed, judged.level) == ("max", False, Level.ERROR)
    # decided, and it says how and what doubted the figure: never a plain "> max" that hides the busy machine
    assert judged.message.startswith("latency_ms 4.9 ms > max 4 ms, decided by its whole 95% interval 4.5–5.4 ms, "
                                     "though its sampling did not converge")  # fmt: skip
    assert "the machine was busy" in judged.message and "did not converge" in judged.message


def test_a_latency_far_over_its_limit_fails_though_five_rounds_never_converge(tmp_path: Path) -> None:
    # any forward pass takes more than a nanosecond (1e-6 ms), so every round is far above the limit
    path = write(tmp_path, "latency: {rounds: 5, min_time: 0.001}\nchecks:\n"
                           "  - {model: tiny.yaml, latency_ms: {max: 0.000001, level: error}}\n")  # fmt: skip
    result = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert result.exit_code == 1, result.output
    (verdict,) = json.loads(result.stdout)["verdicts"]
    assert (verdict["rule"], verdict["level"], verdict["passed"]) == ("max", "error", False)


def test_a_model_that_raises_is_an_error_of_its_check_and_the_others_are_still_judged(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:\n  - {name: one, model: tiny.yaml, params: {max: 1}}\n"
                           "  - {name: bad, model: 'tests.models_for_gate:forward_raises', input: 3x8x8,\n"
                           "     params: {max: 1}}\n"
                           "  - {name: two, model: tiny.yaml, params: {max: 216}}\n")  # fmt: skip
    report = tmp_path / "report.xml"
    result = runner.invoke(app, ["check", str(path), "-f", "junit", "-o", str(report)])
    assert result.exit_code == 2, result.output  # the model's code raised: bad input, though 'one' also failed
    cases = {case.get("classname"): case for case in ElementTree.parse(report).iter("testcase")}
    assert list(cases) == ["convcost.one", "convcost.bad", "convcost.two"]
    assert cases["convcost.bad"].get("line") == "3"
    failure = cases["convcost.bad"].find("failure")
    assert failure is not None and failure.get("type") == "not run"
    assert failure.get("message") == (
        "bad: tests.models_for_gate:forward_raises: forward pass on input 1×3×8×8 failed: RuntimeError: forward broke"
    )
    table = runner.invoke(app, ["check", str(path)])
    assert table.exit_code == 2, table.output
    assert table.stdout.splitlines() == [
        f"{path}:2: error: one: params 216 > max 1, exceeded by 215 (21500.0%)",
        f"{path}:3: error: bad: tests.models_for_gate:forward_raises: forward pass on input 1×3×8×8 failed: "
        "RuntimeError: forward broke",
        "FAILED: 3 checks, 3 limits: 1 passed, 2 errors, 0 warnings",  # two: 216 ≤ 216
    ]
    base = tmp_path / "base.json"
    update = runner.invoke(app, ["check", str(path), "--update-baseline", "--baseline", str(base)])
    assert update.exit_code == 2 and not base.exists(), update.output  # no figures for 'bad': nothing recorded
