from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="Rewrite golden files from the current output.")


@pytest.fixture
def overwrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--overwrite"))


# What the developer's terminal says must not reach a test: every test sees a 120-column pipe without colour
# (the width convcost uses for pipes without $COLUMNS). A test about width or colour sets them itself.
TERMINAL_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "PY_COLORS", "TTY_COMPATIBLE",
                      "TTY_INTERACTIVE", "GITHUB_ACTIONS", "LINES", "CONVCOST_DEBUG")  # fmt: skip


@pytest.fixture(autouse=True)
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TERMINAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # No test may depend on a calibration cached by the developer's own runs, nor on the thread count an
    # earlier test's command left behind (the CLI sets torch's threads for the process, as a command may).
    monkeypatch.setenv("CONVCOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)
