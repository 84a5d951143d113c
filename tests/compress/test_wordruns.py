"""The batch tokenizer: the same ids as ``re.findall`` + a dict, on real and random text."""

from __future__ import annotations

import re
from itertools import repeat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from leanml.compress import _wordruns, text
from leanml.compress._wordruns import IntTable, WordRunIndex

from .conftest import Texts

FINDALL = re.compile(r"(?u)\b\w\w+\b").findall

# ASCII word and non-word characters, letters that change length when lower-cased, digits
# of other scripts, CJK, combining marks (not \w in Python), an emoji, a lone surrogate
ALPHABET = "abcxyzAB09_ -.,'\n\té ßİΩж中文٣\u0301\u200d😀\ud800"


def _reference(vocab: list[str], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What ``TextStage`` did before: findall, then a dict look-up per token."""
    get = {t: i for i, t in enumerate(vocab)}.get
    unknown = max(len(vocab), 1)
    ids: list[int] = []
    counts = []
    for t in texts:
        toks = FINDALL(t)
        ids.extend(map(get, toks, repeat(unknown)))
        ids.append(unknown)
        counts.append(len(toks))
    return np.array(ids, dtype=np.int64), np.array(counts, dtype=np.int64)


def _check(vocab: list[str], texts: list[str]) -> None:
    ids, counts = WordRunIndex(vocab, max(len(vocab), 1)).encode(texts)
    want_ids, want_counts = _reference(vocab, texts)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(counts, want_counts)


def test_real_emails_match_findall_and_a_dict(emails: Texts) -> None:
    vocab = sorted(TfidfVectorizer(min_df=2).fit(emails.X_train).vocabulary_)
    texts = [t.lower() for t in emails.X_test]
    assert any(not t.isascii() for t in texts) and any(t.isascii() for t in texts)
    for size in (1, 3, 16, 64, len(texts)):  # ASCII-only and mixed batches
        for s in range(0, len(texts), size):
            _check(vocab, texts[s : s + size])


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=ALPHABET, max_size=80), max_size=8),
    extra=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=6), max_size=10),
    take=st.integers(0, 30),
)
def test_random_unicode_text_matches_findall_and_a_dict(
    texts: list[str], extra: list[str], take: int
) -> None:
    # a vocabulary holding some of the texts' own tokens (hits), and odd strings that are no
    # whole run (" ab", "a", "x-y", ...) and so can never be found
    found = sorted({tok for t in texts for tok in FINDALL(t)})
    vocab = sorted(set(found[:take]) | set(extra))
    _check(vocab, texts)


def test_long_batches_are_cut_into_chunks(monkeypatch: pytest.MonkeyPatch, emails: Texts) -> None:
    vocab = sorted(TfidfVectorizer().fit(emails.X_train[:200]).vocabulary_)
    texts = [t.lower() for t in emails.X_test[:30]]
    monkeypatch.setattr(_wordruns, "_CHUNK", 700)  # shorter than some texts: those go alone
    assert len(_wordruns._chunks(texts)) > 5
    assert max(map(len, texts)) > 700
    _check(vocab, texts)


def test_empty_inputs() -> None:
    _check([], ["", "ab cd"])
    _check(["ab"], [])
    _check(["ab"], ["", "a", "ab"])


@pytest.mark.parametrize("n_keys", [0, 1, 5, 1_000, 50_000])
def test_int_table_agrees_with_a_dict(n_keys: int) -> None:
    rng = np.random.default_rng(n_keys)
    keys = np.unique(rng.integers(0, 2**63, n_keys, dtype=np.int64))
    values = rng.permutation(keys.size)
    table = IntTable(keys, values)
    want = dict(zip(keys.tolist(), values.tolist(), strict=True))
    for n_queries in (0, 3, IntTable.SEARCH_BELOW - 1, IntTable.SEARCH_BELOW, 20_000):
        present = rng.choice(keys, min(n_queries // 2, keys.size)) if keys.size else keys
        queries = np.concatenate(
            [present, rng.integers(0, 2**63, n_queries - present.size, dtype=np.int64)]
        )
        got = table.get(queries, -7)
        assert got.tolist() == [want.get(q, -7) for q in queries.tolist()]


def test_int_table_refuses_duplicate_keys_and_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="distinct"):
        IntTable(np.array([3, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        IntTable(np.array([3]), np.array([2**31]))


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 3)])
def test_text_stage_paths_agree(
    monkeypatch: pytest.MonkeyPatch, emails: Texts, ngram_range: tuple[int, int]
) -> None:
    """The stage's counts and token counts are the same through the batch tokenizer and
    through findall, in batches and one text at a time."""
    from .test_text import _text_stage

    stage = _text_stage(TfidfVectorizer(ngram_range=ngram_range, min_df=2).fit(emails.X_train))
    stage.to_token_mode()
    assert stage._runs_index() is not None
    docs = emails.X_test[:60] + ["", "Ab", "İstanbul İSTANBUL straße"]
    out = {}
    for name, threshold in (("runs", 0), ("findall", 10**12)):
        monkeypatch.setattr(text, "_RUNS_MIN_CHARS", threshold)
        X, counts = stage.transform_counted(docs, True)
        ones = [stage.transform_one_counted(d, True) for d in docs]
        out[name] = (X, counts, ones)
    (Xa, ca, oa), (Xb, cb, ob) = out["runs"], out["findall"]
    assert (Xa != Xb).nnz == 0
    if ca is None:
        assert cb is None
    else:
        for a, b in zip(ca, cb, strict=True):
            np.testing.assert_array_equal(a, b)
    for (row_a, n_a), (row_b, n_b) in zip(oa, ob, strict=True):
        np.testing.assert_array_equal(row_a.indices, row_b.indices)
        np.testing.assert_array_equal(row_a.values, row_b.values)
        assert n_a == n_b


def test_stop_words_and_custom_patterns_keep_findall(emails: Texts) -> None:
    from .test_text import _text_stage

    for params in ({"stop_words": "english"}, {"token_pattern": r"(?u)\b\w+\b"}):
        stage = _text_stage(TfidfVectorizer(**params).fit(emails.X_train[:300]))
        stage.to_token_mode()
        assert stage._runs_index() is None


def test_a_first_hash_hit_alone_is_no_match() -> None:
    """The length and the second hash must agree too (a collision of the first, forced)."""
    index = WordRunIndex(["hello", "world"], 2)

    class EveryRunIsToken0:
        def get(self, keys: np.ndarray, default: int) -> np.ndarray:
            return np.zeros(keys.size, dtype=np.int64)

    index._table = EveryRunIsToken0()  # type: ignore[assignment]
    ids, counts = index.encode(["hello world hellp hello2 hi"])
    assert ids.tolist() == [0, 2, 2, 2, 2, 2]
    assert counts.tolist() == [5]
