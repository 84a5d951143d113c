"""Flusher, details: the rows of sampled predictions kept for the store (and their input hash).

The sampled predictions of a flusher step become one chunk of columns
(:class:`~leanml.monitor._blocks.Columns`, stored as a block): each one's id, time, identity,
label, confidence and latency, the input text as ``store_inputs`` says (``"text"``: as sent;
``"redacted"``: with e-mail addresses, URLs, phone-like numbers and long digit runs masked, see
:mod:`~leanml.monitor._redact`; ``"hash"`` and ``"none"``: no text), the SHA-256 of the original
text (every mode but ``"none"``), and why it was sampled (``rate`` or ``low_confidence``). The
queue is bounded by ``detail_buffer_size`` (``drops.detail_buffer``). Runs under the state's lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml._native import (
    STORE_HASH,
    STORE_NONE,
    STORE_REDACTED,
    STORE_TEXT,
    detail_fields,
)
from leanml.monitor._blocks import Columns
from leanml.monitor._state import MonitorState

__all__ = ["keep_details"]

_MODES = {"text": STORE_TEXT, "redacted": STORE_REDACTED, "hash": STORE_HASH, "none": STORE_NONE}


def keep_details(
    st: MonitorState,
    ids: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
    kept: np.ndarray,
    low_only: np.ndarray | None,
) -> None:
    """Queue the detail rows of the sampled predictions: ``kept`` their positions in the
    chunk's columns (``lab``, ``conf``, ``lat``, ``ts``), ``ids``, ``inputs`` and ``low_only``
    (kept for their low confidence only) aligned with it; as many as the queue has room for."""
    cfg = st.config
    details = st.details
    room = cfg.detail_buffer_size - len(details)
    st.sampled += int(kept.size)
    if kept.size > room:
        st.drops["detail_buffer"] += int(kept.size - max(room, 0))
        kept = kept[: max(room, 0)]
    n = int(kept.size)
    if not n:
        return
    names = [str(x) for x in st.labels]
    pids, stored, hashes = _fields(st, ids, inputs, n, _MODES[cfg.store_inputs])
    if low_only is None:
        reasons = ["rate"] * n
    else:
        reasons = ["low_confidence" if x else "rate" for x in low_only[:n].tolist()]
    body = [  # the order of _blocks.BODY_COLUMNS; the numbers stay arrays (no float objects)
        pids,
        ts[kept],
        list(map(names.__getitem__, lab[kept].tolist())),
        conf[kept],
        lat[kept],
        stored,
        hashes,
        reasons,
    ]
    details.append(Columns((st.name, st.version, st.variant, st.process_id), body))


#: sampled rows per :func:`detail_fields` call: ~0.3-0.5 ms of an e-mail's redaction and hash
#: each, with a chance to pause between them (:mod:`~leanml.monitor._pace`)
_SLICE = 64


def _fields(
    st: MonitorState, ids: list[Any], inputs: list[Any] | None, n: int, mode: int
) -> tuple[list[Any], list[Any], list[Any]]:
    """:func:`detail_fields` of the first ``n`` rows, in slices of ``_SLICE``."""
    if n <= _SLICE:
        return detail_fields(ids, inputs, list(range(n)), mode)
    pids: list[Any] = []
    stored: list[Any] = []
    hashes: list[Any] = []
    for lo in range(0, n, _SLICE):
        st.pace()
        p, s, h = detail_fields(ids, inputs, list(range(lo, min(n, lo + _SLICE))), mode)
        pids += p
        stored += s
        hashes += h
    return pids, stored, hashes
