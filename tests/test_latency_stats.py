"""The latency statistics on synthetic, deterministic timing series: no clock is read, nothing is timed."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost import stats as latency_stats
from convcost.cost.stats import (
    MIN_ROUNDS,
    SamplingPlan,
    classify,
    is_converged,
    quantile,
    sample,
    summarize,
    within,
)
from convcost.results.budget import Figures, Level, LimitVerdict
from convcost.results.comparison import LatencyStats
from convcost.run.budget import _doubted, latency_doubt

runner = CliRunner()


def noisy(scale: float, count: int, generator: random.Random) -> list[float]:
    """``count`` rounds of ``scale`` × a heavy-tailed slowdown ≥ 1 (lognormal), as a busy machine gives."""
    return [scale * (1 + generator.lognormvariate(-2.5, 0.8)) for _ in range(count)]


def test_quantile_interpolates_between_order_statistics() -> None:
    # sorted 1, 2, 3, 4, 5: the 10 % quantile sits at position (5−1)·0.1 = 0.4, i.e. 1 + 0.4·(2−1) = 1.4
    assert quantile([5, 1, 4, 2, 3], 0.1) == pytest.approx(1.4)
    assert quantile([5, 1, 4, 2, 3], 0.5) == 3
    assert quantile([7.0], 0.1) == 7.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_point_estimates_are_the_low_quantile_and_the_median() -> None:
    rounds = {"dense": [0.004, 0.001, 0.003, 0.002, 0.005], "alt": [0.002, 0.0005, 0.0015, 0.001, 0.0025]}
    estimates, ratios = summarize(rounds, [("dense", "alt")])
    # dense: 10 % quantile 1.4 ms (as above), median 3 ms; alt is dense ÷ 2 round by round
    assert estimates["dense"].best == pytest.approx(0.0014) and estimates["dense"].typical == pytest.approx(0.003)
    assert ratios[("dense", "alt")].best == pytest.approx(2.0)
    assert ratios[("dense", "alt")].typical == pytest.approx(2.0)


def test_the_bootstrap_is_seeded_same_samples_same_interval() -> None:
    generator = random.Random(1)
    rounds = {"dense": noisy(5e-3, 60, generator), "alt": noisy(1.25e-3, 60, generator)}
    first = summarize(rounds, [("dense", "alt")])
    assert summarize(rounds, [("dense", "alt")]) == first
    assert summarize(rounds, [("dense", "alt")], seed=2) != first  # the seed is what makes it repeatable


def test_rounds_are_resampled_as_matched_pairs() -> None:
    # the machine drifts 1× → 3× over the run, and the alternative is always exactly a quarter of dense in the same
    # round: resampling rounds as pairs keeps every resample's ratio at 4, so the interval is the point, 4–4
    # (resampling each series on its own would mix slow dense rounds with fast alternative rounds)
    drift = [1 + 2 * index / 59 for index in range(60)]
    rounds = {"dense": [4e-3 * factor for factor in drift], "alt": [1e-3 * factor for factor in drift]}
    _, ratios = summarize(rounds, [("dense", "alt")])
    low, high = ratios[("dense", "alt")].best_interval
    assert low == pytest.approx(4.0) and high == pytest.approx(4.0)
    estimates, _ = summarize(rounds)
    low, high = estimates["dense"].typical_interval
    assert high / low > 1.2  # while each layer's own figure, drift and all, is uncertain


def test_speedup_intervals_cover_the_true_ratio() -> None:
    # 40 runs of 80 rounds: dense and the alternative draw the same slowdown distribution, scaled 4 : 1, so every
    # quantile of dense is 4× the alternative's: the true best and typical speedups are both exactly 4
    generator = random.Random(7)
    best_hits = typical_hits = 0
    runs = 40
    for _ in range(runs):
        rounds = {"dense": noisy(4e-3, 80, generator), "alt": noisy(1e-3, 80, generator)}
        _, ratios = summarize(rounds, [("dense", "alt")])
        found = ratios[("dense", "alt")]
        best_hits += found.best_interval[0] <= 4.0 <= found.best_interval[1]
        typical_hits += found.typical_interval[0] <= 4.0 <= found.typical_interval[1]
    # a 95 % interval: about 38 of 40; ≥ 34 (85 %) leaves room for the bootstrap's known under-coverage of quantiles
    assert best_hits >= 34 and typical_hits >= 34


def test_within_needs_both_ends_inside_the_target() -> None:
    assert within((3.9, 4.1), 4.0, 0.03)  # ±2.5 %
    assert not within((3.7, 4.05), 4.0, 0.03)  # the low end is 7.5 % below
    assert not within((3.95, 4.2), 4.0, 0.03)  # the high end is 5 % above


SPREAD = [value * 1e-3 for value in range(1, 11)]  # 1, 2, …, 10 ms, repeated


class FakeClock:
    """Advances ``step`` seconds each round; reading it costs nothing."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        return self.now


def rounds_from(series: dict[str, list[float]], clock: FakeClock):  # type: ignore[no-untyped-def]
    def take_round(index: int) -> dict[str, float]:
        clock.now += clock.step
        return {name: values[index % len(values)] for name, values in series.items()}

    return take_round


def test_a_quiet_series_converges_at_the_first_check() -> None:
    # every round within ±0.25 % of 4 ms, and 1 ms: the 95 % interval is far inside ±3 % at the first check
    series = {"dense": [4e-3 * (1 + 0.005 * ((i % 5) - 2) / 2) for i in range(50)], "alt": [1e-3] * 50}
    clock = FakeClock(0.01)
    result = sample(rounds_from(series, clock), SamplingPlan(target=0.03, max_time=2.0), [("dense", "alt")], [],
                    clock)  # fmt: skip
    assert (result.converged, result.stopped_by, result.count, result.checks) == (True, "target", MIN_ROUNDS, 1)
    assert result.sampled_s == pytest.approx(MIN_ROUNDS * 0.01)


def test_a_noisy_series_stops_at_max_time_unconverged() -> None:
    # the alternative's rounds spread evenly over 1–10 ms: its 10 % quantile, and so the speedup, moves by far more
    # than ±3 % from resample to resample; 0.05 s a round and a 2 s budget: after the 39th (1.95 s) another round
    # would overrun it
    series = {"dense": [4e-3] * 2, "alt": SPREAD}
    clock = FakeClock(0.05)
    result = sample(rounds_from(series, clock), SamplingPlan(target=0.03, max_time=2.0), [("dense", "alt")], [],
                    clock)  # fmt: skip
    assert (result.converged, result.stopped_by, result.count) == (False, "time", 39)
    assert result.sampled_s == pytest.approx(1.95)


def test_checks_are_spaced_geometrically() -> None:
    # 0.02 s a round, 2 s: 99 rounds (a 100th would overrun); checks at 30, 39, 51, 67, 88 rounds (each ⌈1.3×⌉ the
    # last: 30·1.3 = 39, 39·1.3 = 50.7, 51·1.3 = 66.3, 67·1.3 = 87.1), plus one at the end: 6 bootstraps, not 70
    series = {"dense": [4e-3] * 2, "alt": SPREAD}
    clock = FakeClock(0.02)
    result = sample(rounds_from(series, clock), SamplingPlan(target=0.03, max_time=2.0), [("dense", "alt")], [],
                    clock)  # fmt: skip
    assert (result.count, result.checks) == (99, 6)


def test_fixed_rounds_take_exactly_that_many_and_are_judged_after() -> None:
    series = {"dense": [4e-3], "alt": [1e-3]}
    clock = FakeClock(1.0)  # far past max_time: a fixed count ignores it
    plan = SamplingPlan(rounds=MIN_ROUNDS, max_time=0.5)
    result = sample(rounds_from(series, clock), plan, [("dense", "alt")], [], clock)
    assert (result.count, result.stopped_by, result.converged) == (MIN_ROUNDS, "rounds", True)  # constant: converged
    # the same constant rounds, but fewer than the minimum: never converged, however narrow their interval
    few = sample(rounds_from(series, FakeClock(0.0)), SamplingPlan(rounds=3), [("dense", "alt")], [], FakeClock(0))
    assert (few.count, few.converged) == (3, False)


def test_without_pairs_the_watched_case_decides() -> None:
    rounds = {"model": [2e-3] * 20, "layer": SPREAD * 2}
    assert is_converged(rounds, [], ["model"], 0.03)
    assert not is_converged(rounds, [], ["layer"], 0.03)


def test_a_clock_that_stands_still_cannot_loop_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency_stats, "MAX_ROUNDS", 60)  # the guard's value does not matter, only that it holds
    series = {"dense": [4e-3] * 2, "alt": SPREAD}
    clock = FakeClock(0.0)
    result = sample(rounds_from(series, clock), SamplingPlan(), [("dense", "alt")], [], clock)
    assert (result.count, result.stopped_by, result.converged) == (60, "limit", False)


def test_contention_against_the_calibration() -> None:
    quiet = classify([10e9] * 20, [50e9] * 20, reference_copy=10e9, reference_matmul=50e9)
    assert (quiet.busy, quiet.memory_fraction, quiet.compute_fraction) == (False, 1.0, 1.0)
    assert quiet.reference == "calibration" and "looked quiet" in quiet.note and "of calibrated" in quiet.note
    # the copy at 4.2 GB/s against 10 calibrated: 42 %, below the 50 % line; the matmul is unaffected
    slowed = {"dense": 1.05, "separable": 1.9}
    busy = classify([4.2e9] * 20, [49e9] * 20, 10e9, 50e9, slowed)
    assert busy.busy and busy.memory_fraction == pytest.approx(0.42) and busy.compute_fraction == pytest.approx(0.98)
    assert busy.note.startswith("The machine was busy during the measurement (memory bandwidth at 42% of calibrated")
    # 62 %: as low as a quiet 2-vCPU VM's copy went against its calibration, so no evidence
    assert not classify([6.2e9] * 20, [49e9] * 20, 10e9, 50e9, slowed).busy
    assert "slowed most: separable typical 1.90× its best; dense typical 1.05× its best." in busy.note


def test_the_runs_own_best_and_the_layers_spread_are_reported_but_no_evidence() -> None:
    # half the rounds at 10 GB/s, half at 4: the median 7 GB/s (between the middle two, 4 and 10) is 70 % of the
    # own best (the 90 % quantile, 10 GB/s); a quiet 2-vCPU VM's probe already strays to 70–83 % of its own best,
    # and its separable layer to 1.6× its best, so neither marks the run busy
    copies = [10e9, 4e9] * 10
    quiet = classify(copies, [50e9] * 20, slowdowns={"dense": 1.05, "separable": 1.6})
    assert not quiet.busy and quiet.memory_fraction == pytest.approx(0.7) and quiet.reference == "this run's best"
    assert quiet.slowdown == 1.6 and "memory bandwidth at 70% of this run's best" in quiet.note
    assert "load on other cores that slows the run steadily does not show" in quiet.note


def test_waiting_for_a_cpu_marks_the_run_busy() -> None:
    # quiet runs waited 0–4 % of their time; beside a process on the same core about 49 %
    slowed = {"dense": 1.9, "separable": 3.1}
    shared = classify([10e9] * 20, [50e9] * 20, slowdowns=slowed, cpu_wait=0.49)
    assert shared.busy and shared.cpu_wait_fraction == 0.49 and shared.to_dict()["cpu_wait_fraction"] == 0.49
    assert shared.note.startswith("The machine was busy during the measurement (waited for a CPU 49% of the time, ")
    assert "another process shared the CPU" in shared.note
    assert "slowed most: separable typical 3.10× its best; dense typical 1.90× its best." in shared.note
    assert not classify([10e9] * 20, [50e9] * 20, cpu_wait=0.04).busy
    assert classify([10e9] * 20, [50e9] * 20, cpu_wait=latency_stats.BUSY_CPU_WAIT).busy
    # during calibration: no layers, the same evidence
    calibrating = classify([10e9] * 20, [50e9] * 20, during="calibration", cpu_wait=0.5)
    assert calibrating.busy and calibrating.note.startswith("The machine was busy during calibration (waited")
    assert not classify([10e9, 4e9] * 10, [50e9] * 20, during="calibration", cpu_wait=0.01).busy


def host_states(generator: random.Random, count: int = 150, stretch: int = 25) -> dict[str, list[float]]:
    """Rounds on a host whose neighbours come and go: every ``stretch`` rounds a new state slows the memory-bound
    alternative by 0–40 % and dense by 0–5 %, with a little independent noise round by round."""
    dense: list[float] = []
    alt: list[float] = []
    for start in range(0, count, stretch):
        alt_level, dense_level = generator.uniform(1.0, 1.4), generator.uniform(1.0, 1.05)
        for _ in range(min(stretch, count - start)):
            dense.append(4e-3 * dense_level * (1 + generator.lognormvariate(-4, 0.5)))
            alt.append(1e-3 * alt_level * (1 + generator.lognormvariate(-4, 0.5)))
    return {"dense": dense, "alt": alt}


def test_blocks_of_rounds_widen_the_interval_when_the_host_drifts() -> None:
    # ten runs of 150 rounds on a drifting host: the speedup moves from run to run with the states each run saw.
    # Resampling single rounds treats a 25-round stretch as 25 independent draws and gives a narrow interval;
    # resampling stretches of √150 = 12 rounds keeps the drift in: over twice as wide, and the intervals contain
    # the median of the ten speedups twice as often (bench item 4's coverage, in miniature). Still 6 of 10, not
    # 9: a low quantile over six host states sits on the fastest one, which no resampling of one run can move
    generator = random.Random(0)
    runs = [host_states(generator) for _ in range(10)]
    found = {block: [summarize(rounds, [("dense", "alt")], block=block)[1][("dense", "alt")] for rounds in runs]
             for block in (1, None)}  # fmt: skip
    middle = sorted(item.best for item in found[1])[4:6]
    median = sum(middle) / 2

    def width(item: latency_stats.Estimate) -> float:
        return (item.best_interval[1] - item.best_interval[0]) / item.best

    def covered(items: list[latency_stats.Estimate]) -> int:
        return sum(item.best_interval[0] <= median <= item.best_interval[1] for item in items)

    assert [item.best for item in found[1]] == [item.best for item in found[None]]  # the same points
    assert sorted(map(width, found[None]))[5] > 2 * sorted(map(width, found[1]))[5]  # median widths
    assert (covered(found[1]), covered(found[None])) == (3, 6)


def test_block_resamples_are_circular_stretches() -> None:
    assert [latency_stats.block_length(count) for count in (1, 5, 30, 169, 2000)] == [1, 2, 5, 13, 44]
    picks = latency_stats.block_picks(random.Random(3), 10, 4)
    assert len(picks) == 10
    for start in range(0, 8, 4):  # each block of 4 runs on consecutively, wrapping from 9 to 0
        assert all(picks[start + offset] == (picks[start] + offset) % 10 for offset in range(4))
    # one round per block is the ordinary bootstrap, draw for draw
    generator = random.Random(1)
    rounds = {"dense": noisy(5e-3, 60, generator), "alt": noisy(1.25e-3, 60, generator)}
    assert summarize(rounds, [("dense", "alt")], block=1) != summarize(rounds, [("dense", "alt")])


def test_the_time_budget_counts_the_warm_up() -> None:
    # rounds of 10 ms, 2 s in all, of which the warm-up before sampling took 1.5: about 50 rounds, not 200
    series = {"dense": [4e-3] * 2, "alt": SPREAD}  # as above: never within ±3 %
    clock = FakeClock(0.01)
    result = sample(rounds_from(series, clock), SamplingPlan(), [("dense", "alt")], [], clock, started=-1.5)
    assert result.stopped_by == "time" and 49 <= result.count <= 51
    assert result.sampled_s == pytest.approx(result.count * 0.01)  # the sampling itself, as reported


def timed(converged: bool) -> LatencyStats:
    return LatencyStats(5.0, 4.9, 5.1, 4.8, 5.6, 40, 40, best_ms=4.9, interval_ms=(4.5, 5.4), sampled_s=2.0,
                        converged=converged, target_pct=3.0, stopped_by="time")  # fmt: skip


def test_latency_doubt_names_the_reason() -> None:
    assert latency_doubt(timed(True), None) == ""
    assert latency_doubt(None, None) == ""
    assert latency_doubt(timed(False), None) == (
        "its sampling did not converge to ±3% in 2.0 s (95% interval 4.5–5.4 ms)"
    )
    busy = classify([4.2e9] * 20, [49e9] * 20, 10e9, 50e9)
    assert latency_doubt(timed(True), busy) == (
        "the machine was busy (memory bandwidth at 42%, compute at 98% of calibration)"
    )


@pytest.mark.parametrize("passed", [True, False])
@pytest.mark.parametrize("strict", [False, True])
def test_a_doubted_latency_limit_is_inconclusive_pass_or_fail(passed: bool, strict: bool) -> None:
    verdict = LimitVerdict("net", "model", "latency_ms", "max", Level.ERROR, passed, 3, 5.0 if passed else 4.0, 4.9)
    figures = Figures(100, 1000, 4.9, "its sampling did not converge")
    doubted = _doubted(verdict, figures, strict)
    assert (doubted.rule, doubted.passed) == ("inconclusive", False)
    assert doubted.level is (Level.ERROR if strict else Level.WARN)
    assert "is inconclusive: its sampling did not converge" in doubted.message
    assert ("would pass" if passed else "would fail") in doubted.message
    # a conclusive figure, or a count, is left alone
    assert _doubted(verdict, Figures(100, 1000, 4.9), strict) == verdict
    params = LimitVerdict("net", "model", "params", "max", Level.ERROR, passed, 3, 5.0, 4.9)
    assert _doubted(params, figures, strict) == params


MODEL = "input: {channels: 3, size: 8}\nlayers:\n  - {name: stem, kind: dense, cout: 8, kernel: 3}\n"


def test_check_one_round_is_inconclusive_a_warning_or_with_strict_an_error(tmp_path: Path) -> None:
    # one round has no interval: never converged, so the latency limit cannot decide, however generous it is
    (tmp_path / "tiny.yaml").write_text(MODEL)
    path = tmp_path / "budgets.yaml"
    path.write_text("latency: {rounds: 1, min_time: 0.001}\nchecks:\n"
                    "  - {name: timed, model: tiny.yaml, latency_ms: {max: 100000, level: error}}\n")  # fmt: skip
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:3: warning: timed: latency_ms " in result.stdout
    assert "is inconclusive: its sampling did not converge to ±3%" in result.stdout
    strict = runner.invoke(app, ["check", str(path), "--strict-latency", "-f", "json"])
    assert strict.exit_code == 1, strict.output
    (verdict,) = json.loads(strict.stdout)["verdicts"]
    assert (verdict["rule"], verdict["level"], verdict["passed"]) == ("inconclusive", "error", False)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--target", "0"), ("--target", "51"), ("--target", "nan"), ("--max-time", "inf"), ("--max-time", "0.01"),
     ("--max-time", "nan")],
)  # fmt: skip
def test_sampling_flags_are_bounded(flag: str, value: str) -> None:
    result = runner.invoke(app, ["compare", "--cin", "4", "--cout", "8", "-k", "3", flag, value])
    assert result.exit_code == 2
    bounds = "a percentage from 0.1 to 50" if flag == "--target" else "a number of seconds from 0.05 to 600"
    assert f"Invalid value for '{flag}': must be {bounds}, got " in " ".join(result.output.split())


@pytest.mark.parametrize("text", ["target: .nan", "target: 0", "max_time: .inf", "max_time: 1000"])
def test_budget_sampling_settings_are_bounded(tmp_path: Path, text: str) -> None:
    (tmp_path / "tiny.yaml").write_text(MODEL)
    path = tmp_path / "budgets.yaml"
    path.write_text(f"latency: {{{text}}}\nchecks:\n  - {{name: timed, model: tiny.yaml, latency_ms: {{max: 9}}}}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:1: latency.{text.split(':')[0]}" in " ".join(result.output.split())


def test_host_spread_is_a_t_prediction_half_width_of_the_window_figures() -> None:
    from convcost.cost.stats import T_975, host_spread

    assert host_spread([2.0]) is None  # one window says nothing about the next
    assert host_spread([2.0, 2.0, 2.0]) == 0.0
    figures = [1.0, math.e**0.1, math.e**-0.1, 1.0, 1.0]
    deviation = math.sqrt(0.02 / 4)
    expected = math.expm1(T_975[4] * deviation * math.sqrt(1 + 1 / 5))
    assert host_spread(figures) == pytest.approx(expected)


def test_widen_combines_the_host_term_in_quadrature_with_each_half_width() -> None:
    from convcost.cost.stats import Estimate, widen

    estimate = Estimate(4.0, 5.0, (3.7, 4.4), (5.0, 5.0))
    assert widen(estimate, None) is estimate
    assert widen(estimate, 0.0) is estimate
    wide = widen(estimate, 0.1)
    assert (wide.best, wide.typical) == (4.0, 5.0)
    assert wide.best_interval == pytest.approx((4.0 - math.hypot(0.3, 0.4), 4.0 + math.hypot(0.4, 0.4)))
    assert wide.typical_interval == pytest.approx((4.5, 5.5))


def test_a_calibration_keeps_its_host_term_and_refuses_a_broken_one() -> None:
    from convcost.cost.roofline import Calibration

    data = {"machine": "m", "torch": "t", "device": "cpu", "dtype": "float32", "threads": 1, "peak_flops": 1e10,
            "peak_bandwidth": 1e10, "call_overhead_s": 1e-5, "matmul_size": 512, "copy_bytes": 1 << 20,
            "measured_at": "now", "allocator": "tuned", "host_spread": 0.08, "host_windows": 5}  # fmt: skip
    calibration = Calibration.from_dict(data)
    assert (calibration.host_spread, calibration.host_windows) == (0.08, 5)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert Calibration.from_dict({**data, "host_spread": None}).host_spread is None
    for broken in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match="host_spread"):
            Calibration.from_dict({**data, "host_spread": broken})
    # what calibrate measured on a busy machine (two windows, t = 12.7: a spread of 13.3 was seen) reads back
    busy = Calibration.from_dict({**data, "host_spread": 13.3, "host_windows": 2})
    assert Calibration.from_dict(busy.to_dict()) == busy


def test_a_wide_host_term_never_makes_a_bound_negative() -> None:
    from convcost.cost.stats import Estimate, widen

    estimate = Estimate(4.0, 5.0, (3.5, 4.5), (4.5, 5.5))
    wide = widen(estimate, 13.3)
    # high side: 4 + hypot(0.5, 13.3·4 = 53.2) ≈ 57.2; low side 4 − 53.2 < 0: clamped at 0
    assert wide.best_interval[0] == 0.0 and wide.typical_interval[0] == 0.0
    assert wide.best_interval[1] == pytest.approx(4 + (0.5**2 + 53.2**2) ** 0.5)


def test_the_contention_says_what_the_interval_covers() -> None:
    from dataclasses import replace

    from convcost.cost.stats import classify

    quiet = classify([1.0] * 5, [1.0] * 5)
    assert quiet.to_dict()["host_spread"] is None
    assert "only" in quiet.to_dict()["interval_covers"]
    widened = replace(quiet, host_spread=0.08).to_dict()
    assert widened["host_spread"] == 0.08
    assert "window-to-window variation calibrate measured" in widened["interval_covers"]
