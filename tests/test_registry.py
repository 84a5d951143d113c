import json
import logging
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import count_registry_loads

from leanml.artifacts import LOADER_GROUP
from leanml.errors import ChecksumMismatchError, ModelNotFoundError, ParameterError, RegistryError
from leanml.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[1]


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


def test_report_reuses_the_variants_already_loaded(registry, tiny_pipeline, monkeypatch):
    registry.register(
        "email", _FakeCompact(["ham", "spam"]), task="email", variant="compact",
        extra={"guard": {"passed": False, "reason": "accuracy dropped"}},
    )  # fmt: skip
    original = registry.load("email", variant="original")
    loads = count_registry_loads(monkeypatch)
    report = registry.report("email", loaded=[original])
    # the original is not loaded again: its load time and model are the ones handed over
    assert report["variants"]["original"]["load_seconds"] == round(original.load_seconds, 4)
    assert report["variants"]["original"]["memory_bytes"] > 0
    assert loads == []  # (the compact failed its guard: not loadable, reported with its error)
    assert "failed its accuracy guard" in report["variants"]["compact"]["error"]
    # another version's original (or a fallback standing for a compact) is not reused
    registry.register("email", tiny_pipeline, task="email")
    registry.report("email", loaded=[original])
    assert loads == ["email/2/original"]


def test_a_fallback_reuses_the_original_handed_over(registry, tiny_pipeline, monkeypatch):
    registry.register(
        "email", _FakeCompact(["ham", "spam"]), task="email", variant="compact",
        extra={"guard": {"passed": False, "reason": "accuracy dropped"}},
    )  # fmt: skip
    original = registry.load("email", variant="original")
    loads = count_registry_loads(monkeypatch)
    served = registry.load("email", variant="compact", original=original)
    assert loads == [] and served.model is original.model
    assert (served.variant, served.requested_variant) == ("original", "compact")
    assert "failed its accuracy guard" in served.fallback_reason
    assert original.fallback_reason is None  # the one handed over is not changed
    # another version's original is not taken for this one
    registry.register("email", tiny_pipeline, task="email")
    registry.load("email", variant="original", original=original)
    assert loads == ["email/2/original"]


def _installed_from_this_checkout() -> bool:
    """Whether the installed leanml metadata (its entry points) comes from this source tree."""
    try:
        direct_url = metadata.distribution("leanml").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    url = json.loads(direct_url or "{}").get("url", "")
    return url.removeprefix("file://").rstrip("/") == str(REPO)


def _declare_loaders_beside(folder: Path) -> Path:
    """A metadata-only distribution declaring this checkout's ``leanml.artifact_loaders``.

    Used when leanml is installed from another tree, whose metadata may predate the entry
    points: the lookup is the same importlib.metadata scan that finds an installed package's.
    """
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    info = folder / "leanml_loaders_under_test-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: leanml-loaders-under-test\nVersion: 0\n"
    )
    lines = [f"{kind} = {value}" for kind, value in declared[LOADER_GROUP].items()]
    (info / "entry_points.txt").write_text(f"[{LOADER_GROUP}]\n" + "\n".join(lines) + "\n")
    return folder


_FRESH_LOAD = """
import json, sys
from leanml.registry import ModelRegistry
before = "leanml.compress" in sys.modules
loaded = ModelRegistry(sys.argv[1]).load("email")
print(json.dumps({
    "compress_imported_before_load": before,
    "variant": loaded.variant,
    "fallback_reason": loaded.fallback_reason,
    "type": type(loaded.model).__name__,
    "prediction": loaded.model.predict(["win money fast click here"]).tolist(),
}))
"""


def test_a_fresh_interpreter_loads_a_compact_variant_through_the_entry_point(
    registry, tiny_pipeline, tmp_path
):
    from leanml.compress import to_compact

    compact, _ = to_compact(tiny_pipeline)
    registry.register("email", compact, task="email", variant="compact", extra={"guard": {}})
    registry.set_active_variant("email", "compact")
    paths = [str(REPO / "src")]
    if not _installed_from_this_checkout():
        paths.append(str(_declare_loaders_beside(tmp_path / "site")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_LOAD, str(registry.root)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "compress_imported_before_load": False,
        "variant": "compact",
        "fallback_reason": None,
        "type": "CompactModel",
        "prediction": tiny_pipeline.predict(["win money fast click here"]).tolist(),
    }


# -- atomic registration, validation samples, the version lifecycle (issue 15) ---------------

_REGISTER_SCRIPT = """
import sys, time
from sklearn.dummy import DummyClassifier
from leanml.registry import ModelRegistry
model = DummyClassifier().fit([[0], [1]], ["a", "b"])
start = float(sys.argv[2])
while time.time() < start:
    pass
registry = ModelRegistry(sys.argv[1])
print(" ".join(str(registry.register("same", model, task="t").version) for _ in range(5)))
"""


def test_two_processes_registering_one_name_get_distinct_versions(tmp_path):
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    start = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTER_SCRIPT, str(tmp_path), start],
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    got = sorted(int(v) for out in outputs for v in out)
    assert got == list(range(1, 11))
    registry = ModelRegistry(tmp_path)
    assert registry.versions("same") == list(range(1, 11))
    assert [registry.manifest("same", v).version for v in range(1, 11)] == list(range(1, 11))
    assert not [p for p in (tmp_path / "same").iterdir() if p.name.startswith(".new-")]


def test_a_failed_registration_leaves_no_partial_version(tmp_path, tiny_pipeline):
    registry = ModelRegistry(tmp_path)
    registry.register("m", tiny_pipeline, task="t")

    class Unsaveable:
        classes_ = ["a"]

        def __reduce__(self):
            raise RuntimeError("cannot be written")

    with pytest.raises(Exception, match="cannot be written"):
        registry.register("m", Unsaveable(), task="t")
    assert registry.versions("m") == [1]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".lock", "1", "state.json"]


def test_the_validation_sample_is_bounded_stratified_and_checked(tmp_path, tiny_pipeline):
    registry = ModelRegistry(tmp_path)
    texts = [f"text {i}" for i in range(300)]
    labels = ["a"] * 200 + ["b"] * 100
    manifest = registry.register(
        "m", tiny_pipeline, task="t", validation=(texts, labels), sample_rows=30
    )
    entry = manifest.extra["validation_sample"]
    assert (entry["rows"], entry["of"]) == (30, 300)
    X, y = registry.validation_sample("m")
    assert len(X) == 30 and y.count("a") == 20 and y.count("b") == 10
    assert set(X) <= set(texts)
    sample = tmp_path / "m" / "1" / "validation.json.gz"
    sample.write_bytes(sample.read_bytes()[:-1])
    with pytest.raises(ChecksumMismatchError):
        registry.validation_sample("m")


def test_load_serves_the_promoted_version(tmp_path, tiny_pipeline):
    registry = ModelRegistry(tmp_path)
    for _ in range(2):
        registry.register("m", tiny_pipeline, task="t")
    registry.register("m", tiny_pipeline, task="t", promote=False)
    assert registry.serving_version("m") == 2 and registry.latest_version("m") == 3
    assert registry.load("m").version == 2
    registry.promote("m", 3)
    assert registry.load("m").version == 3 and registry.report("m")["serving_version"] == 3
    assert registry.rollback("m") == 2
    with pytest.raises(ParameterError, match="must not be the serving version"):
        registry.delete("m", 2)
    registry.delete("m", 3)
    assert registry.versions("m") == [1, 2]
    assert registry.rollback("m") == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("m")


def test_a_promotion_is_not_a_variant_choice(tmp_path):
    """state.json holds promotions too: only set_active_variant chooses a variant."""
    import numpy as np
    from sklearn.dummy import DummyClassifier

    from leanml.registry import ModelRegistry

    registry = ModelRegistry(tmp_path)
    model = DummyClassifier().fit(np.zeros((4, 1)), ["a", "b", "a", "b"])
    registry.register("m", model, task="t")  # promoted: writes state.json
    assert (tmp_path / "m" / "state.json").is_file()
    assert registry.chosen_variant("m") is None
    assert registry.active_variant("m") == "original"
    registry.set_active_variant("m", "compact")
    assert registry.chosen_variant("m") == "compact"
