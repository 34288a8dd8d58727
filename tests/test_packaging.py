"""What ships: the wheel and the sdist built for real, the bundled files found by name, the declared floors.

The wheel is built from the unpacked sdist, so a missing file in the sdist shows up as a broken wheel too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib
import yaml
from typer.testing import CliRunner

from convcost.cli import app
from convcost.spec import bundled
from convcost.version import __version__

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _build(hook: str, source: Path, into: Path) -> Path:
    """Call setuptools' PEP 517 hook in a child process (what pip and `python -m build` call), no isolation."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(into)], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return into / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(sdist, wheel built from the unpacked sdist, unpacked sdist folder)."""
    out = tmp_path_factory.mktemp("dist")
    sdist = _build("build_sdist", ROOT, out)
    with tarfile.open(sdist) as archive:
        archive.extractall(out / "unpacked", filter="data")
    unpacked = out / "unpacked" / f"convcost-{__version__}"
    wheel = _build("build_wheel", unpacked, out)
    return sdist, wheel, unpacked


def test_wheel_ships_the_configs_py_typed_and_the_license(built: tuple[Path, Path, Path]) -> None:
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {name.removeprefix("convcost/configs/") for name in names if name.startswith("convcost/configs/")}
        # every file of the repository's configs/, nothing else
        assert shipped == {path.name for path in CONFIGS.iterdir() if path.is_file()}
        assert shipped == {item.filename for item in bundled.BUNDLED}
        assert (CONFIGS / "seeds.yaml").read_bytes() == archive.read("convcost/configs/seeds.yaml")
        assert "convcost/py.typed" in names
        # every module of the package, subpackages included (pyproject.toml lists the packages by hand)
        modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "convcost").rglob("*.py")}
        assert modules <= names, sorted(modules - names)
        info = f"convcost-{__version__}.dist-info"
        assert f"{info}/licenses/LICENSE" in names
        assert "MIT License" in archive.read(f"{info}/licenses/LICENSE").decode()
        assert not [name for name in names if name.startswith(("tests/", "configs/", "benchmarks/"))]
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    assert metadata["License-Expression"] == "MIT"
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Source", "Issues"}
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"
    # the declared floors, as pyproject.toml states them
    assert set(metadata.get_all("Requires-Dist")) >= {
        "torch>=2.13",
        "pydantic>=2.10",
        "typer<0.30,>=0.29",
        "rich>=14.3",
    }


def test_sdist_holds_what_its_own_suite_needs(built: tuple[Path, Path, Path]) -> None:
    sdist, _, unpacked = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {
        "LICENSE", "README.md", "Makefile", "constraints.txt", "constraints-min.txt", ".pre-commit-hooks.yaml",
        "tests/conftest.py", "tests/models_for_tests.py", "tests/test_packaging.py", "scripts/smoke_wheel.sh",
    }  # fmt: skip
    needed |= {f"tests/golden/{path.name}" for path in (ROOT / "tests" / "golden").iterdir()}
    needed |= {f"configs/{item.filename}" for item in bundled.BUNDLED}
    assert needed <= names, sorted(needed - names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    # the suite collects in the unpacked sdist: conftest and the shared test models import
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=unpacked, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    counted = dict(line.rsplit(": ", 1) for line in done.stdout.splitlines() if line.startswith("tests/"))
    assert set(counted) == {f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")}, done.stdout


def test_every_bundled_file_is_listed_once_and_exists() -> None:
    assert bundled.configs_dir() == CONFIGS  # in a clone (editable install or not): the repository's configs/
    assert sorted(item.filename for item in bundled.BUNDLED) == sorted(p.name for p in CONFIGS.iterdir())
    assert len({item.name for item in bundled.BUNDLED}) == len(bundled.BUNDLED)


def test_bundled_names_work_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("batch", "seeds", "--formula-only", "-f", "json")
    assert code == 0, err
    report = json.loads(out)
    # seeds.yaml's first entry, the blog's 8→64 3×3: dense 64·8·9 + 64 = 4,672 params
    assert report["entries"][0]["rows"][0]["dense_params"] == 4672, report["entries"][0]
    code, out, err = run("model", "mobilenet_v1", "--size", "32", "-f", "json")
    assert code == 0, err
    # MobileNet v1's params do not depend on the input size: 4,231,976 (the README's table, from the paper)
    assert json.loads(out)["total"]["params"] == 4231976
    assert bundled.resolve("budgets", bundled.Use.CHECK) == CONFIGS / "budgets.yaml"
    assert bundled.resolve("budgets.yaml", bundled.Use.CHECK) == CONFIGS / "budgets.yaml"
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_a_real_file_wins_over_a_bundled_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("seeds").write_text("layers:\n  - {name: mine, cin: 8, cout: 16, kernel: 3, size: 8}\n", encoding="utf-8")
    code, out, err = run("batch", "seeds", "--formula-only", "-f", "json")
    assert code == 0, err
    assert [entry["name"] for entry in json.loads(out)["entries"]] == ["mine"]
    Path("tiny.yaml").write_text(
        "input: {channels: 3, size: 8}\nlayers:\n  - {name: conv, kind: dense, cout: 4, kernel: 3}\n",
        encoding="utf-8",
    )
    Path("budgets").write_text("checks:\n  - {name: tiny, model: tiny.yaml, params: {max: 1k}}\n", encoding="utf-8")
    code, out, err = run("check", "budgets")
    # a 3×3 conv 3→4 without bias (model files' convention): 4·3·9 = 108 params, within 1k
    assert (code, err) == (0, ""), out
    assert out.startswith("ok: 1 check"), out


def test_neither_a_file_nor_a_bundled_name_is_one_line_listing_the_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        ("model", "mobilenet_v3"): "mobilenet_v3: no such file, and not a bundled model file; bundled model files: "
        "mobilenet_v1, mobilenet_v2 (convcost bundled lists them all)",
        ("check", "nothere.yaml"): "nothere.yaml: no such file, and not a bundled budget file; bundled budget files: "
        "budgets (convcost bundled lists them all)",
        ("model", "seeds"): "seeds: no such file, and not a bundled model file; seeds is a bundled batch file: "
        "convcost batch seeds",
        ("batch", "batch.schema"): "batch.schema: no such file, and not a bundled batch file; batch.schema is the "
        "bundled schema of batch files: convcost schema prints it",
    }
    for args, message in cases.items():
        code, out, err = run(*args)
        assert (code, out, err) == (2, "", f"convcost: error: {message}\n"), args


def test_bundled_lists_every_file_and_prints_a_path() -> None:
    code, out, err = run("bundled")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(bundled.BUNDLED) + 1
    assert lines[0].split()[:3] == ["convcost", "model", "mobilenet_v1"]
    assert "convcost batch seeds" in out and "convcost check budgets" in out and "convcost schema" in out
    assert str(CONFIGS) in lines[-1]
    assert run("bundled", "budgets") == (0, f"{CONFIGS / 'budgets.yaml'}\n", "")
    code, out, err = run("bundled", "nope")
    assert (code, out) == (2, "") and err.startswith("convcost: error: nope: not a bundled file; bundled: ")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


def test_constraints_min_pins_exactly_the_declared_floors() -> None:
    floors = {}
    for requirement in [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["plot"]]:
        match = re.fullmatch(r"([A-Za-z0-9_-]+)>=([0-9.]+)(,<[0-9.]+)?", requirement)
        assert match, requirement  # every runtime dependency has a floor
        floors[match[1].lower()] = match[2]
    minimum = _pins(ROOT / "constraints-min.txt")

    def same(floor: str, pin: str) -> bool:  # 2.13 is 2.13.0
        return floor.split(".") == pin.split(".")[: len(floor.split("."))] and set(
            pin.split(".")[len(floor.split(".")) :]
        ) <= {"0"}

    for name, floor in floors.items():
        assert same(floor, minimum[name]), (name, floor, minimum[name])
    tools = {name: version for name, version in minimum.items() if name not in floors}
    tested = _pins(ROOT / "constraints.txt")
    assert tools and all(tested[name] == version for name, version in tools.items()), tools


def test_pre_commit_hook_runs_convcost_check() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    (hook,) = hooks
    assert hook["id"] == "convcost-check" and hook["entry"] == "convcost check"
    assert hook["language"] == "python" and hook["pass_filenames"] is False
