"""Vectorizers: identical features to scikit-learn on real text, compact vocabulary, layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import (
    CountVectorizer,
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.compress import Recipe, compress, to_compact
from leanml.compress._base import ConvertContext
from leanml.compress.text import TextStage, convert_vectorizer

from .conftest import Texts, agreement, roundtrip

CONFIGS = [
    {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True},
    {"ngram_range": (1, 3), "min_df": 2, "stop_words": "english", "norm": "l1"},
    {"lowercase": False, "strip_accents": "unicode", "binary": True, "use_idf": False},
    {"token_pattern": r"(?u)\b\w+\b", "smooth_idf": False, "norm": None, "min_df": 2},
    {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 3},
    {"analyzer": "char", "ngram_range": (1, 3), "min_df": 3, "strip_accents": "ascii"},
    {"ngram_range": (2, 2), "min_df": 2, "max_df": 0.5},
]


def _max_diff(a: sp.spmatrix, b: sp.spmatrix) -> float:
    """Largest absolute difference relative to the largest value (float32 arithmetic)."""
    b = sp.csr_matrix(b, dtype=np.float64)
    d = abs(sp.csr_matrix(a, dtype=np.float64) - b)
    return float(d.max()) / max(1.0, float(abs(b).max())) if d.nnz else 0.0


@pytest.mark.parametrize(
    "params", CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_tfidf_features_match_sklearn(emails: Texts, params: dict) -> None:
    vec = TfidfVectorizer(**params).fit(emails.X_train)
    stage = convert_vectorizer(vec, ConvertContext(Recipe()))
    docs = emails.X_test[:150] + ["", "Ünïcödé ÀÉÎ text", b"bytes doc".decode()]
    expected = vec.transform(docs)
    # terms layout, batch and single row
    assert _max_diff(stage.transform(docs), expected) < 1e-6
    row = stage.transform_one(docs[3])
    dense = np.zeros(stage.n_features, dtype=np.float32)
    dense[row.indices] = row.values
    np.testing.assert_allclose(dense, expected[3].toarray()[0], rtol=1e-6, atol=1e-6)
    # token layout (word analyzers): same features up to the column permutation
    if stage.token_mode_possible():
        perm = stage.to_token_mode()
        assert _max_diff(stage.transform(docs), expected[:, perm]) < 1e-6
        single = stage.transform_one(docs[3])
        dense = np.zeros(stage.n_features, dtype=np.float32)
        dense[single.indices] = single.values
        np.testing.assert_allclose(dense, expected[3].toarray()[0][perm], rtol=1e-6, atol=1e-6)


def test_counts_are_exact(emails: Texts) -> None:
    vec = CountVectorizer(ngram_range=(1, 2), min_df=2).fit(emails.X_train)
    stage = convert_vectorizer(vec, ConvertContext(Recipe()))
    expected = vec.transform(emails.X_test).astype(np.float32)
    assert (stage.counts(emails.X_test) != expected).nnz == 0
    perm = stage.to_token_mode()
    assert (stage.counts(emails.X_test) != expected[:, perm]).nnz == 0


def test_vocabulary_is_compact_and_has_no_stop_words(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [("v", TfidfVectorizer(min_df=2, max_df=0.5)), ("c", LogisticRegression(max_iter=300))]
    ).fit(emails.X_train, emails.y_train)
    pipe[0].stop_words_ = {"dropped", "at", "fit"}  # scikit-learn < 1.6 kept these
    compact, _ = to_compact(pipe, Recipe())
    loaded = roundtrip(compact, tmp_path)
    spec = json.loads((tmp_path / "spec.json").read_text())
    text_spec = spec["nodes"][0]["spec"]
    assert text_spec["layout"] == "tokens"
    assert "stop_words_" not in json.dumps(spec)
    assert text_spec["idf"]["kind"] == "df"  # exact integer document frequencies
    stage = loaded.stages[0]
    assert isinstance(stage, TextStage)
    assert stage.tokens == sorted(stage.tokens or [])
    assert agreement(loaded.predict(emails.X_test), pipe.predict(emails.X_test)) == 1.0


def test_count_then_tfidf_transformer(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("c", CountVectorizer(min_df=2)),
            ("t", TfidfTransformer(sublinear_tf=True)),
            ("m", LogisticRegression(max_iter=300)),
        ]
    ).fit(emails.X_train, emails.y_train)
    loaded = roundtrip(to_compact(pipe, Recipe())[0], tmp_path)
    np.testing.assert_allclose(
        loaded.predict_proba(emails.X_test), pipe.predict_proba(emails.X_test), atol=1e-5
    )


def test_hashing_vectorizer(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [
            ("h", HashingVectorizer(n_features=2**12, alternate_sign=False)),
            ("m", LogisticRegression(max_iter=300)),
        ]
    ).fit(emails.X_train, emails.y_train)
    compact, passthrough = to_compact(pipe, Recipe(precision="int8", aux_precision="fp16"))
    assert passthrough == []
    loaded = roundtrip(compact, tmp_path)
    assert agreement(loaded.predict(emails.X_test), pipe.predict(emails.X_test)) >= 0.99


def test_custom_tokenizer_passes_through_with_reason(emails: Texts, tmp_path: Path) -> None:
    pipe = Pipeline(
        [("v", TfidfVectorizer(tokenizer=str.split, token_pattern=None)),
         ("m", LogisticRegression(max_iter=300))]
    ).fit(emails.X_train, emails.y_train)  # fmt: skip
    compact, passthrough = to_compact(pipe, Recipe())
    assert passthrough and "tokenizer" in passthrough[0][1]
    with pytest.raises(Exception, match="untrusted"):
        roundtrip(compact, tmp_path)  # str.split is not on the skops allow-list
    # the guard therefore keeps the original and says why
    result = compress(pipe, emails.X_val, emails.y_val, prune="none")
    assert not result.compressed and "cannot be loaded back" in (result.fallback_reason or "")


def test_single_string_is_refused(emails: Texts) -> None:
    vec = TfidfVectorizer().fit(emails.X_train)
    stage = convert_vectorizer(vec, ConvertContext(Recipe()))
    with pytest.raises(ValueError, match="single string"):
        stage.transform("one document")
