from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="Rewrite golden files from the current output.")


@pytest.fixture
def overwrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--overwrite"))


@pytest.fixture(autouse=True)
def empty_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may depend on a calibration cached by the developer's own runs.
    monkeypatch.setenv("CONVCOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
