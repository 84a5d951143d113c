"""Vectorizers: identical features to scikit-learn on real text, compact vocabulary, layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import (
    CountVectorizer,
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.compress import Recipe, _textops, compress, to_compact
from leanml.compress._base import ConvertContext, find_strategy
from leanml.compress._textops import canonical_csr, count_arrays, weigh_csr
from leanml.compress.text import TextStage

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


def _text_stage(vec: Any) -> TextStage:
    """The stage the registered strategy builds for a fitted vectorizer (through the table)."""
    strategy = find_strategy(vec)
    assert strategy is not None, f"no strategy for {type(vec).__name__}"
    stage = strategy(vec, ConvertContext(Recipe()))
    assert isinstance(stage, TextStage)
    return stage


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
    stage = _text_stage(vec)
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


COUNT_CONFIGS = [
    {"ngram_range": (1, 2), "min_df": 2},
    {"ngram_range": (1, 3), "min_df": 2, "stop_words": "english"},
    {"ngram_range": (2, 3), "min_df": 2, "binary": True},
    {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 3},
]


def _edge_batches(docs: list[str]) -> list[list[str]]:
    """Empty batch, empty and all-unknown documents, alone and between known ones."""
    unknown = "qqqzzz xxyyq zzqqx"
    return [
        [],
        [""],
        ["", ""],
        [unknown],
        ["hi", "ho"],
        ["", docs[0], unknown, "", docs[1], ""],
        docs[:5],
        docs,
    ]


def _assert_canonical_f32(X: sp.csr_matrix) -> None:
    assert type(X) is sp.csr_matrix and X.dtype == np.float32
    assert X.indices.dtype == X.indptr.dtype == np.int32
    assert X.has_canonical_format and X.has_sorted_indices
    ref = sp.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape)  # checked, flags unset
    assert ref.has_canonical_format and ref.has_sorted_indices


@pytest.mark.parametrize("layout", ["terms", "tokens"])
@pytest.mark.parametrize(
    "params", COUNT_CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_counts_are_exact(emails: Texts, params: dict, layout: str) -> None:
    vec = TfidfVectorizer(**params).fit(emails.X_train)
    raw = {k: v for k, v in params.items() if k != "binary"}  # counts() are raw counts
    counter = CountVectorizer(**raw).fit(emails.X_train)
    assert counter.vocabulary_ == vec.vocabulary_
    stage = _text_stage(vec)
    perm = np.arange(stage.n_features)
    if layout == "tokens":
        if not stage.token_mode_possible():
            pytest.skip("no token layout for this analyzer")
        perm = stage.to_token_mode()
        loaded = TextStage.from_payload(*stage.payload())
        grams, kept = loaded.grams or [], stage.grams or []
        assert len(grams) == len(kept) == params["ngram_range"][1] - params["ngram_range"][0] + 1
        for codes, before in zip(grams, kept, strict=True):  # sorted codes in base len(tokens)
            np.testing.assert_array_equal(codes, before)
            assert np.all(np.diff(codes) > 0)
        stage = loaded
    for docs in _edge_batches(emails.X_test[:40]):
        counts = stage.counts(docs)
        _assert_canonical_f32(counts)
        expected = counter.transform(docs).astype(np.float32)[:, perm]
        assert counts.shape == expected.shape == (len(docs), stage.n_features)
        assert (counts != expected).nnz == 0
        weighted = stage.transform(docs)
        _assert_canonical_f32(weighted)
        np.testing.assert_array_equal(weighted.indices, counts.indices)
        np.testing.assert_array_equal(weighted.indptr, counts.indptr)
        if docs:  # scikit-learn refuses to transform an empty batch
            assert _max_diff(weighted, vec.transform(docs)[:, perm]) < 1e-6
        else:
            assert weighted.shape == (0, stage.n_features) and weighted.nnz == 0
        for i, doc in enumerate(docs[:8]):  # single rows agree with the batch, even empty ones
            row = stage.transform_one(doc)
            np.testing.assert_array_equal(np.sort(row.indices), weighted[i].indices)
            np.testing.assert_allclose(
                row.values[np.argsort(row.indices)], weighted[i].data, rtol=1e-6, atol=1e-7
            )


def _coo_reference(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    X = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=shape)
    X.sum_duplicates()
    return X


@pytest.mark.parametrize(
    "n_rows,n_cols,n",
    [(0, 5, 0), (3, 7, 0), (1, 1, 9), (4, 6, 30), (50, 10_000, 2_000), (6, 2**40, 40),
     (3, 2**62, 20)],
)  # fmt: skip
def test_count_arrays_equal_scipy_coo_construction(n_rows: int, n_cols: int, n: int) -> None:
    rng = np.random.default_rng(n_rows + n)
    rows = rng.integers(0, max(n_rows, 1), n)
    cols = rng.integers(0, min(n_cols, 12), n) * (n_cols // 12 or 1)  # duplicates, big ids
    cols = np.minimum(cols, n_cols - 1)
    data, indices, indptr, row_of = count_arrays(rows, cols, n_rows, n_cols)
    ref = _coo_reference(rows, cols, (n_rows, n_cols))
    for got, want in ((data, ref.data), (indices, ref.indices), (indptr, ref.indptr)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert indices.dtype == (np.int32 if n_cols < 2**31 else np.int64)
    assert indptr[0] == 0 and indptr[-1] == data.size and data.sum() == n
    np.testing.assert_array_equal(row_of, np.repeat(np.arange(n_rows), np.diff(indptr)))
    if data.size:
        keys = row_of.astype(object) * n_cols + indices.astype(object)  # exact, no overflow
        assert all(a < b for a, b in zip(keys[:-1], keys[1:], strict=True))


def test_canonical_csr_fast_and_checked_constructions_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, cols = np.array([2, 0, 2, 0, 2]), np.array([4, 1, 0, 1, 4])
    arrays = count_arrays(rows, cols, 4, 6)[:3]
    fast = canonical_csr(*(a.copy() for a in arrays), (4, 6))
    monkeypatch.setattr(_textops, "_FAST_CSR", None)
    checked = canonical_csr(*(a.copy() for a in arrays), (4, 6))
    assert vars(fast).keys() == vars(checked).keys()
    assert fast.has_canonical_format and checked.has_canonical_format
    np.testing.assert_array_equal(fast.toarray(), checked.toarray())
    np.testing.assert_array_equal(fast.toarray(), _coo_reference(rows, cols, (4, 6)).toarray())
    dense = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_array_equal(fast @ dense, checked @ dense)


def test_fast_csr_is_refused_when_scipy_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The no-check constructor verifies itself and steps aside when scipy's internals change."""
    counter = iter(range(10**6))

    class Serialised(sp.csr_matrix):  # a per-matrix attribute the fast path would not set
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._serial = next(counter)

    monkeypatch.setattr(_textops.sp, "csr_matrix", Serialised)
    assert _textops._fast_csr_factory() is None
    monkeypatch.undo()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TypeError("new scipy")

    monkeypatch.setattr(_textops, "_checked_csr", broken)
    assert _textops._fast_csr_factory() is None


@pytest.mark.parametrize("norm", ["l2", "l1", None])
def test_weigh_csr_matches_tfidf_transformer(norm: str | None) -> None:
    counts = sp.csr_matrix(
        np.array([[0, 2, 0, 1], [0, 0, 0, 0], [3, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    )
    tf = TfidfTransformer(norm=norm, sublinear_tf=True).fit(counts)
    got = weigh_csr(
        counts.copy(), binary=False, sublinear=True, idf=tf.idf_.astype(np.float32), norm=norm
    )
    np.testing.assert_allclose(got.toarray(), tf.transform(counts).toarray(), rtol=1e-6)


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
    stage = _text_stage(vec)
    with pytest.raises(ValueError, match="single string"):
        stage.transform("one document")


_TERM = st.text(alphabet=st.sampled_from(list("ab é日\n\x00\x1f")), max_size=12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(terms=st.lists(_TERM, max_size=60), sort=st.booleans(), long=st.integers(0, 300))
def test_vocabulary_encoding_round_trips(terms: list[str], sort: bool, long: int) -> None:
    """Any term list (unicode, empty terms, separators inside terms, shared prefixes beyond
    the 255 bytes one prefix length holds) decodes to itself."""
    terms = [("x" * long) + t for t in terms] if long % 3 == 0 else terms
    terms = sorted(terms) if sort else terms
    spec, arrays = _textops.encode_terms(terms)
    assert _textops.decode_terms(json.loads(json.dumps(spec)), arrays) == terms
    assert all(np.asarray(a).dtype.kind != "O" for a in arrays.values())


def test_front_coding_is_smaller_after_deflate(emails: Texts) -> None:
    import zlib

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(emails.X_train)
    terms = sorted(vec.vocabulary_)
    spec, arrays = _textops.encode_terms(terms)
    assert spec["front"] is True
    front = sum(len(zlib.compress(np.asarray(a).tobytes(), 6)) for a in arrays.values())
    plain = len(zlib.compress("\n".join(terms).encode("utf-8"), 6))
    assert front < 0.85 * plain, (front, plain)


def test_a_corrupt_front_coding_is_refused() -> None:
    from leanml.errors import CompressionError

    spec, arrays = _textops.encode_terms(["ab", "abc", "b"])
    arrays["terms.prefix"] = np.array([0, 9, 0], dtype=np.uint8)  # past the previous term
    with pytest.raises(CompressionError, match="front coding"):
        _textops.decode_terms(spec, arrays)
