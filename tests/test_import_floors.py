"""The module import graph stays shallow: at most MAX_FLOORS levels, lazy (function-level) imports included."""

from __future__ import annotations

import functools

import pytest

MAX_FLOORS = 9


def test_the_longest_import_chain_has_at_most_nine_floors() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("convcost", cache_dir=None)
    modules = {name for name in graph.modules if name != "convcost" and not name.endswith("__main__")}

    @functools.cache
    def chain(module: str) -> tuple[str, ...]:
        """The longest chain of imports from ``module`` down (a cycle would recurse without end)."""
        below = [chain(name) for name in graph.find_modules_directly_imported_by(module) if name in modules]
        return (module, *max(below, key=len, default=()))

    longest = max((chain(module) for module in sorted(modules)), key=len)
    assert len(longest) <= MAX_FLOORS, " > ".join(longest)


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "convcost"
    sizes = {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
             for path in package.rglob("*.py")}  # fmt: skip
    assert len(sizes) > 40  # the whole package, not an empty folder
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
