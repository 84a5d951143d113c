"""The one-pass prediction of compact text models: labels, confidences and token counts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from leanml._predict import predict_top
from leanml.compress import to_compact
from leanml.compress._base import ConvertContext, Recipe
from leanml.compress.text import _convert_vectorizer


def _thousand(emails) -> list[str]:
    texts = emails.X_val + emails.X_test + emails.X_train[:200]
    assert len(texts) == 1000
    return texts


def _retokenized(vec, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word tokens and known tokens by tokenizing again with scikit-learn (unigram analyzer of
    the same settings, membership in the fitted vocabulary)."""
    params = {**vec.get_params(), "ngram_range": (1, 1)}
    analyze = type(vec)(**params).build_analyzer()
    vocab = vec.vocabulary_
    toks = [analyze(t) for t in texts]
    return (
        np.array([len(t) for t in toks]),
        np.array([sum(1 for w in t if w in vocab) for t in toks]),
    )


@pytest.mark.parametrize(
    "vec",
    [
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(ngram_range=(1, 3), min_df=3, stop_words="english"),
        CountVectorizer(min_df=2),
    ],
    ids=["tfidf12", "tfidf13-stop", "count11"],
)
def test_token_counts_equal_a_retokenization_on_1000_texts(emails, vec) -> None:
    texts = _thousand(emails)
    vec.fit(emails.X_train)
    tokens, known = _retokenized(vec, texts)
    assert known.sum() > 0 and (known < tokens).any()  # the test can fail both ways
    terms = _convert_vectorizer(vec, ConvertContext(Recipe()))
    assert terms.tokens is None  # the terms layout
    layouts = [terms]
    if terms.token_mode_possible():
        tok = _convert_vectorizer(vec, ConvertContext(Recipe()))
        tok.to_token_mode()
        layouts.append(tok)
    for stage in layouts:
        batch, counts = stage.transform_counted(texts)
        assert counts is not None
        np.testing.assert_array_equal(counts[0], tokens)
        np.testing.assert_array_equal(counts[1], known)
        ones = [stage.transform_one_counted(t)[1] for t in texts]
        assert [c[0] for c in ones] == tokens.tolist()  # type: ignore[index]
        assert [c[1] for c in ones] == known.tolist()  # type: ignore[index]
        # the counted transforms give the same features as the plain ones
        assert (batch != stage.transform(texts)).nnz == 0
        one = stage.transform_one_counted(texts[0])[0]
        np.testing.assert_array_equal(one.indices, stage.transform_one(texts[0]).indices)


def test_char_analyzers_give_no_token_counts(emails) -> None:
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)).fit(emails.X_train[:100])
    stage = _convert_vectorizer(vec, ConvertContext(Recipe()))
    assert stage.transform_counted(emails.X_val[:5])[1] is None
    assert stage.transform_one_counted(emails.X_val[0])[1] is None


@pytest.mark.parametrize(
    "head",
    [
        lambda: LogisticRegression(max_iter=500),
        lambda: LinearSVC(),
        lambda: MultinomialNB(),
    ],
    ids=["logistic", "linearsvc", "nb"],
)
@pytest.mark.parametrize("binary", [False, True], ids=["3class", "binary"])
def test_fused_prediction_equals_predict_top(emails, binary_emails, head, binary) -> None:
    data = binary_emails if binary else emails
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2), head())
    model.fit(data.X_train, data.y_train)
    compact = to_compact(model)[0]
    texts = data.X_val[:200]
    top, conf, _ = predict_top(compact, texts)
    labels = compact.predict(texts)
    ftop, fconf, proba, counts = compact.predict_fused(texts)
    assert proba is None and counts is not None
    np.testing.assert_array_equal(ftop, top)
    np.testing.assert_allclose(fconf, conf, rtol=1e-6)
    np.testing.assert_array_equal(compact.classes_[ftop], labels)
    ftop2, fconf2, proba2, _ = compact.predict_fused(texts, proba=True)
    np.testing.assert_array_equal(ftop2, top)
    np.testing.assert_allclose(proba2, predict_top(compact, texts)[2], rtol=1e-6)
    for i, t in enumerate(texts[:60]):
        k, c, n_tok, n_known = compact.predict_fused_one(t)
        one_top, one_conf, _ = predict_top(compact, [t])  # the model's single-text path
        assert k == one_top[0] and compact.classes_[k] == compact.predict([t])[0]
        assert c == pytest.approx(one_conf[0], rel=1e-6)
        assert (n_tok, n_known) == (int(counts[0][i]), int(counts[1][i]))
