import json
import logging

import numpy as np
import pytest

from leanml.errors import ModelNotFoundError, ParameterError
from leanml.registry import ModelRegistry


class _FakeCompact:
    """A stand-in compact model for registry tests: arrays + a JSON spec, no pickle."""

    leanml_format = "compact"

    def __init__(self, classes):
        self.classes_ = np.asarray(classes)

    def save_payload(self, directory):
        (directory / "spec.json").write_text(json.dumps({"classes": self.classes_.tolist()}))
        return ["spec.json"]


@pytest.fixture()
def registry(tmp_path, tiny_pipeline):
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", tiny_pipeline, task="email", metrics={"test": {"accuracy": 0.9}})
    return reg


def test_versions_increment_and_latest_loads(registry, tiny_pipeline):
    registry.register("email", tiny_pipeline, task="email")
    assert registry.versions("email") == [1, 2]
    assert registry.list_models() == ["email"]
    loaded = registry.load("email")
    assert (loaded.version, loaded.variant, loaded.fell_back) == (2, "original", False)
    assert registry.load("email", version=1).version == 1


def test_unknown_model_version_and_bad_name(registry, tiny_pipeline):
    with pytest.raises(ModelNotFoundError, match="registered models: email"):
        registry.load("intent")
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        registry.load("email", version=7)
    with pytest.raises(ParameterError, match="'name' parameter"):
        registry.register("../evil", tiny_pipeline, task="email")


def test_missing_compact_variant_falls_back_with_reason(registry, caplog):
    registry.set_active_variant("email", "compact")
    with caplog.at_level(logging.WARNING, logger="leanml.registry"):
        loaded = registry.load("email")
    assert loaded.variant == "original" and loaded.requested_variant == "compact"
    assert "has no compact variant" in loaded.fallback_reason
    assert registry.fallbacks()[-1]["reason"] == loaded.fallback_reason
    assert "serving the original instead of compact" in caplog.text


def test_compact_that_failed_its_guard_falls_back(registry):
    registry.register(
        "email",
        _FakeCompact(["ham", "spam"]),
        task="email",
        variant="compact",
        extra={"guard": {"passed": False, "reason": "accuracy dropped 2.1 points"}},
    )
    loaded = registry.load("email", variant="compact")
    assert loaded.variant == "original"
    assert "failed its accuracy guard: accuracy dropped 2.1 points" in loaded.fallback_reason


def test_corrupt_compact_falls_back(registry, tmp_path):
    registry.register(
        "email",
        _FakeCompact(["ham", "spam"]),
        task="email",
        variant="compact",
        extra={"guard": {"passed": True}},
    )
    spec = registry.path("email", 1, "compact") / "spec.json"
    spec.write_text(spec.read_text() + " ")
    loaded = registry.load("email", variant="compact")
    assert loaded.variant == "original"
    assert "sha256" in loaded.fallback_reason


def test_active_variant_persists_across_instances(registry):
    registry.set_active_variant("email", "compact")
    assert ModelRegistry(registry.root).active_variant("email") == "compact"
    with pytest.raises(ParameterError, match="'variant' parameter"):
        registry.set_active_variant("email", "tiny")


def test_compact_needs_an_existing_version(registry):
    with pytest.raises(ModelNotFoundError, match="register its original first"):
        registry.register("email", _FakeCompact(["a"]), task="email", variant="compact", version=5)


def test_report_has_sizes_load_time_memory_and_accuracy(registry):
    report = registry.report("email")
    original = report["variants"]["original"]
    assert original["artifact_bytes"] > 0
    assert original["memory_bytes"] > 0
    assert original["load_seconds"] >= 0
    assert original["test_accuracy"] == 0.9
    assert report["active_variant"] == "original"
