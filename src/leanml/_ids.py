"""The deterministic sampling decision of a prediction id and the input hash (ground floor).

Ids themselves are minted and verified by :mod:`leanml.groundtruth.ids`.

Sampling is deterministic in the id: :func:`sample_hash` maps an id to 32 bits (CRC-32 of its
UTF-8 form for strings, the value itself for ints, then the murmur3 finalizer so consecutive ids
spread evenly), and an id is sampled at rate ``r`` when ``hash < r * 2**32``. Any process can
therefore tell whether an id was sampled, and raising the rate keeps every id sampled before.

:func:`input_hash` is the SHA-256 (hex) of a text in UTF-8: what the store keeps of an input when
it does not keep the text.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Hashable, Sequence
from typing import cast

import numpy as np

from leanml._native import sample_hashes_of_str

__all__ = ["input_hash", "is_sampled", "sample_hash", "sample_hashes"]

_M = 0xFFFFFFFF
_C1, _C2 = 0x85EBCA6B, 0xC2B2AE35  # murmur3's 32-bit finalizer (sample_hash: the same, per id)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.uint64)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(_C1)) & np.uint64(_M)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(_C2)) & np.uint64(_M)
    h ^= h >> np.uint64(16)
    return h


def _raw(pid: Hashable) -> int:
    if isinstance(pid, str):
        return zlib.crc32(pid.encode())
    if isinstance(pid, bytes):
        return zlib.crc32(pid)
    if isinstance(pid, int | np.integer):
        return int(pid) & _M ^ (int(pid) >> 32) & _M
    return zlib.crc32(str(pid).encode())


def sample_hashes(ids: Sequence[Hashable]) -> np.ndarray:
    """32-bit sampling hashes of many ids (uint64 array with values < 2**32)."""
    if type(ids) is list:
        fast = sample_hashes_of_str(ids)  # C: every id a str (else None)
        if fast is not None:
            return fast
    if ids and all(type(i) is str for i in ids[:1]):
        try:
            strs = cast(Sequence[str], ids)
            raw = np.fromiter(map(zlib.crc32, map(str.encode, strs)), np.uint64, len(ids))
        except TypeError:  # mixed types
            raw = np.fromiter(map(_raw, ids), np.uint64, len(ids))
    else:
        raw = np.fromiter(map(_raw, ids), np.uint64, len(ids))
    return _fmix32(raw)


def sample_hash(pid: Hashable) -> int:
    """The 32-bit sampling hash of one id (pure Python: ~10x faster than a 1-element array)."""
    h = _raw(pid)
    h ^= h >> 16
    h = (h * _C1) & _M
    h ^= h >> 13
    h = (h * _C2) & _M
    return h ^ (h >> 16)


def is_sampled(pid: Hashable, rate: float) -> bool:
    """Whether ``pid`` is sampled at ``rate`` (the same answer in every process)."""
    return sample_hash(pid) < rate * 4294967296.0


#: hashlib releases the GIL while hashing 2048 bytes or more: on the flusher thread that means
#: handing the GIL to the event loop and back per long text, so it is fed in smaller pieces
_HASH_PIECE = 2047


def input_hash(text: str) -> str:
    """SHA-256 (hex) of ``text`` in UTF-8."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= _HASH_PIECE:
        return hashlib.sha256(data).hexdigest()
    view = memoryview(data)
    h = hashlib.sha256()
    for i in range(0, len(data), _HASH_PIECE):
        h.update(view[i : i + _HASH_PIECE])
    return h.hexdigest()
