"""Text operations shared by the vectorizer stages: scikit-learn's analyzers re-implemented,
count matrices built canonical with numpy, tf / idf / norm weighting of count matrices and rows,
and the vocabulary blob encoding.

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
    "build_preprocessor",
    "canonical_csr",
    "count_arrays",
    "decode_terms",
    "decompose",
    "encode_terms",
    "rebase_codes",
    "terms_of",
    "weigh_csr",
    "weigh_data",
    "weigh_row",
]

_WHITE_SPACES = re.compile(r"\s\s+")


def build_preprocessor(cfg: dict[str, Any]) -> Callable[[Any], str]:
    """A function mapping one document to the text the analyzer tokenizes: bytes decoded,
    lower-cased and accents stripped as configured (scikit-learn's preprocessing)."""
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

    return pre


def build_analyzer(cfg: dict[str, Any]) -> Callable[[Any], list[str]]:
    """A function mapping one document to its list of features, as scikit-learn's analyzer."""
    pre = build_preprocessor(cfg)
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


_INT32_MAX = int(np.iinfo(np.int32).max)
_NO_ROWS = np.zeros(0, dtype=np.int64)


def count_arrays(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Canonical CSR arrays ``(data, indices, indptr, row_of)`` counting ``(rows[i], cols[i])``.

    The same matrix as ``sp.csr_matrix((ones, (rows, cols)), shape)`` + ``sum_duplicates()``:
    float32 counts, indices sorted within each row without duplicates, and scipy's index dtype
    (int32 unless the shape or the number of occurrences exceeds it). ``row_of`` is the row
    of each stored entry (int64), for the row-wise weighting that usually follows.
    """
    n = int(cols.size)
    idx_dtype = np.int32 if max(n, n_rows, n_cols) <= _INT32_MAX else np.int64
    if n == 0:
        return (
            np.zeros(0, dtype=np.float32),
            np.zeros(0, dtype=idx_dtype),
            np.zeros(n_rows + 1, dtype=idx_dtype),
            np.zeros(0, dtype=np.int64),
        )
    if n_rows * n_cols <= 2**63 - 1:  # one int64 key per (row, column), sorted once
        key = np.multiply(rows, n_cols, dtype=np.int64)
        key += cols
        key.sort()
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        starts = first.nonzero()[0]
        row_of, col_of = np.divmod(key[starts], n_cols)
    else:  # (row, column) pairs beyond int64: sort them lexicographically
        order = np.lexsort((cols, rows))
        r, c = rows[order].astype(np.int64), cols[order].astype(np.int64)
        first = np.empty(n, dtype=bool)
        first[0] = True
        first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        starts = first.nonzero()[0]
        row_of, col_of = r[starts], c[starts]
    counts = np.empty(starts.size, dtype=np.float32)
    counts[:-1] = starts[1:] - starts[:-1]
    counts[-1] = n - starts[-1]
    indptr = np.zeros(n_rows + 1, dtype=idx_dtype)
    np.add.accumulate(np.bincount(row_of, minlength=n_rows), out=indptr[1:])
    return counts, col_of.astype(idx_dtype), indptr, row_of


def weigh_data(
    data: np.ndarray,
    indices: np.ndarray,
    rows: np.ndarray,
    n_rows: int,
    *,
    binary: bool,
    sublinear: bool,
    idf: np.ndarray | None,
    norm: str | None,
) -> np.ndarray:
    """tf transforms, idf and row normalisation of CSR values, in place.

    ``rows`` is the row of each value (only read when ``norm`` is set); the row norms are
    accumulated in float64 (``bincount``) and applied in float32.
    """
    if binary:
        data[:] = 1.0
    elif sublinear:
        np.log(data, out=data)
        data += 1.0
    if idf is not None:
        data *= idf.take(indices)
    if norm is not None and data.size:
        if norm == "l2":
            sums = np.sqrt(np.bincount(rows, weights=data * data, minlength=n_rows))
        else:
            sums = np.bincount(rows, weights=np.abs(data), minlength=n_rows)
        sums[sums == 0] = 1.0
        data /= sums.astype(np.float32).take(rows)
    return data


def weigh_csr(
    X: sp.csr_matrix,
    *,
    binary: bool,
    sublinear: bool,
    idf: np.ndarray | None,
    norm: str | None,
) -> sp.csr_matrix:
    """Apply tf transforms, idf and row normalisation to a CSR count matrix, in place."""
    n_rows, indptr = X.shape[0], X.indptr
    rows = _NO_ROWS
    if norm is not None and X.data.size:
        rows = np.repeat(np.arange(n_rows), indptr[1:] - indptr[:-1])
    weigh_data(
        X.data, X.indices, rows, n_rows, binary=binary, sublinear=sublinear, idf=idf, norm=norm
    )
    return X


def _checked_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    X = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    X.sum_duplicates()  # checks the format and records it as canonical
    return X


def _fast_csr_factory() -> Callable[..., sp.csr_matrix] | None:
    """A no-check csr_matrix constructor for canonical arrays, or None when it is not safe.

    Why (measured on a 2-core machine, scipy 1.17.1, compact email model): for a batch of 2
    short texts, ``predict_proba`` took ~260 us, ~145 us of it in scipy's COO -> CSR
    construction + ``sum_duplicates``. The counts are now built canonical with numpy
    (:func:`count_arrays`), but the checked constructor ``csr_matrix((data, indices, indptr),
    shape)`` still costs ~20-40 us (index dtype probing, ``check_format``), while filling a
    bare ``csr_matrix.__new__`` takes ~1.5 us; ``predict_proba`` is now ~125 us.

    It sets what a checked, canonical matrix carries in the installed scipy (1.17: ``data``,
    ``indices``, ``indptr``, ``_shape``, ``maxprint``, the sorted/canonical flags). As that is
    scipy-internal, it is verified here once (~3 ms at import) against the checked constructor
    (attributes, flags, ``toarray``, products, ``sum_duplicates``, ``check_format``); on any
    difference or error this returns None and :func:`canonical_csr` uses the checked one.
    """
    try:
        cls = sp.csr_matrix
        new = cls.__new__
        cases: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]] = [
            (np.array([1, 2, 1], np.float32), np.array([0, 3, 1], np.int32),
             np.array([0, 2, 2, 3], np.int32), (3, 5)),
            (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int32), (0, 4)),
            (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(3, np.int32), (2, 3)),
            (np.array([3, 1], np.float32), np.array([2, 6], np.int64),
             np.array([0, 0, 2], np.int64), (2, 7)),
        ]  # fmt: skip
        per_matrix = ("data", "indices", "indptr", "_shape")
        templates = []
        for data, indices, indptr, shape in cases:
            attrs = vars(_checked_csr(data.copy(), indices.copy(), indptr.copy(), shape))
            if not all(k in attrs for k in per_matrix):
                return None
            templates.append({k: v for k, v in attrs.items() if k not in per_matrix})
        static = templates[0]  # the attributes every canonical matrix shares (flags, maxprint)
        if any(t != static for t in templates):
            return None

        def fast(
            data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
        ) -> sp.csr_matrix:
            X = new(cls)
            d = X.__dict__
            d.update(static)
            d["_shape"] = shape
            d["data"], d["indices"], d["indptr"] = data, indices, indptr
            return X

        for data, indices, indptr, shape in cases:
            ref = _checked_csr(data.copy(), indices.copy(), indptr.copy(), shape)
            arrays = (data.copy(), indices.copy(), indptr.copy())
            got = fast(*arrays, shape)
            dense = np.arange(shape[1] * 2, dtype=np.float32).reshape(shape[1], 2) + 1
            ok = (
                type(got) is type(ref)
                and vars(got).keys() == vars(ref).keys()
                and got.shape == ref.shape
                and got.dtype == ref.dtype
                and got.nnz == ref.nnz
                and got.has_canonical_format
                and got.has_sorted_indices
                and np.array_equal(got.toarray(), ref.toarray())
                and np.array_equal(np.asarray(got @ dense), np.asarray(ref @ dense))
                and np.array_equal((got @ got.T).toarray(), (ref @ ref.T).toarray())
            )
            got.sum_duplicates()  # a no-op on canonical arrays; int64 indices stay int64
            got.check_format(full_check=True)
            for k, given in zip(("data", "indices", "indptr"), arrays, strict=True):
                kept = getattr(got, k)
                ok = ok and kept.dtype == given.dtype and np.array_equal(kept, given)
                ok = ok and np.array_equal(kept, getattr(ref, k))
            if not ok:
                return None
        return fast
    except Exception:
        return None


_FAST_CSR = _fast_csr_factory()


def canonical_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """A csr_matrix of arrays already in canonical form (sorted, no duplicates), not copied."""
    if _FAST_CSR is not None:
        return _FAST_CSR(data, indices, indptr, shape)
    return _checked_csr(data, indices, indptr, shape)


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


def _shared_prefixes(encoded: list[bytes]) -> np.ndarray:
    """Per term, the bytes it shares with the start of the previous term (at most 255)."""
    out = np.zeros(len(encoded), dtype=np.uint8)
    for i in range(1, len(encoded)):
        a, b = encoded[i - 1], encoded[i]
        n = min(len(a), len(b), 255)
        k = 0
        while k < n and a[k] == b[k]:
            k += 1
        out[i] = k
    return out


def encode_terms(terms: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The vocabulary as bytes: front-coded when a one-byte separator is free.

    Front coding (``"front": true``): per term the number of leading bytes it shares with the
    previous term (``terms.prefix``, uint8) and the rest of it followed by the separator
    (``terms.fc``); sorted vocabularies share long prefixes, so this stores about a third less
    after deflate. Exact. Without a free separator: the bytes and their lengths.
    """
    encoded = [t.encode("utf-8") for t in terms]
    for sep in ("\n", "\x00", "\x1f"):
        if not any(sep in t for t in terms):
            prefix = _shared_prefixes(encoded)
            tail = sep.encode("ascii")
            blob = b"".join(e[k:] + tail for e, k in zip(encoded, prefix.tolist(), strict=True))
            return {"sep": sep, "front": True, "n_terms": len(terms)}, {
                "terms.fc": np.frombuffer(blob, dtype=np.uint8),
                "terms.prefix": prefix,
            }
    lengths = np.array([len(b) for b in encoded], dtype=np.uint32)
    return {"sep": None, "n_terms": len(terms)}, {
        "terms": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "terms.lengths": lengths,
    }


def _front_decode(blob: np.ndarray, prefix: np.ndarray, sep: str) -> bytes:
    """The separator-joined vocabulary bytes from its front coding (vectorised).

    Every output byte is either a literal (the next byte of ``blob``) or a copy of the byte at
    the same offset of the previous term; one vectorised pass per offset up to the longest
    shared prefix (at most 255), over the terms that share that far, resolves the copies.
    """
    blob = np.asarray(blob, dtype=np.uint8)
    prefix = np.asarray(prefix, dtype=np.int64)
    ends = np.flatnonzero(blob == ord(sep))
    n = len(prefix)
    if len(ends) != n:
        raise CompressionError(f"Vocabulary holds {len(ends)} terms, spec says {n}.")
    tail = np.diff(ends, prepend=-1)  # literal bytes of each term, its separator included
    length = prefix + tail
    start = np.cumsum(length) - length
    if n and (prefix[0] != 0 or np.any(prefix[1:] > length[:-1] - 1)):
        raise CompressionError("Vocabulary front coding refers past the previous term.")
    out = np.zeros(int(length.sum()), dtype=np.uint8)
    literal_start = np.cumsum(tail) - tail
    out[np.arange(blob.size) + np.repeat(start + prefix - literal_start, tail)] = blob
    # Offset by offset, the terms that copy it: each run of consecutive such terms copies from
    # the term before the run, which stores that byte itself.
    copying = np.flatnonzero(prefix > 0)
    o = 0
    while copying.size:
        run_start = np.ones(copying.size, dtype=bool)
        run_start[1:] = np.diff(copying) != 1
        first = np.maximum.accumulate(np.where(run_start, np.arange(copying.size), 0))
        out[start[copying] + o] = out[start[copying[first] - 1] + o]
        o += 1
        copying = copying[prefix[copying] > o]
    return out.tobytes()


def decode_terms(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[str]:
    n = int(spec["n_terms"])
    if n == 0:
        return []
    if spec.get("front"):
        raw = _front_decode(arrays["terms.fc"], arrays["terms.prefix"], spec["sep"])
        terms = raw.decode("utf-8").split(spec["sep"])[:-1]
    elif spec["sep"] is not None:
        blob = np.asarray(arrays["terms"]).tobytes()
        terms = blob.decode("utf-8").split(spec["sep"])
    else:
        blob = np.asarray(arrays["terms"]).tobytes()
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


def rebase_codes(codes: np.ndarray, n: int, base: int, new_base: int) -> np.ndarray:
    """n-digit codes in ``base`` rewritten in ``new_base`` (same digits, same order)."""
    out = np.zeros(len(codes), dtype=np.int64)
    for j in range(n):
        out *= new_base
        out += (codes // base ** (n - 1 - j)) % base
    return out


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
