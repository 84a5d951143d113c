"""Pipeline, FeatureUnion, ColumnTransformer; pruning that reaches the vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MaxAbsScaler
from sklearn.svm import SVC

from leanml.compress import Recipe, to_compact
from leanml.compress.text import TextStage
from leanml.errors import UntrustedTypeError

from .conftest import Texts, agreement, check_strategy, roundtrip


def test_feature_union_word_and_char(emails: Texts, tmp_path: Path) -> None:
    union = FeatureUnion(
        [
            ("word", TfidfVectorizer(min_df=2)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), min_df=5)),
        ],
        transformer_weights={"word": 1.0, "char": 0.5},
    )
    pipe = Pipeline([("u", union), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(emails.X_train, emails.y_train)
    check_strategy(pipe, emails, tmp_path)


def test_nested_pipeline(emails: Texts, tmp_path: Path) -> None:
    inner = Pipeline([("v", TfidfVectorizer(min_df=2))])
    pipe = Pipeline([("features", inner), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(emails.X_train, emails.y_train)
    check_strategy(pipe, emails, tmp_path)


def test_column_transformer(emails: Texts, tmp_path: Path) -> None:
    def table(texts: list[str]) -> np.ndarray:  # columns: subject, body
        return np.array([t.split("\n", 1) + [""] * (t.count("\n") == 0) for t in texts], object)

    ct = ColumnTransformer([("s", TfidfVectorizer(), 0), ("b", TfidfVectorizer(min_df=2), 1)])
    pipe = Pipeline([("ct", ct), ("clf", LogisticRegression(max_iter=500))])
    X_train, X_test = table(emails.X_train), table(emails.X_test)
    pipe.fit(X_train, emails.y_train)
    compact, passthrough = to_compact(pipe, Recipe())
    assert passthrough == []
    loaded = roundtrip(compact, tmp_path)
    assert agreement(loaded.predict(X_test), pipe.predict(X_test)) == 1.0
    np.testing.assert_allclose(loaded.predict_proba(X_test), pipe.predict_proba(X_test), atol=1e-5)
    assert loaded.predict(X_test[:1])[0] == pipe.predict(X_test[:1])[0]


def test_pruning_shrinks_the_vocabulary(emails: Texts) -> None:
    pipe = Pipeline(
        [("v", TfidfVectorizer(ngram_range=(1, 2), min_df=2)), ("clf", LogisticRegression())]
    ).fit(emails.X_train, emails.y_train)
    kept = []
    for sparsity in (0.0, 0.5, 0.9):
        compact, _ = to_compact(pipe, Recipe(sparsity=sparsity, drop_features=True))
        stage = compact.stages[0]
        assert isinstance(stage, TextStage)
        kept.append(stage.n_features)
        used = compact.head.used_inputs()  # type: ignore[union-attr]
        assert used is not None and used.all()  # every remaining term has a weight
    assert kept[0] > kept[1] > kept[2]


def test_unsupported_steps_pass_through_with_reasons(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("v", TfidfVectorizer(min_df=2)),
            ("scale", MaxAbsScaler()),
            ("svc", SVC(kernel="linear")),
        ]
    ).fit(emails.X_train, emails.y_train)
    compact, passthrough = to_compact(pipe, Recipe())
    assert [step for step, _ in passthrough] == ["scale", "svc"]
    assert all("no strategy" in reason for _, reason in passthrough)
    loaded = roundtrip(compact, tmp_path)  # stored with skops, loaded against the allow-list
    assert agreement(loaded.predict(emails.X_test), pipe.predict(emails.X_test)) == 1.0
    assert not hasattr(loaded, "predict_proba")


def test_passthrough_with_untrusted_type_refuses_to_load(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("v", TfidfVectorizer(min_df=2)),
            ("select", SelectKBest(chi2, k=200)),  # chi2 is a function: not on the allow-list
            ("clf", LogisticRegression(max_iter=300)),
        ]
    ).fit(emails.X_train, emails.y_train)
    compact, passthrough = to_compact(pipe, Recipe())
    assert passthrough == [("select", "no strategy for SelectKBest")]
    with pytest.raises(UntrustedTypeError, match="chi2"):
        roundtrip(compact, tmp_path)
