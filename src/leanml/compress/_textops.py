"""Text operations shared by the vectorizer stages: scikit-learn's analyzers re-implemented,
tf / idf / norm weighting of count matrices and rows, and the vocabulary blob encoding.

The analyzers reproduce ``CountVectorizer.build_analyzer()`` for ``analyzer`` in ``word``,
``char``, ``char_wb``: bytes are decoded with ``encoding``/``decode_error``, the text is
lower-cased (``lowercase``), then accents stripped (``strip_accents``), tokens found with
``token_pattern`` (``re.findall``), stop words removed, and n-grams joined with one space.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import strip_accents_ascii, strip_accents_unicode

from leanml.compress._base import Unsupported
from leanml.errors import CompressionError

__all__ = [
    "IdfHolder",
    "analyzer_config",
    "build_analyzer",
    "decode_terms",
    "decompose",
    "encode_terms",
    "terms_of",
    "weigh_csr",
    "weigh_row",
]

_WHITE_SPACES = re.compile(r"\s\s+")


def build_analyzer(cfg: dict[str, Any]) -> Callable[[Any], list[str]]:
    """A function mapping one document to its list of features, as scikit-learn's analyzer."""
    encoding, errors = cfg["encoding"], cfg["decode_error"]
    accent = {"ascii": strip_accents_ascii, "unicode": strip_accents_unicode}.get(
        cfg["strip_accents"] or ""
    )
    lower = cfg["lowercase"]

    def pre(doc: Any) -> str:
        if not isinstance(doc, str):
            if isinstance(doc, bytes):
                doc = doc.decode(encoding, errors)
            else:
                raise CompressionError(f"Expected a text document, got {type(doc).__name__}.")
        if lower:
            doc = doc.lower()
        return accent(doc) if accent is not None else doc

    min_n, max_n = cfg["ngram_range"]
    kind = cfg["analyzer"]
    if kind == "char":
        return lambda doc: _char_ngrams(pre(doc), min_n, max_n)
    if kind == "char_wb":
        return lambda doc: _char_wb_ngrams(pre(doc), min_n, max_n)
    findall = re.compile(cfg["token_pattern"]).findall
    stop = frozenset(cfg["stop_words"]) if cfg["stop_words"] is not None else None
    join = " ".join

    def analyze(doc: Any) -> list[str]:
        tokens = findall(pre(doc))
        if stop is not None:
            tokens = [t for t in tokens if t not in stop]
        if max_n == 1:
            return tokens
        out = list(tokens) if min_n == 1 else []
        for n in range(max(min_n, 2), max_n + 1):
            if n > len(tokens):
                break
            out.extend(map(join, zip(*(tokens[i:] for i in range(n)), strict=False)))
        return out

    return analyze


def _char_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    text = _WHITE_SPACES.sub(" ", text)
    n_chars = len(text)
    out = list(text) if min_n == 1 else []
    for n in range(max(min_n, 2), min(max_n + 1, n_chars + 1)):
        out.extend(text[i : i + n] for i in range(n_chars - n + 1))
    return out


def _char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    text = _WHITE_SPACES.sub(" ", text)
    out: list[str] = []
    append = out.append
    for word in text.split():
        w = " " + word + " "
        w_len = len(w)
        for n in range(min_n, max_n + 1):
            offset = 0
            append(w[offset : offset + n])
            while offset + n < w_len:
                offset += 1
                append(w[offset : offset + n])
            if offset == 0:
                break
    return out


def weigh_csr(
    X: sp.csr_matrix,
    *,
    binary: bool,
    sublinear: bool,
    idf: np.ndarray | None,
    norm: str | None,
) -> sp.csr_matrix:
    """Apply tf transforms, idf and row normalisation to a CSR count matrix, in place."""
    data = X.data
    if binary:
        data[:] = 1.0
    elif sublinear:
        np.log(data, out=data)
        data += 1.0
    if idf is not None:
        data *= idf[X.indices]
    if norm is not None and data.size:
        n_rows = X.shape[0]
        rows = np.repeat(np.arange(n_rows), np.diff(X.indptr))
        if norm == "l2":
            sums = np.sqrt(np.bincount(rows, weights=data * data, minlength=n_rows))
        else:
            sums = np.bincount(rows, weights=np.abs(data), minlength=n_rows)
        sums[sums == 0] = 1.0
        data /= sums[rows].astype(np.float32)
    return X


def weigh_row(
    values: np.ndarray,
    indices: np.ndarray,
    *,
    binary: bool,
    sublinear: bool,
    idf: np.ndarray | None,
    norm: str | None,
) -> np.ndarray:
    if binary:
        values = np.ones_like(values)
    elif sublinear:
        values = np.log(values)
        values += 1.0
    if idf is not None:
        values = values * idf[indices]
    if norm is not None and values.size:
        total = float(np.sqrt(values @ values)) if norm == "l2" else float(np.abs(values).sum())
        if total > 0:
            values = values / np.float32(total)
    return values


def encode_terms(terms: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    for sep in ("\n", "\x00", "\x1f"):
        if not any(sep in t for t in terms):
            blob = sep.join(terms).encode("utf-8")
            return {"sep": sep, "n_terms": len(terms)}, {
                "terms": np.frombuffer(blob, dtype=np.uint8)
            }
    encoded = [t.encode("utf-8") for t in terms]
    lengths = np.array([len(b) for b in encoded], dtype=np.uint32)
    return {"sep": None, "n_terms": len(terms)}, {
        "terms": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "terms.lengths": lengths,
    }


def decode_terms(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[str]:
    n = int(spec["n_terms"])
    if n == 0:
        return []
    blob = np.asarray(arrays["terms"]).tobytes()
    if spec["sep"] is not None:
        terms = blob.decode("utf-8").split(spec["sep"])
    else:
        ends = np.cumsum(np.asarray(arrays["terms.lengths"], dtype=np.int64))
        starts = ends - np.asarray(arrays["terms.lengths"], dtype=np.int64)
        terms = [blob[s:e].decode("utf-8") for s, e in zip(starts, ends, strict=True)]
    if len(terms) != n:
        raise CompressionError(f"Vocabulary holds {len(terms)} terms, spec says {n}.")
    return terms


def analyzer_config(vec: Any) -> dict[str, Any]:
    if vec.input != "content":
        raise Unsupported(f"input={vec.input!r} (only 'content' is converted)")
    for attr in ("preprocessor", "tokenizer"):
        if getattr(vec, attr) is not None:
            raise Unsupported(f"a custom {attr} cannot be stored without pickle")
    if callable(vec.analyzer) or vec.analyzer not in ("word", "char", "char_wb"):
        raise Unsupported("a custom analyzer cannot be stored without pickle")
    if vec.strip_accents not in (None, "ascii", "unicode"):
        raise Unsupported("a custom strip_accents callable cannot be stored without pickle")
    stop = vec.get_stop_words() if vec.analyzer == "word" else None
    return {
        "analyzer": vec.analyzer,
        "lowercase": bool(vec.lowercase),
        "strip_accents": vec.strip_accents,
        "token_pattern": vec.token_pattern,
        "ngram_range": [int(vec.ngram_range[0]), int(vec.ngram_range[1])],
        "stop_words": sorted(stop) if stop is not None else None,
        "encoding": vec.encoding,
        "decode_error": vec.decode_error,
    }


class IdfHolder:
    """idf kept in float64 (exact, for storage) and float32 (for the arithmetic)."""

    idf: np.ndarray | None
    _idf64: np.ndarray | None

    def _set_idf(self, idf: np.ndarray | None) -> None:
        self._idf64 = None if idf is None else np.asarray(idf, dtype=np.float64)
        self.idf = None if self._idf64 is None else self._idf64.astype(np.float32)

    def _take_idf(self, index: np.ndarray) -> None:
        if self._idf64 is not None:
            self._set_idf(self._idf64[index])


_TERMS_CACHE: dict[int, tuple[Any, list[str], Any]] = {}


def decompose(terms: list[str], ngram_range: list[int]) -> Any:
    """(sorted tokens, code per term, n per term), or None when a term does not split cleanly."""
    min_n, max_n = ngram_range
    if max_n > 3:
        return None
    pieces = [t.split(" ") for t in terms]
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    if len(pieces) and (lengths.min() < min_n or lengths.max() > max_n):
        return None
    if any("" in p for p in pieces):
        return None  # a token containing a space
    tokens = sorted({w for p in pieces for w in p})
    tid = {t: i for i, t in enumerate(tokens)}
    T = max(len(tokens), 1)
    if (T + 1) ** max_n >= 2**62:
        return None
    codes = np.zeros(len(pieces), dtype=np.int64)
    for n in range(min_n, max_n + 1):
        cols = np.flatnonzero(lengths == n)
        code = np.zeros(len(cols), dtype=np.int64)
        for j in range(n):
            code = code * T + np.array([tid[pieces[c][j]] for c in cols], dtype=np.int64)
        codes[cols] = code
    return tokens, codes, lengths


def terms_of(vec: Any, cfg: dict[str, Any]) -> tuple[list[str], Any]:
    """Terms in column order and their decomposition, cached per fitted vocabulary."""
    vocab = vec.vocabulary_
    cached = _TERMS_CACHE.get(id(vec))
    if cached is not None and cached[0] is vocab:
        return cached[1], cached[2]
    terms = [""] * len(vocab)
    for term, j in vocab.items():
        terms[j] = term
    decomp = decompose(terms, cfg["ngram_range"]) if cfg["analyzer"] == "word" else None
    if len(_TERMS_CACHE) >= 4:
        _TERMS_CACHE.pop(next(iter(_TERMS_CACHE)))
    _TERMS_CACHE[id(vec)] = (vocab, terms, decomp)
    return terms, decomp
