"""Naive Bayes: Multinomial, Complement, Bernoulli reduce to an exact linear head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB
from sklearn.pipeline import Pipeline

from leanml.compress import Recipe, to_compact

from .conftest import Texts, check_strategy, roundtrip


@pytest.mark.parametrize(
    "est", [MultinomialNB(alpha=0.1), ComplementNB(alpha=0.3), BernoulliNB(alpha=0.5)],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_naive_bayes(est: object, emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline([("v", TfidfVectorizer(min_df=2)), ("nb", est)])
    pipe.fit(emails.X_train, emails.y_train)
    result = check_strategy(pipe, emails, tmp_path, proba_atol=1e-4)
    assert not hasattr(result.model, "decision_function")  # as scikit-learn's NB


def test_counts_binary(binary_emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline([("v", CountVectorizer(min_df=2)), ("nb", MultinomialNB())])
    pipe.fit(binary_emails.X_train, binary_emails.y_train)
    check_strategy(pipe, binary_emails, tmp_path, proba_atol=1e-4)


def test_only_what_predict_needs_is_stored(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline([("v", CountVectorizer(min_df=2)), ("nb", MultinomialNB())])
    pipe.fit(emails.X_train, emails.y_train)
    compact, _ = to_compact(pipe, Recipe(precision="int8", aux_precision="fp16"))
    compact.save_payload(tmp_path)
    names = (tmp_path / "spec.json").read_text()
    assert "feature_count" not in names and "class_count" not in names
    loaded = roundtrip(compact, tmp_path / "again")
    p0, p1 = pipe.predict_proba(emails.X_test), loaded.predict_proba(emails.X_test)
    assert np.mean(np.argmax(p0, 1) == np.argmax(p1, 1)) >= 0.99
