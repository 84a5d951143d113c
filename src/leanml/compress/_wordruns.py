"""Word tokens found and looked up for a whole batch at once, with numpy (no per-token Python).

scikit-learn's default ``token_pattern``, ``(?u)\\b\\w\\w+\\b``, finds the maximal runs of word
characters (Python's ``\\w``) that are at least two characters long. :class:`WordRunIndex` finds
those runs in a batch of preprocessed documents (decoded, lower-cased and accents stripped as
configured) joined by a newline, and turns each
into its vocabulary id without building a Python string per token:

1. a table marks the word characters (256 entries for an ASCII batch; one per code point,
   built once per process from Python's own ``re``, for any other batch);
2. the runs are where the mark switches on and off;
3. each run gets two 64-bit polynomial hashes of its code points (prefix sums mod 2**64, so
   a run's hash is two look-ups and a multiplication);
4. the first hash is looked up in an open-addressing table of the vocabulary's hashes
   (:class:`IntTable`); a hit counts when the vocabulary token also has the run's length and
   its second hash.

Exactness: the ids equal a ``dict`` lookup of ``re.findall``'s tokens unless an unknown token
has a vocabulary token's length and both its 64-bit hashes (two different odd bases), a
collision no test has met; the tests compare both ways on thousands of real and random
documents, Unicode and lone surrogates included. Two vocabulary tokens sharing a first hash
make the stage keep its ``dict`` (:class:`IntTable` refuses duplicate keys).

Measured on the compact email model (SpamAssassin test e-mails, 1,400 characters on average,
batches of 16, medians of 7 runs on this 2-core machine): tokenization and look-up 71 -> 36 us
a text; the model's whole ``predict_fused`` 124 -> 71 us a text, with the n-gram look-ups
through :class:`IntTable` (they were ``searchsorted`` on the sorted codes).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_TOKEN_PATTERNS", "IntTable", "WordRunIndex"]

#: token patterns that mean "maximal runs of two or more word characters" (Python 3 ``str``
#: patterns are Unicode-aware with or without the ``(?u)`` flag)
DEFAULT_TOKEN_PATTERNS = frozenset({r"(?u)\b\w\w+\b", r"\b\w\w+\b"})

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2**64/phi
_SPREAD = np.uint64(29)
_BASES = (np.uint64(0x5851F42D4C957F2D), np.uint64(0x27BB2EE687B0B0FD))  # odd: invertible
_INVERSES = tuple(np.uint64(pow(int(b), -1, 2**64)) for b in _BASES)
_CHUNK = 1 << 16  # characters hashed per pass: bounds the 4 power tables (512 kB each)

_ASCII_WORD = np.array([re.match(r"\w", chr(i)) is not None for i in range(256)])
_unicode_word: np.ndarray | None = None
_lock = threading.Lock()


def _word_table_unicode() -> np.ndarray:
    """One flag per code point: is it ``\\w`` for Python's ``re`` (built once, ~0.2 s)."""
    global _unicode_word
    if _unicode_word is None:
        with _lock:
            if _unicode_word is None:
                every = "".join(map(chr, range(0x110000)))
                table = np.zeros(0x110000, dtype=bool)
                table[[m.start() for m in re.finditer(r"\w", every)]] = True
                _unicode_word = table
    return _unicode_word


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """``base ** i`` mod 2**64 for i < n (numpy's unsigned products wrap)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


_Tables = tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]
_cached_powers: _Tables | None = None


def _powers_for(n: int) -> _Tables:
    """The powers of both bases and of their inverses for ``n`` positions: tables of
    ``_CHUNK`` positions kept for every batch (a longer single text gets its own)."""
    global _cached_powers

    def tables(size: int) -> _Tables:
        return tuple(_powers(b, size) for b in _BASES), tuple(_powers(b, size) for b in _INVERSES)

    if n > _CHUNK:
        return tables(n)
    if _cached_powers is None or _cached_powers[0][0].size < n:
        _cached_powers = tables(_CHUNK)
    return _cached_powers


def _code_points(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The text's code points (uint8 when ASCII, else uint32) and the word-character table."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8), _ASCII_WORD
    raw = text.encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, dtype=np.uint32), _word_table_unicode()


def _runs(text: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Starts and ends (exclusive) of the word runs of two or more characters in ``text``,
    and each run's two hashes."""
    cp, table = _code_points(text)
    n = cp.size
    marks = np.zeros(n + 2, dtype=np.int8)
    marks[1:-1] = table[cp]
    edges = np.flatnonzero(marks[1:] != marks[:-1])  # alternately: a run starts, it ends
    starts, ends = edges[0::2], edges[1::2]
    long = ends - starts >= 2
    starts, ends = starts[long], ends[long]
    up, down = _powers_for(n)
    wide = cp.astype(np.uint64)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    hashes = []
    for k in range(2):
        np.cumsum(np.multiply(wide, up[k][:n]), out=prefix[1:])
        h = prefix[ends] - prefix[starts]
        h *= down[k][starts]  # shift every run's hash to position 0
        hashes.append(h)
    return starts, ends, (hashes[0], hashes[1])


class IntTable:
    """A map from distinct 64-bit keys to ints in [0, 2**31), looked up an array at a time.

    Open addressing with linear probing, at most a quarter full (48 to 96 bytes a key): a look-up
    is one gather for most keys, where numpy's ``searchsorted`` on a sorted array costs a
    binary search's cache misses per key.
    """

    SEARCH_BELOW = 512

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys).view(np.uint64)
        values = np.asarray(values, dtype=np.int64)
        order = np.argsort(keys)
        self._sorted_keys, self._sorted_values = keys[order], values[order]
        if np.any(self._sorted_keys[1:] == self._sorted_keys[:-1]):
            raise ValueError("IntTable keys must be distinct")
        if values.size and not 0 <= values.min() <= values.max() < 2**31:
            raise ValueError("IntTable values must be in [0, 2**31)")
        bits = max(4, (4 * keys.size - 1).bit_length())  # at most a quarter full
        size = 1 << bits
        self._shift, self._mask = np.uint64(64 - bits), size - 1
        self._keys = np.zeros(size, dtype=np.uint64)
        self._values = np.full(size, -1, dtype=np.int32)  # -1: an empty slot
        home = self._home(keys)
        pending = np.arange(keys.size)
        probes = 0
        while pending.size:  # every pending key tries its next slot; one key takes a free slot
            slot = (home[pending] + probes) & self._mask
            free = self._values[slot] < 0
            taken_slots, first = np.unique(slot[free], return_index=True)
            takers = pending[free][first]
            self._keys[taken_slots] = keys[takers]
            self._values[taken_slots] = values[takers]
            placed = np.zeros(keys.size, dtype=bool)
            placed[takers] = True
            pending = pending[~placed[pending]]
            probes += 1
        self._probes = max(probes, 1)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        mixed = keys ^ (keys >> _SPREAD)  # the high bits into the low ones, then spread back
        mixed *= _MIX
        mixed >>= self._shift
        return mixed.astype(np.intp)

    def get(self, keys: np.ndarray, default: int) -> np.ndarray:
        """The value of each key (int64), ``default`` for keys not in the table.

        Fewer than ``SEARCH_BELOW`` keys are binary-searched in a sorted copy instead: the
        probing loop's fixed cost per round would dominate."""
        keys = np.ascontiguousarray(keys).view(np.uint64)
        if not self._sorted_keys.size:
            return np.full(keys.size, default, dtype=np.int64)
        if keys.size < self.SEARCH_BELOW:
            pos = self._sorted_keys.searchsorted(keys)
            pos[pos == self._sorted_keys.size] = 0
            found = self._sorted_keys.take(pos) == keys
            return np.where(found, self._sorted_values.take(pos), default)
        slot = self._home(keys)
        values = self._values.take(slot)
        found = self._keys.take(slot) == keys
        out = np.where(found & (values >= 0), values, default)
        # keys whose home holds another key probe on, until their key or an empty slot
        pending = np.flatnonzero(~found & (values >= 0))
        probe = 1
        while pending.size and probe < self._probes:
            s = (slot[pending] + probe) & self._mask
            values = self._values.take(s)
            found = self._keys.take(s) == keys[pending]
            out[pending[found]] = values[found]
            pending = pending[~found & (values >= 0)]
            probe += 1
        return out


class WordRunIndex:
    """Vocabulary ids of the default-pattern word tokens of a batch of documents."""

    def __init__(self, tokens: Sequence[str], unknown: int) -> None:
        self.unknown = unknown
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=offsets[1:])
        starts, ends, (h1, h2) = _runs("\n".join(tokens))
        # a token can be found only if it is one whole run of its own
        of = np.searchsorted(offsets, starts, side="right") - 1
        whole = (starts == offsets[of]) & (ends - starts == lengths[of])
        ids = of[whole]
        self._table = IntTable(h1[whole], ids)  # ValueError if two tokens share a hash
        self._length = np.zeros(unknown + 1, dtype=np.int64)  # 0 for unknown: never a run's
        self._length[ids] = lengths[ids]
        self._second = np.zeros(unknown + 1, dtype=np.uint64)
        self._second[ids] = h2[whole]

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, n_tokens)``: each text's token ids followed by one ``unknown`` id (so no
        n-gram spans two texts), and each text's number of tokens."""
        parts, counts = [], []
        for chunk in _chunks(texts):
            ids, n_tokens = self._encode_chunk(chunk)
            parts.append(ids)
            counts.append(n_tokens)
        if len(parts) == 1:
            return parts[0], counts[0]
        return np.concatenate(parts), np.concatenate(counts)

    def _encode_chunk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        starts, ends, (h1, h2) = _runs("\n".join(texts))
        ids = self._table.get(h1, self.unknown)
        wrong = (self._length.take(ids) != ends - starts) | (self._second.take(ids) != h2)
        ids[wrong] = self.unknown
        next_start = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
        doc = np.searchsorted(next_start, starts, side="right")
        out = np.full(ids.size + len(texts), self.unknown, dtype=np.int64)
        out[np.arange(ids.size) + doc] = ids  # text i's tokens, then its separator
        return out, np.bincount(doc, minlength=len(texts))


def _chunks(texts: Sequence[str]) -> list[Sequence[str]]:
    """Consecutive groups of texts of at most ``_CHUNK`` characters (a longer text alone)."""
    total = sum(map(len, texts)) + len(texts)
    if total <= _CHUNK:
        return [texts]
    out: list[Sequence[str]] = []
    start, size = 0, 0
    for i, t in enumerate(texts):
        if size and size + len(t) + 1 > _CHUNK:
            out.append(texts[start:i])
            start, size = i, 0
        size += len(t) + 1
    out.append(texts[start:])
    return out
