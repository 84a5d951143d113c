"""Flusher, details: the rows of sampled predictions kept for the store (and their input hash).

A sampled prediction becomes one row in :data:`~leanml.monitor.store.PREDICTION_COLUMNS` order:
its id, time, identity, label, confidence and latency, the input text as ``store_inputs`` says
(``"text"``: as sent; ``"redacted"``: with e-mail addresses, URLs, phone-like numbers and long
digit runs masked, see :mod:`~leanml.monitor._redact`; ``"hash"`` and ``"none"``: no text), the
SHA-256 of the original text (every mode but ``"none"``), and why it was sampled (``rate`` or
``low_confidence``). The queue is bounded by ``detail_buffer_size`` (``drops.detail_buffer``).
Runs under the state's lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml._ids import input_hash
from leanml.monitor._redact import redact
from leanml.monitor._state import MonitorState

__all__ = ["keep_details"]


def keep_details(
    st: MonitorState,
    ids: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
    picked: np.ndarray,
    reason_low: np.ndarray | None,
) -> None:
    """Queue the detail rows of the ``picked`` positions (as many as the queue has room for)."""
    cfg = st.config
    details = st.details
    room = cfg.detail_buffer_size - len(details)
    st.sampled += int(picked.size)
    if picked.size > room:
        st.drops["detail_buffer"] += int(picked.size - max(room, 0))
        picked = picked[: max(room, 0)]
    names = [str(x) for x in st.labels]
    mode = cfg.store_inputs
    model, version, variant, proc = st.name, st.version, st.variant, st.process_id
    labs, cs, ls, tss = (
        lab[picked].tolist(),
        conf[picked].tolist(),
        lat[picked].tolist(),
        ts[picked].tolist(),
    )
    low = reason_low.tolist() if reason_low is not None else None
    append = details.append
    for j, i in enumerate(picked.tolist()):
        text = inputs[i] if inputs is not None else None
        append(
            (  # the order of store.PREDICTION_COLUMNS
                str(ids[i]),
                tss[j],
                model,
                version,
                variant,
                proc,
                names[labs[j]],
                cs[j],
                ls[j],
                _stored_text(text, mode),
                input_hash(text) if text is not None and mode != "none" else None,
                "low_confidence" if low is not None and low[i] else "rate",
            )
        )


def _stored_text(text: Any, mode: str) -> str | None:
    """What the row keeps of the input text under ``store_inputs=mode``."""
    if text is None or mode in ("hash", "none"):
        return None
    return redact(str(text)) if mode == "redacted" else text
