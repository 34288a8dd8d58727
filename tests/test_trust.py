"""Trust defects a tester found: each test here failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.spec.files import cache_path
from tests.test_hostile import MODEL, invoke, one_error  # its one-layer model: dense 3→8 3×3, 216 params

LAYER = ["--cin", "4", "--cout", "4", "-k", "3", "--size", "8"]


@pytest.mark.parametrize(
    "command",
    [
        ["batch", "b.yaml", "--no-latency"],
        ["batch", "b.yaml", "--formula-only"],
        ["model", "m.yaml"],
        ["check", "budget.yaml", "--formula-only"],
        ["sweep", *LAYER, "--no-latency"],
        ["suggest", "m.yaml"],
        ["convert", "m.yaml"],
        ["compare", *LAYER, "--no-latency"],
        ["schema"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_no_command_writes_its_report_over_the_calibration_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # batch and model used to replace the cache with their report (batch pinned the refusal on an entry, after
    # which it wrote anyway); -o naming the cache is refused while the flags are read, for every command
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yaml").write_text("layers: [{cin: 4, cout: 4, kernel: 3, size: 8}]\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text(MODEL, encoding="utf-8")
    (tmp_path / "budget.yaml").write_text("checks:\n  - {model: m.yaml, params: {max: 1k}}\n", encoding="utf-8")
    cache = cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text('{"precious": 1}', encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(cache)
    for output in (cache, link):
        result = invoke(*command, "-o", output)
        assert result.exit_code == 2, result.output
        # Click's usage block here; main() makes it one line (tests/test_cli_compare.py checks that)
        last = result.stderr.strip().splitlines()[-1]
        same = "" if output == cache else f" (the same file as {cache})"
        assert last.endswith(f"{output} is an input{same}: refusing to write over it"), result.stderr
        assert cache.read_text(encoding="utf-8") == '{"precious": 1}'


def test_a_speedup_from_too_few_rounds_is_not_converged(tmp_path: Path) -> None:
    # one round bootstraps to a zero-width interval, "within" any target; but fewer than 30 rounds never count as
    # converged (README, Latency), and a speedup is no surer than the two timings it divides
    small = ["--cin", "4", "--cout", "4", "-k", "3", "--size", "8", "--rounds", "1", "--min-time", "0.001"]
    compared = invoke("compare", *small, "-f", "json")
    assert compared.exit_code == 0, compared.output
    data = json.loads(compared.stdout)
    assert [layer["latency"]["converged"] for layer in (data["dense"], *data["alternatives"])] == [False, False]
    assert [ratio["latency_converged"] for ratio in data["ratios"]] == [False]
    table = invoke("compare", *small)
    assert "from best figures (NOT converged to ±3%)" in table.stdout
    swept = invoke("sweep", *small, "-f", "json")
    assert [point["converged"] for point in json.loads(swept.stdout)["points"]] == [False]
    assert "1 of 1 speedups did not converge to the target" in invoke("sweep", *small).stdout
    batch = tmp_path / "b.yaml"
    batch.write_text("layers: [{cin: 4, cout: 4, kernel: 3, size: 8}]\n", encoding="utf-8")
    batched = invoke("batch", batch, "--rounds", "1", "--min-time", "0.001", "-f", "json")
    assert [row["converged"] for row in json.loads(batched.stdout)["entries"][0]["rows"]] == [False]
    text = invoke("batch", batch, "--rounds", "1", "--min-time", "0.001").stdout
    assert "1 of 1 speedups did not converge to their target" in text


def test_an_unwritable_plot_is_refused_before_the_grid_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    import convcost.run.sweep

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("the grid was measured before --plot was checked")

    monkeypatch.setattr(convcost.run.sweep, "run", measured)
    plot = tmp_path / "no" / "p.png"
    result = invoke("sweep", "--cin", "4,8", "--cout", "8", "-k", "3", "--size", "16", "--plot", plot)
    assert result.exit_code == 2, result.output
    assert one_error(result) == f"convcost: error: --plot: {tmp_path / 'no'} does not exist"


def test_a_pointwise_kernel_other_than_1x1_is_refused_not_dropped(tmp_path: Path) -> None:
    layers = "layers:\n  - {kind: pointwise, cout: 5, kernel: 1}\n  - {kind: pointwise, cout: 5, kernel: 3}\n"
    path = tmp_path / "m.yaml"
    path.write_text("input: {channels: 3, size: 8}\n" + layers, encoding="utf-8")
    result = invoke("model", path, "--formula-only")
    assert result.exit_code == 2, result.output
    assert one_error(result) == (
        f"convcost: error: {path}:4: layers[1].kernel: a pointwise conv's kernel is 1×1: give no kernel or 1"
    )
    path.write_text("input: {channels: 3, size: 8}\n" + layers.replace("kernel: 3", "kernel: [1, 1]"), "utf-8")
    result = invoke("model", path, "--formula-only", "-f", "json")
    assert result.exit_code == 0, result.output
    # two 1×1 convs without bias: 3·5 + 5·5 = 40 params; 8·8·(3·5 + 5·5) = 2,560 MACs
    total = json.loads(result.stdout)["total"]
    assert (total["params"], total["macs"]) == (40, 2560)


@pytest.mark.parametrize("setting", ["[x.y=1", "size.x=1", "cin.x=1", "vs.x=1", "foo.padding=1"])
def test_set_names_an_unknown_stage_as_one(setting: str) -> None:
    # these used to read "input: unknown key" or the size/cin/vs flag's own complaint about a dict
    result = invoke("compare", "--cin", "8", "--cout", "8", "-k", "3", "--no-latency", "--set", setting)
    assert result.exit_code == 2, result.output
    stage = setting.partition(".")[0]
    assert one_error(result) == (
        f"convcost: error: --set {stage}: unknown stage (stages: dense, depthwise, pointwise, grouped, row, "
        "column, shared)"
    )


def test_a_command_that_needs_no_cache_runs_without_a_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    # every command notes the calibration cache as an input when it starts; with no home directory (no HOME, no
    # passwd entry: Path.home() raises) there is no cache to protect, and `bundled` still lists the files
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("CONVCOST_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    result = CliRunner().invoke(app, ["bundled"])
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2" in result.output
