"""convcost sweep: the grid, its validation, its outputs and the optional plot."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.errors import SpecError
from convcost.run import sweep
from convcost.run.latency import LatencySettings
from convcost.spec import sweep as grid

FAST = ["--rounds", "2", "--min-time", "0.002"]


def test_split_axis_keeps_order_and_drops_repeats() -> None:
    assert grid.split_axis("8, 32,128,8") == ["8", "32", "128"]
    assert grid.split_axis("3x5,3") == ["3x5", "3"]


def test_plan_is_the_full_product() -> None:
    specs = grid.plan({"cin": "8,32,128", "cout": "64,256", "kernel": "3,5,7", "size": "56,112"}, {})
    assert len(specs) == 3 * 2 * 3 * 2
    assert {(spec.cin, spec.cout, spec.kernel, spec.size) for spec in specs} >= {
        (8, 64, (3, 3), (56, 56)),
        (128, 256, (7, 7), (112, 112)),
    }


def test_plan_names_bad_values_by_flag() -> None:
    with pytest.raises(SpecError) as caught:
        grid.plan({"cin": "8,x", "cout": "64", "kernel": "3,,5", "size": "56"}, {})
    assert [(issue.loc, issue.message) for issue in caught.value.issues] == [
        (("cin",), "'x' must be a positive integer, got 'x'"),
        (("kernel",), "empty value in the list"),
    ]


def test_plan_names_the_grid_point_that_cannot_be_built() -> None:
    with pytest.raises(SpecError) as caught:
        grid.plan({"cin": "8", "cout": "16", "kernel": "3,7", "size": "4,8"}, {})
    # a 7×7 kernel does not fit 4×4, but 3×3 on 4×4 and 7×7 on 8×8 do: one issue, naming its point
    [issue] = caught.value.issues
    assert issue.loc == ("kernel",)
    assert issue.message.startswith("at cin 8, cout 16, kernel 7, size 4: ") and "7×7" in issue.message


def test_run_collects_one_point_per_alternative() -> None:
    axes = {"cin": "4", "cout": "8", "kernel": "3", "size": "8"}
    fixed = {"vs": ["separable", "grouped"], "groups": 2}
    result = sweep.run(grid.plan(axes, fixed), axes, fixed, LatencySettings(rounds=2, min_time=0.002))
    assert [point.vs for point in result.points] == ["separable", "grouped"]
    separable, grouped = result.points
    # 4→8 3×3 on 8×8: output 6×6. dense 8·36·4·9 = 10,368 MACs; separable 4·36·9 + 8·36·4 = 1,296 + 1,152;
    # grouped (2 groups) 8·36·2·9 = 5,184
    assert separable.macs_ratio == pytest.approx(10_368 / 2_448)
    assert grouped.macs_ratio == pytest.approx(2.0)
    assert separable.speedup == pytest.approx(separable.dense_ms / separable.alternative_ms)  # type: ignore[operator]
    assert separable.efficiency == pytest.approx(separable.speedup / separable.macs_ratio)  # type: ignore[operator]
    assert result.ok and result.axes == {"cin": ["4"], "cout": ["8"], "kernel": ["3"], "size": ["8"]}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["sweep", *args])
    return result.exit_code, result.stdout, result.stderr


GRID = ["--cin", "4,8", "--cout", "8", "-k", "3", "--size", "8"]


def test_cli_json() -> None:
    code, out, err = run(*GRID, *FAST, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [(point["cin"], point["vs"]) for point in data["points"]] == [(4, "separable"), (8, "separable")]
    # 8→8 3×3 on 8×8: dense 8·36·8·9 = 20,736; separable 8·36·9 + 8·36·8 = 2,592 + 2,304 = 4,896
    assert data["points"][1]["macs_ratio"] == pytest.approx(20_736 / 4_896)
    assert data["environment"]["threads"] == 1 and data["points"][0]["speedup"] > 0


def test_cli_csv_and_markdown() -> None:
    code, out, err = run(*GRID, "--no-latency", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["cin"], row["kernel"], row["speedup"]) for row in rows] == [("4", "3x3", ""), ("8", "3x3", "")]
    code, out, err = run(*GRID, "--no-latency", "--format", "markdown")
    assert code == 0, err
    assert "| 4→8 3×3 @8 | 4.24× |" in out  # 10,368 / 2,448 = 4.235


def test_cli_table_fits_80_columns() -> None:
    code, out, err = run(*GRID, *FAST)
    assert code == 0, err
    assert "4→8 3×3 @8" in out and "Speedup" in out and "…" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cin", "4,0", "--cout", "8", "-k", "3"], "convcost: error: --cin: '0' must be a positive integer, got 0\n"),
        (
            ["--cin", "4", "--cout", "8", "-k", "3", "--plot", "x.jpg"],
            "convcost: error: --plot: name the file .png or .svg, got 'x.jpg'\n",
        ),
        (
            ["--cin", "4", "--cout", "8", "-k", "3", "--plot", "x.png", "--no-latency"],
            "convcost: error: --plot: the plot shows measured speedups: leave out --no-latency\n",
        ),
    ],
)
def test_cli_bad_input(args: list[str], message: str) -> None:
    code, _, err = run(*args)
    assert (code, err) == (2, message)


def test_cli_grid_point_error_names_flag_and_point() -> None:
    code, out, err = run("--cin", "4", "--cout", "8", "-k", "9", "--size", "4,16")
    assert (code, out) == (2, "")
    assert err.startswith("convcost: error: --kernel: at cin 4, cout 8, kernel 9, size 4: ") and "9×9" in err
    assert err.count("\n") == 1  # size 16 fits: one line


def test_cli_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, out, err = run(*GRID, *FAST, "--plot", str(tmp_path / "sweep.png"))
    assert code == 2 and out == ""  # refused before anything was measured
    assert err == (
        "convcost: error: --plot: matplotlib is not installed: pip install 'convcost[plot]', or leave out --plot for "
        "the table alone\n"
    )
    assert not (tmp_path / "sweep.png").exists()


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<svg")])
def test_cli_plot(tmp_path: Path, suffix: str, magic: bytes) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / f"sweep{suffix}"
    code, _, err = run(*GRID, *FAST, "--plot", str(target))
    assert code == 0, err
    assert magic in target.read_bytes()[:400]
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary left


def test_cli_plot_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target, link = tmp_path / "target.png", tmp_path / "link.png"
    target.write_bytes(b"")
    link.symlink_to(target)
    code, _, err = run(*GRID, *FAST, "--plot", str(link))
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()  # followed, as -o follows one: not replaced
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_a_bad_fixed_option_is_reported_once_not_at_every_point() -> None:
    with pytest.raises(SpecError) as caught:
        grid.plan({"cin": "8,16,32", "cout": "64,128"}, {"kernel": "3", "dtype": "float64"})
    # six grid points, one cause: one issue, with no point named
    assert [(issue.loc, issue.message.startswith("Input should be")) for issue in caught.value.issues] == [
        (("dtype",), True)
    ]


def test_ctrl_c_keeps_the_points_already_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.run.comparison

    real = convcost.run.comparison.compare
    calls = []

    def interrupted(spec: object, *args: object) -> object:
        calls.append(spec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, None)  # type: ignore[arg-type]

    monkeypatch.setattr(convcost.run.comparison, "compare", interrupted)
    specs = grid.plan({"cin": "4,8", "cout": "8", "kernel": "3", "size": "8"}, {})
    result = sweep.run(specs, {"cin": "4,8"}, {}, None)
    assert result.interrupted and not result.ok
    assert [point.cin for point in result.points] == [4]  # the first grid point, measured before Ctrl-C
    assert result.to_dict()["interrupted"] is True


def test_plan_refuses_groups_without_the_grouped_kind() -> None:
    # the rule lives in the spec layer, so sweep honours it as compare and batch do
    with pytest.raises(SpecError) as caught:
        grid.plan({"cin": "8", "cout": "16", "kernel": "3", "size": "8"}, {"groups": "4"})
    assert [(issue.loc, issue.message) for issue in caught.value.issues] == [
        (("groups",), "only the grouped kind uses groups: add grouped to vs")
    ]
    assert [spec.groups for spec in grid.plan({"cin": "8", "cout": "16", "kernel": "3", "size": "8"},
                                                {"groups": "4", "vs": ["grouped"]})] == [4]  # fmt: skip
