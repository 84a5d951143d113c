"""Trees and ensembles: identical splits in fp32, compact node arrays, quantized leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from leanml.compress import Recipe, serialized_size, to_compact
from leanml.compress._quant import floor_float

from .conftest import Texts, agreement, check_strategy, roundtrip

FOREST_KW = {"n_estimators": 15, "random_state": 0}
TREES = {
    "tree": lambda: DecisionTreeClassifier(random_state=0),
    "forest": lambda: RandomForestClassifier(**FOREST_KW),
    "extra": lambda: ExtraTreesClassifier(**FOREST_KW),
    "boosting": lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
}


def _svd_pipe(est: object) -> Pipeline:
    return Pipeline(
        [
            ("v", TfidfVectorizer(min_df=2, sublinear_tf=True)),
            ("svd", TruncatedSVD(30, random_state=0)),
            ("clf", est),
        ]
    )


@pytest.mark.parametrize("name", sorted(TREES))
def test_tree_on_svd(name: str, emails: Texts, tmp_path: Path) -> None:
    pipe = _svd_pipe(TREES[name]()).fit(emails.X_train, emails.y_train)
    # float32 SVD features against float64: a value sitting on a threshold may move
    check_strategy(pipe, emails, tmp_path, exact_agreement=0.99, proba_atol=0.1)


def test_boosting_binary(binary_emails: Texts, tmp_path: Path) -> None:
    est = GradientBoostingClassifier(n_estimators=15, random_state=0)
    pipe = _svd_pipe(est).fit(binary_emails.X_train, binary_emails.y_train)
    check_strategy(pipe, binary_emails, tmp_path, exact_agreement=0.99, proba_atol=0.1)


def test_tree_on_dense_features_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] ** 2 > 0.5, "a", np.where(X[:, 2] > 0, "b", "c"))
    for est in (RandomForestClassifier(**FOREST_KW), GradientBoostingClassifier(n_estimators=10)):
        est.fit(X, y)
        loaded = roundtrip(to_compact(est, Recipe())[0], tmp_path / type(est).__name__)
        assert agreement(loaded.predict(X), est.predict(X)) == 1.0
        np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), atol=1e-6)
        row = loaded.predict_proba(X[:1])
        np.testing.assert_allclose(row, est.predict_proba(X[:1]), atol=1e-6)


def test_tree_on_text_prunes_the_vocabulary(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [("v", TfidfVectorizer(min_df=2, norm=None)), ("t", DecisionTreeClassifier(random_state=0))]
    ).fit(emails.X_train, emails.y_train)
    # without a row norm, dropping the unused terms is exact
    compact, _ = to_compact(pipe, Recipe(drop_features=True))
    n_used = int(np.sum(pipe[-1].tree_.feature >= 0))
    assert compact.stages[0].n_features <= n_used  # type: ignore[attr-defined]
    loaded = roundtrip(compact, tmp_path)
    assert agreement(loaded.predict(emails.X_test), pipe.predict(emails.X_test)) == 1.0


def test_int8_leaves_and_size(emails: Texts) -> None:
    pipe = _svd_pipe(RandomForestClassifier(**FOREST_KW)).fit(emails.X_train, emails.y_train)
    compact, _ = to_compact(pipe, Recipe(precision="int8", aux_precision="fp32"))
    assert serialized_size(compact) * 4 < serialized_size(pipe)
    # uint8 leaf fractions: |p' - p| <= 1/510 per leaf, so on the forest average too
    X = compact.transform_batch(emails.X_test)
    exact, _ = to_compact(pipe, Recipe())
    error = np.abs(compact.head.proba(X) - exact.head.proba(X))  # type: ignore[union-attr]
    assert error.max() <= 1 / 510 + 1e-6


def test_floor_float_keeps_comparisons() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(size=5000)
    t32 = floor_float(t, np.float32)
    x = np.concatenate([t.astype(np.float32), np.nextafter(t.astype(np.float32), np.inf)])
    tt = np.concatenate([t, t])
    tt32 = np.concatenate([t32, t32])
    assert np.array_equal(x <= tt, x <= tt32)
