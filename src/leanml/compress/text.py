"""Text vectorizers: CountVectorizer, TfidfVectorizer, TfidfTransformer, HashingVectorizer.

The compact vectorizer keeps only what ``transform`` needs: the analyzer's settings, the terms
(sorted, stored as one UTF-8 blob; looked up through a dict built at load), and idf in fp32 or
fp16. ``stop_words_`` (the terms dropped at fit time) is not stored. The analyzer is a
re-implementation of scikit-learn's ``word``, ``char`` and ``char_wb`` analyzers (same
``token_pattern``, lowercasing, accent stripping, stop words and n-grams) and produces the same
features; custom ``analyzer``/``tokenizer``/``preprocessor`` callables are not converted (the step
passes through).

Error contract: term counts are exact; tf-idf values are computed in float32 (relative error
<= 1e-6) with idf in ``aux_precision`` (fp16: relative error <= 2**-11). When pruning removes
terms from the vocabulary, the row norm (``norm='l2'``/``'l1'``) is taken over the remaining
terms only; the accuracy guard measures the effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import (
    CountVectorizer,
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)

from leanml.compress._base import (
    ConvertContext,
    SparseRow,
    Stage,
    TokenCounts,
    register_node,
    register_strategy,
)
from leanml.compress._quant import decode_idf, encode_idf, pack_uints, unpack_uints
from leanml.compress._textops import (
    IdfHolder,
    analyzer_config,
    build_analyzer,
    build_preprocessor,
    canonical_csr,
    count_arrays,
    decode_terms,
    encode_terms,
    rebase_codes,
    terms_of,
    weigh_csr,
    weigh_data,
    weigh_row,
)
from leanml.compress._wordruns import DEFAULT_TOKEN_PATTERNS, IntTable, WordRunIndex
from leanml.errors import CompressionError, ParameterError

__all__ = ["HashingStage", "TextStage", "TfidfStage", "build_analyzer"]

#: batches of at least this many characters are tokenized by :class:`WordRunIndex`; below it
#: ``re.findall`` and a dict are faster (numpy's fixed cost, ~30 us a batch, dominates)
_RUNS_MIN_CHARS = 1200


def _chars(docs: list[Any]) -> int:
    """Characters (or bytes) of the text documents in ``docs``."""
    return sum(len(d) for d in docs if isinstance(d, (str, bytes)))


_Counts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]


@register_node
class TextStage(IdfHolder, Stage):
    """CountVectorizer / TfidfVectorizer with a compact vocabulary; output float32 CSR.

    Two layouts. *terms*: the terms themselves (column order of the original), looked up as
    strings. *tokens* (word analyzer, n <= 3): a sorted table of the distinct tokens, and each
    n-gram feature as the tuple of its token ids; features are ordered unigrams, bigrams,
    trigrams, each sorted by their id tuples. A document is tokenized, each token looked up
    once, and its n-grams found by vectorised binary search: no n-gram strings are built.
    :func:`leanml.compress.composition.to_compact` switches to *tokens* when the consumer of
    the features can permute its input columns.
    """

    kind = "text"

    def __init__(
        self,
        cfg: dict[str, Any],
        terms: list[str] | None,
        *,
        idf: np.ndarray | None,
        binary: bool,
        sublinear_tf: bool,
        norm: str | None,
        aux_precision: str = "fp32",
        tokens: list[str] | None = None,
        grams: list[np.ndarray] | None = None,
        decomposition: tuple[list[str], np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.cfg = cfg
        self.terms = terms
        #: (sorted tokens, per-term code in base len(tokens), per-term n) aligned with terms
        self.decomposition = decomposition
        self.tokens = tokens
        self._set_idf(idf)
        self.binary, self.sublinear_tf, self.norm = binary, sublinear_tf, norm
        self.aux_precision = aux_precision
        self._analyze = build_analyzer(cfg)
        self._tokenize = build_analyzer({**cfg, "ngram_range": [1, 1]})
        self._preprocess = build_preprocessor(cfg)
        self._build_index(grams)

    # -- lookup structures ------------------------------------------------------------------
    def _build_index(self, grams: list[np.ndarray] | None = None) -> None:
        """Lookup structures from ``grams`` (tokens layout: per n, sorted codes in base T).

        The n >= 2 tables are kept in base T + 1 and the unknown token (also put between the
        documents of a batch) has id T, so no n-gram holding it matches: no validity mask.
        """
        self._index: dict[str, int] | None = None
        self._word_runs: WordRunIndex | None | Literal[False] = None  # False: not applicable
        self._gram_tables: dict[int, IntTable] = {}
        if self.tokens is None:
            return
        T = self._T = max(len(self.tokens), 1)
        if (T + 1) ** self.cfg["ngram_range"][1] > 2**63 - 1:
            raise CompressionError(f"{T} tokens are too many for the token layout.")
        grams = grams or []
        self._n_grams = len(grams)
        self._tok2feat = np.full(T + 1, -1, dtype=np.int64)  # last slot: unknown token
        self._tables: list[tuple[int, np.ndarray, int]] = []
        offset = 0
        min_n = self.cfg["ngram_range"][0]
        for n, codes in enumerate(grams, start=min_n):
            codes = np.asarray(codes, dtype=np.int64)
            if n == 1:
                self._tok2feat[codes] = np.arange(len(codes))
            else:
                self._tables.append((n, rebase_codes(codes, n, T, T + 1), offset))
            offset += len(codes)
        self._n_features = offset
        self._lookup()

    @property
    def grams(self) -> list[np.ndarray] | None:
        """Tokens layout: per n (from ``ngram_range[0]``), the sorted codes in base T."""
        if self.tokens is None:
            return None
        T = self._T
        out = [rebase_codes(codes, n, T + 1, T) for n, codes, _ in self._tables]
        if self._n_grams and self.cfg["ngram_range"][0] == 1:
            out.insert(0, np.flatnonzero(self._tok2feat[:T] >= 0))
        return out

    def _lookup(self) -> Any:
        """``dict.get`` of the term (or token) -> id index, built on first use."""
        if self._index is None:
            keys = self.tokens if self.tokens is not None else (self.terms or [])
            self._index = dict(zip(keys, range(len(keys)), strict=True))
            self._get = self._index.get
        return self._get

    def _gram_table(self, n: int, codes: np.ndarray) -> IntTable:
        """The n-gram codes' positions as a hash table (built on first use)."""
        table = self._gram_tables.get(n)
        if table is None:
            table = self._gram_tables[n] = IntTable(codes, np.arange(len(codes)))
        return table

    def _runs_index(self) -> WordRunIndex | None:
        """The batch tokenizer (:mod:`._wordruns`) when the analyzer is scikit-learn's default
        word tokenizer without stop words (tokens layout), built on first use; else None."""
        if self._word_runs is None:
            self._word_runs = False
            cfg = self.cfg
            if (
                self.tokens is not None
                and cfg["analyzer"] == "word"
                and cfg["token_pattern"] in DEFAULT_TOKEN_PATTERNS
                and cfg["stop_words"] is None
            ):
                try:
                    self._word_runs = WordRunIndex(self.tokens, self._T)
                except ValueError:  # two vocabulary tokens share a 64-bit hash: keep the dict
                    pass
        return self._word_runs if self._word_runs is not False else None

    def _token_ids(self, docs: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Tokens layout: each document's token ids (unknown: T) followed by one T, so no
        n-gram spans two documents, and each document's token count + 1.

        Batches of at least ``_RUNS_MIN_CHARS`` characters go through :class:`WordRunIndex`
        (numpy over the whole batch); shorter ones, where numpy's fixed cost per call
        dominates, through ``re.findall`` and a dict look-up per token."""
        docs = docs if isinstance(docs, list) else list(docs)
        index = self._runs_index()
        # the size test reads the raw texts: a short batch is preprocessed once, by findall's
        if index is not None and _chars(docs) >= _RUNS_MIN_CHARS:
            ids, n_tokens = index.encode(list(map(self._preprocess, docs)))
            return ids, n_tokens + 1
        tokenize, get, unknown = self._tokenize, self._lookup(), self._T
        out: list[int] = []
        extend, separate = out.extend, out.append
        lengths: list[int] = []
        append = lengths.append
        for doc in docs:
            toks = tokenize(doc)
            extend(map(get, toks, repeat(unknown)))
            separate(unknown)
            append(len(toks) + 1)
        return np.array(out, dtype=np.int64), np.asarray(lengths, dtype=np.int64)

    @property
    def n_features(self) -> int:
        return self._n_features if self.tokens is not None else len(self.terms or [])

    def token_mode_possible(self) -> bool:
        if self.tokens is not None:
            return True
        if self.decomposition is None:
            return False
        max_n = self.cfg["ngram_range"][1]
        return (len(self.decomposition[0]) + 1) ** max_n < 2**62

    def to_token_mode(self) -> np.ndarray:
        """Switch to the *tokens* layout; return ``perm`` (new column i = old column perm[i])."""
        if self.decomposition is None:
            raise CompressionError("This vectorizer cannot use the token layout.")
        tokens_all, codes, lengths = self.decomposition
        Ta = max(len(tokens_all), 1)
        min_n, max_n = self.cfg["ngram_range"]
        digits: dict[int, list[np.ndarray]] = {}
        cols_of: dict[int, np.ndarray] = {}
        used = np.zeros(Ta, dtype=bool)
        for n in range(min_n, max_n + 1):
            cols = np.flatnonzero(lengths == n)
            c = codes[cols]
            digits[n] = [(c // Ta ** (n - 1 - j)) % Ta for j in range(n)]
            for d in digits[n]:
                used[d] = True
            cols_of[n] = cols
        new_id = np.cumsum(used) - 1
        tokens = [tokens_all[i] for i in np.flatnonzero(used)]
        T = max(len(tokens), 1)
        perm_parts, grams = [], []
        for n in range(min_n, max_n + 1):
            code = np.zeros(len(cols_of[n]), dtype=np.int64)
            for d in digits[n]:
                code = code * T + new_id[d]
            order = np.argsort(code, kind="stable")
            perm_parts.append(cols_of[n][order])
            grams.append(code[order])
        perm = np.concatenate(perm_parts) if perm_parts else np.zeros(0, dtype=np.int64)
        self._take_idf(perm)
        self.tokens, self.terms, self.decomposition = tokens, None, None
        self._build_index(grams)
        return perm

    def _weigh(self) -> dict[str, Any]:
        return {
            "binary": self.binary,
            "sublinear": self.sublinear_tf,
            "idf": self.idf,
            "norm": self.norm,
        }

    # -- counting ---------------------------------------------------------------------------
    def _ngram_features(self, ids: np.ndarray, doc_of: np.ndarray | None) -> tuple[Any, Any]:
        """Feature ids (and their row ids) of the n-grams in a token-id sequence.

        Unknown tokens have id T; the documents of a batch are separated by one id T.
        """
        feats, rows = [], []
        if self.cfg["ngram_range"][0] == 1:
            f = self._tok2feat[ids]
            hit = f >= 0
            feats.append(f[hit])
            if doc_of is not None:
                rows.append(doc_of[hit])
        L, T1 = len(ids), self._T + 1
        for n, codes, offset in self._tables:
            m = L - n + 1
            if m <= 0 or not len(codes):
                continue
            code = ids[:m] * T1
            code += ids[1 : 1 + m]
            for j in range(2, n):
                code *= T1
                code += ids[j : j + m]
            pos = self._gram_table(n, codes).get(code, -1)
            hit = pos >= 0
            feats.append(pos[hit] + offset)
            if doc_of is not None:
                rows.append(doc_of[:m][hit])
        return feats, rows

    def counts(self, docs: Iterable[Any]) -> sp.csr_matrix:
        """Raw term counts (float32 CSR), identical to scikit-learn's ``CountVectorizer``."""
        data, indices, indptr, _, shape = self._count_arrays(docs)
        return canonical_csr(data, indices, indptr, shape)

    def _count_arrays(self, docs: Iterable[Any]) -> _Counts:
        """Canonical CSR arrays of the counts, the row of each entry, and the shape."""
        return self._count_arrays_counted(docs, False)[0]

    def _count_arrays_counted(
        self, docs: Iterable[Any], counted: bool
    ) -> tuple[_Counts, TokenCounts | None]:
        """:meth:`_count_arrays` and, when ``counted``, each document's (tokens, known tokens):
        its word tokens and how many of them are unigram features (None for a char analyzer,
        or word n-grams without unigrams in the *terms* layout)."""
        if self.tokens is not None:
            return self._count_arrays_tokens(docs, counted)
        analyze, get = self._analyze, self._lookup()
        ids: list[int] = []
        extend = ids.extend
        lengths: list[int] = []
        append = lengths.append
        for doc in docs:
            terms = analyze(doc)
            extend(map(get, terms, repeat(-1)))
            append(len(terms))
        n_docs = len(lengths)
        cols = np.array(ids, dtype=np.int64)
        rows = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        keep = cols >= 0
        shape = (n_docs, self.n_features)
        out = (*count_arrays(rows[keep], cols[keep], *shape), shape)
        if not counted or not self._words_first():
            return out, None
        n_terms = np.asarray(lengths, dtype=np.int64)
        n_tokens = _unigram_count(n_terms, self.cfg["ngram_range"][1])
        starts = np.cumsum(n_terms) - n_terms
        position = np.arange(len(cols), dtype=np.int64) - np.repeat(starts, n_terms)
        unigram = keep & (position < np.repeat(n_tokens, n_terms))
        return out, (n_tokens, np.bincount(rows[unigram], minlength=n_docs))

    def _words_first(self) -> bool:
        """Whether the analyzer's terms start with the document's word tokens (terms layout)."""
        return self.cfg["analyzer"] == "word" and self.cfg["ngram_range"][0] == 1

    def _count_arrays_tokens(
        self, docs: Iterable[Any], counted: bool
    ) -> tuple[_Counts, TokenCounts | None]:
        id_arr, lengths = self._token_ids(docs)
        n_docs = len(lengths)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        feats, rows = self._ngram_features(id_arr, doc_of)
        f = np.concatenate(feats) if feats else np.zeros(0, dtype=np.int64)
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        shape = (n_docs, self.n_features)
        out = (*count_arrays(r, f, *shape), shape)
        if not counted:
            return out, None
        n_tokens = lengths - 1  # less the separator
        known = np.bincount(doc_of[self._tok2feat[id_arr] >= 0], minlength=n_docs)
        return out, (n_tokens, known)

    def transform(self, X: Any) -> sp.csr_matrix:
        return self.transform_counted(X, False)[0]

    def transform_counted(
        self, X: Any, counted: bool = True
    ) -> tuple[sp.csr_matrix, TokenCounts | None]:
        if isinstance(X, str):
            raise ParameterError(
                "The 'X' parameter of CompactModel.predict must be an iterable of documents, "
                "got a single string instead; use predict_one(text)."
            )
        (data, indices, indptr, rows, shape), counts = self._count_arrays_counted(X, counted)
        weigh_data(data, indices, rows, shape[0], **self._weigh())
        return canonical_csr(data, indices, indptr, shape), counts

    def transform_one(self, x: Any) -> SparseRow:
        return self.transform_one_counted(x, False)[0]

    def transform_one_counted(
        self, x: Any, counted: bool = True
    ) -> tuple[SparseRow, tuple[int, int] | None]:
        counts: tuple[int, int] | None = None
        if self.tokens is not None:
            ids = self._token_ids([x])[0][:-1]  # less the separator
            feats, _ = self._ngram_features(ids, None)
            found = feats[0] if len(feats) == 1 else np.concatenate([np.zeros(0, np.int64), *feats])
            # with unigram features, feats[0] holds the known tokens' features, one per token
            if counted:
                known = len(feats[0]) if feats and self.cfg["ngram_range"][0] == 1 else 0
                counts = (len(ids), known)
        else:
            terms = self._analyze(x)
            found = np.fromiter(map(self._lookup(), terms, repeat(-1)), np.int64, len(terms))
            if counted and self._words_first():
                n_tok = _unigram_count_one(len(terms), self.cfg["ngram_range"][1])
                counts = (n_tok, int(np.count_nonzero(found[:n_tok] >= 0)))
            found = found[found >= 0]
        idx, n = np.unique(found, return_counts=True)
        values = weigh_row(n.astype(np.float32), idx, **self._weigh())
        return SparseRow(idx, values, self.n_features), counts

    # -- pruning cooperation ------------------------------------------------------------------
    def can_select_outputs(self) -> bool:
        return self.tokens is None

    def select_outputs(self, mask: np.ndarray) -> None:
        keep = np.flatnonzero(mask)
        terms = self.terms or []
        self.terms = [terms[i] for i in keep]
        self._take_idf(keep)
        if self.decomposition is not None:
            tokens, codes, lengths = self.decomposition
            self.decomposition = (tokens, codes[keep], lengths[keep])
        self._build_index()

    def output_scale(self) -> np.ndarray | None:
        return self.idf

    # -- persistence --------------------------------------------------------------------------
    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        spec: dict[str, Any] = {
            "cfg": self.cfg,
            "binary": self.binary,
            "sublinear_tf": self.sublinear_tf,
            "norm": self.norm,
            "idf": None,
        }
        if self.tokens is not None:
            spec["layout"] = "tokens"
            spec["tokens"], arrays = encode_terms(self.tokens)
            spec["grams"] = []
            T = max(len(self.tokens), 1)
            for g, codes in enumerate(self.grams or []):
                n = self.cfg["ngram_range"][0] + g
                parts = [(codes // T ** (n - 1 - j)) % T for j in range(n)]
                gspec = []
                for j, part in enumerate(parts):
                    pspec, planes = pack_uints(part, delta=(j == 0))
                    arrays[f"g{g}.{j}"] = planes
                    gspec.append(pspec)
                spec["grams"].append(gspec)
        else:
            terms = self.terms or []
            spec["layout"] = "terms"
            spec["terms"], arrays = encode_terms(terms)
        if self._idf64 is not None:
            spec["idf"], idf_arrays = encode_idf(self._idf64, self.aux_precision)
            arrays.update(idf_arrays)
        return spec, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> TextStage:
        idf = None if spec["idf"] is None else decode_idf(spec["idf"], arrays)
        common: dict[str, Any] = {
            "idf": idf,
            "binary": spec["binary"],
            "sublinear_tf": spec["sublinear_tf"],
            "norm": spec["norm"],
        }
        if spec["layout"] == "tokens":
            tokens = decode_terms(spec["tokens"], arrays)
            T = max(len(tokens), 1)
            grams = []
            for g, gspec in enumerate(spec["grams"]):
                code = np.zeros(int(gspec[0]["n"]), dtype=np.int64)
                for j, pspec in enumerate(gspec):
                    code = code * T + unpack_uints(pspec, arrays[f"g{g}.{j}"])
                grams.append(code)
            return cls(spec["cfg"], None, tokens=tokens, grams=grams, **common)
        return cls(spec["cfg"], decode_terms(spec["terms"], arrays), **common)

    def size_components(self) -> dict[str, str]:
        return {"terms": "vocabulary", "g": "vocabulary", "idf": "idf"}


@register_node
class TfidfStage(IdfHolder, Stage):
    """TfidfTransformer: tf transforms, idf and row norm on a count matrix (elementwise)."""

    kind = "tfidf"
    elementwise = True

    def __init__(
        self,
        idf: np.ndarray | None,
        *,
        sublinear_tf: bool,
        norm: str | None,
        aux_precision: str = "fp32",
    ) -> None:
        self._set_idf(idf)
        self.sublinear_tf, self.norm, self.aux_precision = sublinear_tf, norm, aux_precision

    def transform(self, X: Any) -> sp.csr_matrix:
        X = sp.csr_matrix(X, dtype=np.float32, copy=True)
        X.sum_duplicates()
        return weigh_csr(X, binary=False, sublinear=self.sublinear_tf, idf=self.idf, norm=self.norm)

    def transform_one(self, x: Any) -> Any:
        if not isinstance(x, SparseRow):
            return super().transform_one(x)
        values = weigh_row(
            x.values, x.indices, binary=False, sublinear=self.sublinear_tf, idf=self.idf,
            norm=self.norm,
        )  # fmt: skip
        return SparseRow(x.indices, values, x.size)

    def select_inputs(self, mask: np.ndarray) -> None:
        self._take_idf(mask)

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        self._take_idf(perm)

    def output_scale(self) -> np.ndarray | None:
        return self.idf

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        spec: dict[str, Any] = {"sublinear_tf": self.sublinear_tf, "norm": self.norm, "idf": None}
        arrays: dict[str, np.ndarray] = {}
        if self._idf64 is not None:
            spec["idf"], arrays = encode_idf(self._idf64, self.aux_precision)
        return spec, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> TfidfStage:
        idf = None if spec["idf"] is None else decode_idf(spec["idf"], arrays)
        return cls(idf, sublinear_tf=spec["sublinear_tf"], norm=spec["norm"])

    def size_components(self) -> dict[str, str]:
        return {"idf": "idf"}


def _unigram_count(n_terms: np.ndarray, max_n: int) -> np.ndarray:
    """Word tokens per document from its number of terms under ``ngram_range=(1, max_n)``:
    ``T + (T - 1) + ... `` for the n-grams that fit, inverted."""
    n_terms = np.asarray(n_terms, dtype=np.int64)
    full = max_n * (max_n + 1) // 2  # the number of terms of a document of max_n tokens
    long = (n_terms + max_n * (max_n - 1) // 2) // max_n
    # fewer tokens than max_n: T (T + 1) / 2 terms
    short = np.floor((np.sqrt(8.0 * n_terms + 1.0) - 1.0) / 2.0 + 1e-9).astype(np.int64)
    return np.where(n_terms >= full, long, short)


def _unigram_count_one(n_terms: int, max_n: int) -> int:
    """:func:`_unigram_count` of one document (no array)."""
    if n_terms >= max_n * (max_n + 1) // 2:
        return (n_terms + max_n * (max_n - 1) // 2) // max_n
    t = 0
    while (t + 1) * (t + 2) // 2 <= n_terms:
        t += 1
    return t


_HASHING_PARAMS = ("n_features", "binary", "norm", "alternate_sign", "dtype")


@register_node
class HashingStage(Stage):
    """HashingVectorizer: stateless, stored as its parameters (no vocabulary at all)."""

    kind = "hashing"

    def __init__(self, cfg: dict[str, Any], params: dict[str, Any]) -> None:
        self.cfg, self.params = cfg, params
        kwargs = {k: v for k, v in cfg.items()}
        kwargs["ngram_range"] = tuple(kwargs["ngram_range"])
        self._vec = HashingVectorizer(**kwargs, **{**params, "dtype": np.float32})

    def transform(self, X: Any) -> sp.csr_matrix:
        return sp.csr_matrix(self._vec.transform(X), dtype=np.float32)

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"cfg": self.cfg, "params": self.params}, {}

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> HashingStage:
        return cls(spec["cfg"], spec["params"])


@register_strategy(CountVectorizer)
def _convert_vectorizer(vec: Any, ctx: ConvertContext) -> TextStage:
    """Count/Tfidf vectorizer -> :class:`TextStage` (terms in column order, sorted when fitted)."""
    cfg = analyzer_config(vec)
    terms, decomp = terms_of(vec, cfg)
    idf = None
    sublinear, norm = False, None
    if isinstance(vec, TfidfVectorizer):
        sublinear, norm = bool(vec.sublinear_tf), vec.norm
        idf = np.asarray(vec.idf_, dtype=np.float64) if vec.use_idf else None
    return TextStage(
        cfg,
        list(terms),
        idf=idf,
        binary=bool(vec.binary),
        sublinear_tf=sublinear,
        norm=norm,
        aux_precision=ctx.recipe.aux_precision,
        decomposition=decomp,
    )


@register_strategy(TfidfTransformer)
def _convert_tfidf_transformer(tf: Any, ctx: ConvertContext) -> TfidfStage:
    idf = np.asarray(tf.idf_, dtype=np.float64) if tf.use_idf else None
    return TfidfStage(
        idf,
        sublinear_tf=bool(tf.sublinear_tf),
        norm=tf.norm,
        aux_precision=ctx.recipe.aux_precision,
    )


@register_strategy(HashingVectorizer)
def _convert_hashing(vec: Any, ctx: ConvertContext) -> HashingStage:
    cfg = analyzer_config(vec)
    params = {k: getattr(vec, k) for k in _HASHING_PARAMS if k != "dtype"}
    params["n_features"] = int(params["n_features"])
    return HashingStage(cfg, params)
