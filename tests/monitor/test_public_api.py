from __future__ import annotations

import importlib

import pytest

MODULES = ["leanml.monitor"] + [
    f"leanml.monitor.{n}"
    for n in (
        "sketch",
        "join",
        "metrics",
        "estimate",
        "drift",
        "alerts",
        "resources",
        "store",
        "prometheus",
        "ids",
        "config",
        "monitor",
        "window",
        "wrapper",
        "hub",
        "demo",
    )
]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, attr) for attr in exported)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_") and callable(value) and getattr(value, "__module__", "") == name
    }
    assert public <= exported, sorted(public - exported)
