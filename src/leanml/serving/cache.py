"""PredictionCache: a bounded LRU of finished predictions for one model.

Contract:

* key = SHA-256 of the normalized input's UTF-8 bytes (1.6 us for a 2.8 kB email with the CPU's
  SHA extensions, faster than blake2b's 2.3 us here); the cache belongs to one
  (model version, variant) *generation*: :meth:`PredictionCache.invalidate` (called on a variant
  switch or a reload) drops every entry and starts a new generation, so a prediction of one
  version or variant is never served for another;
* bounded by ``max_entries`` and by ``max_bytes`` (an estimate of each entry's footprint: key,
  label, probability row and ~200 bytes of container overhead); least recently used entries are
  evicted first and counted;
* entries older than ``ttl_s`` are never returned (dropped when met, counted as ``expired``);
* cost: a hit is one hash of the input, one dict lookup and one
  ``move_to_end``; no lock (the service calls it from its event-loop thread only).

Normalization must not change what the model predicts; the default ``"none"`` keys on the exact
text. ``"strip"`` drops surrounding whitespace and ``"nfc"`` applies Unicode NFC as well: enable
them only for models whose vectorizer is insensitive to those differences.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from leanml._validation import check_choice, check_number

__all__ = ["NORMALIZERS", "CacheEntry", "PredictionCache"]

_OVERHEAD = 200


def _none(text: str) -> str:
    return text


def _strip(text: str) -> str:
    return text.strip()


def _nfc(text: str) -> str:
    text = text.strip()
    return text if text.isascii() else unicodedata.normalize("NFC", text)


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": _none, "strip": _strip, "nfc": _nfc}

#: (label, confidence, probability row or None, inserted at, bytes)
CacheEntry = tuple[Any, float, Any, float, int]


class PredictionCache:
    """Bounded LRU + TTL cache of predictions (see module docstring)."""

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl_s: float = 3600.0,
        normalize: str = "none",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        owner = "PredictionCache"
        check_number(max_entries, "max_entries", owner, low=0, integer=True)
        check_number(max_bytes, "max_bytes", owner, low=0, integer=True)
        check_number(ttl_s, "ttl_s", owner, low=0, low_open=True)
        check_choice(normalize, "normalize", owner, tuple(NORMALIZERS))
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self.normalize = normalize
        self._norm = NORMALIZERS[normalize]
        self._clock = clock
        self._data: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.bytes = 0
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0
        self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def key(self, text: str) -> bytes:
        return hashlib.sha256(self._norm(text).encode("utf-8", "surrogatepass")).digest()

    def get(self, key: bytes) -> CacheEntry | None:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        if self._clock() - entry[3] > self.ttl_s:
            del self._data[key]
            self.bytes -= entry[4]
            self.expired += 1
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry

    def get_all(self, keys: list[bytes]) -> list[CacheEntry] | None:
        """Every key's entry when all are present and fresh (counted as hits), else None.

        None changes no counter and no recency: the caller then looks the keys up one by one
        with :meth:`get`, which counts them.
        """
        data = self._data
        entries = []
        now = self._clock()
        for key in keys:
            entry = data.get(key)
            if entry is None or now - entry[3] > self.ttl_s:
                return None
            entries.append(entry)
        for key in keys:
            data.move_to_end(key)
        self.hits += len(keys)
        return entries

    def put(self, key: bytes, label: Any, confidence: float, proba: Any) -> None:
        if not self.enabled:
            return
        size = _OVERHEAD + len(key) + len(str(label)) + int(getattr(proba, "nbytes", 0))
        if size > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[4]
        self._data[key] = (label, float(confidence), proba, self._clock(), size)
        self.bytes += size
        data = self._data
        while len(data) > self.max_entries or self.bytes > self.max_bytes:
            _, ev = data.popitem(last=False)
            self.bytes -= ev[4]
            self.evictions += 1

    def invalidate(self) -> int:
        """Drop every entry (variant or version changed); returns how many were dropped."""
        n = len(self._data)
        self._data.clear()
        self.bytes = 0
        self.generation += 1
        self.invalidations += 1
        return n

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "enabled": self.enabled,
            "entries": len(self._data),
            "bytes": self.bytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "ttl_s": self.ttl_s,
            "normalize": self.normalize,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / lookups if lookups else None,
            "evictions": self.evictions,
            "expired": self.expired,
            "invalidations": self.invalidations,
            "generation": self.generation,
        }
