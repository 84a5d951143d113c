"""compress_registered: a registered model compressed behind the guard, its variant stored."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import count_registry_loads

from leanml.datasets import Dataset
from leanml.errors import ParameterError
from leanml.registry import ModelRegistry
from leanml.workflows import compress_registered, peer_sizes


def _dataset(X: list[str], y: np.ndarray) -> Dataset:
    return Dataset(
        name="tiny", task="email", X_train=X, y_train=y, X_val=X, y_val=y, X_test=X, y_test=y,
        source="test", license="-", citation="-",
    )  # fmt: skip


@pytest.fixture()
def registry(tmp_path, tiny_pipeline):
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", tiny_pipeline, task="email")
    return reg


def test_a_passing_compact_variant_is_registered_with_its_verdict_and_reference(
    registry, tiny_pipeline, tiny_texts
):
    X, y = tiny_texts
    # 60 validation rows cannot show 99% agreement at the default 90% confidence (see below)
    row = compress_registered(
        registry, "email", dataset=_dataset(X, y), activate=True, confidence=None
    )
    assert row["guard_passed"] is True and row["fallback_reason"] is None
    assert (row["name"], row["version"], row["task"]) == ("email", 1, "email")
    assert 0 < row["compact_bytes"] < row["skops_bytes"]
    assert row["compact_stored_bytes"] > 0 and row["agreement"] >= 0.99
    manifest = registry.manifest("email", 1, "compact")
    assert manifest.extra["guard"]["passed"] is True
    assert manifest.extra["reference"]["n"] == len(X)
    loaded = registry.load("email")  # activate=True: the compact variant now serves
    assert (loaded.variant, loaded.fell_back) == ("compact", False)
    np.testing.assert_array_equal(loaded.model.predict(X), tiny_pipeline.predict(X))


def test_at_defaults_a_tiny_validation_split_keeps_the_original_and_says_why(registry, tiny_texts):
    X, y = tiny_texts
    row = compress_registered(registry, "email", dataset=_dataset(X, y), activate=True)
    assert row["guard_passed"] is False
    assert "lower confidence bound" in row["fallback_reason"]
    assert registry.load("email").variant == "original"


def test_a_validation_split_with_unknown_labels_is_refused(registry, tiny_texts):
    X, y = tiny_texts
    other = np.where(y == "spam", "phishing", y)
    with pytest.raises(ParameterError, match=r"labels the model 'email' does not know"):
        compress_registered(registry, "email", dataset=_dataset(X, other))
    assert registry.variants("email") == ["original"]


def test_peer_sizes_measures_pickle_and_joblib(tiny_pipeline):
    sizes = peer_sizes(tiny_pipeline)
    assert set(sizes) == {"pickle_bytes", "joblib3_bytes"}
    assert sizes["pickle_bytes"] > sizes["joblib3_bytes"] > 0  # joblib compress=3 deflates


def test_when_every_candidate_fails_the_smallest_is_kept_marked_failed(registry, tiny_texts):
    X, y = tiny_texts
    # no compact model reproduces every probability exactly: the guard rejects them all
    row = compress_registered(registry, "email", dataset=_dataset(X, y), max_proba_error=0.0)
    assert row["guard_passed"] is False and row["compact_bytes"] is None
    assert row["fallback_reason"].startswith("no candidate passed the guard")
    assert row["rejected"] and all(r["reason"] for r in row["rejected"])
    assert registry.manifest("email", 1, "compact").extra["guard"]["passed"] is False
    loaded = registry.load("email", variant="compact")
    assert loaded.variant == "original" and "failed its accuracy guard" in loaded.fallback_reason


def test_an_original_handed_over_is_compressed_without_loading_it_again(
    registry, tiny_texts, monkeypatch
):
    X, y = tiny_texts
    original = registry.load("email", variant="original")
    loads = count_registry_loads(monkeypatch)
    row = compress_registered(
        registry, "email", dataset=_dataset(X, y), original=original, confidence=None
    )
    assert row["guard_passed"] is True and loads == []
    # an original of another version is not taken for this one
    registry.register("email", original.model, task="email")
    compress_registered(registry, "email", dataset=_dataset(X, y), original=original)
    assert [p.split("/")[-2:] for p in loads] == [["2", "original"]]


def test_the_compact_map_pools_the_originals_out_of_fold_counts(
    tmp_path, tiny_pipeline, tiny_texts
):
    """The original's reference carries out-of-fold counts: the compact variant's map keeps
    them and adds its own validation counts (its own predictions)."""
    from leanml.training import heldout_confusion, make_reference

    X, y = tiny_texts
    held = heldout_confusion(tiny_pipeline, X, y, folds=3)
    assert held is not None
    reg = ModelRegistry(tmp_path / "models")
    reference = make_reference(tiny_pipeline, X, y, heldout=held)
    reg.register("email", tiny_pipeline, task="email", extra={"reference": reference})
    compress_registered(reg, "email", dataset=_dataset(X, y), confidence=None)
    cal = reg.manifest("email", 1, "compact").extra["reference"]["calibration"]
    assert cal["heldout_confusion"] == held[1].astype(int).tolist()
    assert sum(map(sum, cal["confusion"])) == len(X) + held[1].sum()
