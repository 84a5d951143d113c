"""TruncatedSVD, StandardScaler and Normalizer stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from leanml.compress import Recipe, to_compact

from .conftest import Texts, check_strategy, roundtrip


def test_svd_scaler_logreg(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("v", TfidfVectorizer(min_df=2)),
            ("svd", TruncatedSVD(40, random_state=0)),
            ("scale", StandardScaler()),
            ("norm", Normalizer()),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(emails.X_train, emails.y_train)
    check_strategy(pipe, emails, tmp_path, proba_atol=1e-4)


def test_sparse_scaler_then_linear(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("v", TfidfVectorizer(min_df=2)),
            ("scale", StandardScaler(with_mean=False)),
            ("norm", Normalizer(norm="l1")),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(emails.X_train, emails.y_train)
    check_strategy(pipe, emails, tmp_path, proba_atol=1e-4)


def test_svd_int8_error_bound(emails: Texts, tmp_path: Path) -> None:
    """Contract: |y' - y| <= sum_j |x_j| * s_j / 2 per SVD output (int8, s_j per input)."""
    pipe = Pipeline(
        [("v", TfidfVectorizer(min_df=2)), ("svd", TruncatedSVD(20, random_state=0)),
         ("clf", LogisticRegression(max_iter=500))]
    ).fit(emails.X_train, emails.y_train)  # fmt: skip
    loaded = roundtrip(to_compact(pipe, Recipe(precision="int8"))[0], tmp_path)
    X = pipe[0].transform(emails.X_test)
    exact = pipe[1].transform(X)
    ours = loaded.stages[1].transform(loaded.stages[0].transform(emails.X_test))
    scale = np.abs(pipe[1].components_).max(axis=0) / 127  # per input column
    bound = np.asarray(abs(X) @ scale)[:, None] / 2 + 1e-5
    assert np.all(np.abs(ours - exact) <= bound)
