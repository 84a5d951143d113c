"""The monitor's modules import each other without cycles, and nothing above the monitor."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return grimp.build_graph("leanml", cache_dir=None)


def _cycles(graph, prefix: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Every back edge of a depth-first walk over the modules under ``prefix``."""
    inside = {m for m in graph.modules if m == prefix or m.startswith(prefix + ".")}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.find_modules_directly_imported_by(module) & inside):
            if state.get(dep) == 1:
                found.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                walk(dep, path)
        path.pop()
        state[module] = 2

    for module in sorted(inside):
        if module not in state:
            walk(module, [])
    return found


def test_no_import_cycle_inside_the_monitor(graph) -> None:  # type: ignore[no-untyped-def]
    assert _cycles(graph, "leanml.monitor") == []


def test_the_monitor_imports_nothing_above_it(graph) -> None:  # type: ignore[no-untyped-def]
    above = ("leanml.serving", "leanml.dashboard", "leanml.cli", "leanml.app")
    monitor = [m for m in graph.modules if m.startswith("leanml.monitor")]
    bad = [
        (m, dep)
        for m in monitor
        for dep in graph.find_modules_directly_imported_by(m)
        if dep == "leanml" or dep.startswith(above)
    ]
    assert bad == []


@pytest.mark.parametrize("module", ["leanml._ids", "leanml._prometheus"])
def test_ground_floor_helpers_import_no_leanml_module(graph, module) -> None:  # type: ignore[no-untyped-def]
    assert {
        d for d in graph.find_modules_directly_imported_by(module) if d.startswith("leanml")
    } == set()
