"""Public names are exactly the ones in ``__all__`` (private modules start with '_')."""

import importlib

import pytest

MODULES = [
    "leanml",
    "leanml.errors",
    "leanml.config",
    "leanml.artifacts",
    "leanml.registry",
    "leanml.datasets",
    "leanml.training",
    "leanml.bench",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_existing_public_names(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, attr) for attr in exported)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and getattr(value, "__module__", name).startswith(name)
        and callable(value)
    }
    assert public <= exported, f"public but not in __all__: {sorted(public - exported)}"


def test_every_error_derives_from_the_root():
    errors = importlib.import_module("leanml.errors")
    for attr in errors.__all__:
        assert issubclass(getattr(errors, attr), errors.LeanMLError)


def test_monitored_is_reachable_from_the_top_level():
    import leanml
    from leanml.monitor import monitored

    assert leanml.monitored is monitored
    assert "monitored" in leanml.__all__
