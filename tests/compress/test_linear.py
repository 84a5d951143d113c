"""Linear classifiers: every supported estimator, exact in fp32, within the guard compressed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import (
    LogisticRegression,
    Perceptron,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from leanml.compress import Recipe, to_compact
from leanml.compress.linear import LinearHead, prune_weights

from .conftest import Texts, check_strategy, roundtrip

ESTIMATORS = {
    "logreg": lambda: LogisticRegression(C=10, max_iter=500),
    "sgd_log": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "sgd_huber": lambda: SGDClassifier(loss="modified_huber", random_state=0),
    "sgd_hinge": lambda: SGDClassifier(random_state=0),
    "linearsvc": lambda: LinearSVC(C=0.5),
    "ridge": lambda: RidgeClassifier(),
    "perceptron": lambda: Perceptron(random_state=0),
}


def _pipe(est: object) -> Pipeline:
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    return Pipeline([("tfidf", vec), ("clf", est)])


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_multiclass(name: str, emails: Texts, tmp_path: Path) -> None:
    pipe = _pipe(ESTIMATORS[name]()).fit(emails.X_train, emails.y_train)
    # Perceptron's integer-like updates leave near-ties that float32 scores may break apart
    exact = 0.995 if name == "perceptron" else 1.0
    check_strategy(pipe, emails, tmp_path, exact_agreement=exact)


@pytest.mark.parametrize("name", ["logreg", "sgd_log", "linearsvc", "ridge"])
def test_binary(name: str, binary_emails: Texts, tmp_path: Path) -> None:
    pipe = _pipe(ESTIMATORS[name]()).fit(binary_emails.X_train, binary_emails.y_train)
    check_strategy(pipe, binary_emails, tmp_path)


def test_passive_aggressive(emails: Texts, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in scikit-learn 1.8
        from sklearn.linear_model import PassiveAggressiveClassifier

        est = PassiveAggressiveClassifier(random_state=0)
    pipe = _pipe(est).fit(emails.X_train, emails.y_train)
    check_strategy(pipe, emails, tmp_path, guard=False)


def test_int8_probabilities_within_stated_error(emails: Texts, tmp_path: Path) -> None:
    """Contract: |p' - p| <= 2 * max_i sum_j |x_ij| * e_j, e_j = per-weight int8 error."""
    pipe = _pipe(LogisticRegression(C=10, max_iter=500)).fit(emails.X_train, emails.y_train)
    compact, _ = to_compact(pipe, Recipe(precision="int8", aux_precision="fp32"))
    loaded = roundtrip(compact, tmp_path)
    head = loaded.head
    assert isinstance(head, LinearHead)
    W = pipe[-1].coef_ - np.median(pipe[-1].coef_, axis=0)  # centered as stored
    weight_error = np.max(np.abs(W), axis=1).max() / 127 / 2
    X = pipe[0].transform(emails.X_test)
    bound = 2 * float(abs(X).sum(axis=1).max()) * weight_error + 1e-5
    error = np.abs(loaded.predict_proba(emails.X_test) - pipe.predict_proba(emails.X_test))
    assert error.max() <= bound


def test_centering_keeps_softmax_and_prunes() -> None:
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 40))
    pruned = prune_weights(W, Recipe(precision="int8", sparsity=0.5), center=True, input_scale=None)
    assert np.all(np.sum(pruned == 0, axis=0) >= 1)  # the median of each column became 0
    shift = W - pruned
    kept = pruned != 0
    np.testing.assert_allclose((shift * kept)[:, 0], (shift * kept)[:, 0])
    x = rng.random(40)
    unpruned = prune_weights(W, Recipe(precision="int8"), center=True, input_scale=None)
    p = np.exp(W @ x) / np.exp(W @ x).sum()
    q = np.exp(unpruned @ x) / np.exp(unpruned @ x).sum()
    np.testing.assert_allclose(p, q, rtol=1e-10)


def test_threshold_pruning_drops_features(emails: Texts) -> None:
    pipe = _pipe(LogisticRegression(C=10, max_iter=500)).fit(emails.X_train, emails.y_train)
    full, _ = to_compact(pipe, Recipe())
    pruned, _ = to_compact(pipe, Recipe(precision="int8", threshold=1.0, drop_features=True))
    assert pruned.stages[0].n_features < full.stages[0].n_features  # type: ignore[attr-defined]
    kept = pruned.head.used_inputs()  # type: ignore[union-attr]
    assert kept is not None and kept.all()


def test_usage_weighted_pruning_drops_rare_terms_first(emails: Texts) -> None:
    """At the same sparsity the usage-weighted ranking (|w| * idf * df / n) keeps terms that
    occur more often than the magnitude ranking (|w| * idf) does, and labels its recipe."""
    pipe = _pipe(LogisticRegression(C=10, max_iter=500)).fit(emails.X_train, emails.y_train)
    idf = pipe.steps[0][1].idf_
    W = pipe.steps[-1][1].coef_
    kept = {}
    for usage in (False, True):
        recipe = Recipe(precision="int8", sparsity=0.9, drop_features=True, usage_weighted=usage)
        pruned = prune_weights(W, recipe, center=True, input_scale=idf)
        kept[usage] = np.any(pruned != 0, axis=0)
        assert np.mean(pruned == 0) >= 0.89
    df_share = np.exp(1.0 - idf)  # smooth idf: (df + 1) / (n + 1)
    assert df_share[kept[True]].mean() > 1.5 * df_share[kept[False]].mean()
    assert kept[True].sum() < kept[False].sum()  # fewer terms left in the vocabulary
    assert Recipe(sparsity=0.9, usage_weighted=True).label() == "fp32/fp32/prune0.9u"
    assert Recipe(threshold=0.1, usage_weighted=True).label() == "fp32/fp32/thr0.1"
