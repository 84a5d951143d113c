"""Flusher, ingest: buffered prediction records into totals, windows, sketches and drift inputs.

Takes a chunk of the intake buffers (at most ``flush_batch_size`` predictions), decides which
predictions are sampled (deterministic in the id, plus low-confidence ones), adds them to their
time windows (counts, latency sketch, confidence/length/OOV samples), to the recent windows,
and hands the sampled ones to :mod:`~leanml.monitor._details`. Runs under the state's lock.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import numpy as np

from leanml._ids import sample_hashes
from leanml._native import take_batches
from leanml.monitor._details import keep_details
from leanml.monitor._state import MonitorState
from leanml.monitor.drift import oov_rates

__all__ = ["drain_errors", "drain_records"]

logger = logging.getLogger("leanml.monitor")
_TWO32 = 4294967296.0


def drain_records(st: MonitorState) -> bool:
    """Ingest up to ``flush_batch_size`` buffered predictions; whether there were any. The
    single records and the batches are ingested as two chunks (an invalid record drops its
    chunk, counted in ``invalid_batches``)."""
    buf, bbuf = st.buf, st.bbuf
    if not (buf or bbuf):
        return False
    limit = st.config.flush_batch_size
    taken = min(len(buf), limit)
    if taken:
        _guarded(st, buf.take, taken)
    if bbuf and taken < limit:
        _guarded(st, partial(take_batches, bbuf), limit - taken)
    return True


def _guarded(st: MonitorState, take: Any, limit: int) -> None:
    """Take a chunk of records as columns, in C (:meth:`leanml._native.SingleBuffer.take` or
    :func:`~leanml._native.take_batches`), and ingest it; a malformed record drops the
    chunk."""
    try:
        cols = take(limit, st.label_index)
        _ingest_columns(st, *cols)
    except (TypeError, ValueError) as exc:
        st.counters["invalid_batches"] += 1
        logger.error("monitor %s: dropped an invalid record chunk: %s", st.name, exc)


def drain_errors(st: MonitorState) -> None:
    """Count the buffered failed predictions in their windows."""
    epop = st.err.popleft
    for _ in range(len(st.err)):
        ts, n = epop()
        st.errors += n
        st.window(ts).errors += n


def _oov_of_counts(tok: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Out-of-vocabulary rate from the model's token counts: NaN for an input without
    tokens, -1 where the model did not count (``tok`` -1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        oov = (tok - known) / tok
    oov[tok == 0] = math.nan
    oov[tok < 0] = -1.0
    return oov


def _ingest_columns(
    st: MonitorState,
    ids: list[Any],
    labels: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
    lengths: np.ndarray | None,
    tok: np.ndarray,
    known: np.ndarray,
    model_s: float,
    counted: bool,
) -> None:
    """A taken chunk (the columns :meth:`~leanml._native.SingleBuffer.take` and
    :func:`~leanml._native.take_batches` return; ``lab`` the label codes) into the windows,
    sketches, drift inputs and detail rows."""
    if not ids:
        return
    new = np.flatnonzero(lab < 0)  # labels not seen before
    if new.size:
        lab[new] = st.label_indices([labels[i] for i in new.tolist()])
    oov_counted = _oov_of_counts(tok, known) if counted else None
    _count_labels(st, lab)
    sampled, reason_low = _sample(st, ids, conf)
    picked = np.flatnonzero(sampled)
    st.budget.credit(model_s)
    oov = _oov(st, inputs, picked, oov_counted)
    _add_to_windows(st, lab, conf, lat, ts, lengths, oov)
    st.lifetime.add_many(lat)
    st.model_s += model_s
    _count_seconds(st, ts)
    st.confidence.update(conf[np.isfinite(conf)])
    st.recent_labels.push(lab)
    if lengths is not None:
        st.recent_lengths.push(lengths[~np.isnan(lengths)])
    if oov is not None:
        st.recent_oov.push(oov[~np.isnan(oov)])
    if picked.size:
        keep_details(st, ids, lab, conf, lat, inputs, ts, picked, reason_low)


def _count_labels(st: MonitorState, lab: np.ndarray) -> None:
    st.total += int(lab.size)
    counts = np.bincount(lab, minlength=len(st.labels))
    if counts.size > st.label_totals.size:
        grown = np.zeros(counts.size, dtype=np.int64)
        grown[: st.label_totals.size] = st.label_totals
        st.label_totals = grown
    st.label_totals[: counts.size] += counts


def _sample(
    st: MonitorState, ids: list[Any], conf: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Which predictions are sampled (deterministic in the id), and which of them only for
    their low confidence (None when ``sample_below_confidence`` is off)."""
    cfg = st.config
    rate = cfg.sampling_rate
    n = len(ids)
    if rate >= 1.0:
        sampled = np.ones(n, dtype=bool)
    elif rate <= 0.0:
        sampled = np.zeros(n, dtype=bool)
    else:
        sampled = sample_hashes(ids) < rate * _TWO32
    if cfg.sample_below_confidence is None:
        return sampled, None
    low = conf < cfg.sample_below_confidence
    reason_low = low & ~sampled
    return sampled | low, reason_low


def _oov(
    st: MonitorState, inputs: list[Any] | None, picked: np.ndarray, counted: np.ndarray | None
) -> np.ndarray | None:
    """OOV rate per prediction: from the model's token counts where it counted them (every
    prediction, no tokenization); else, with an analyzer, of the sampled inputs (at most
    ``max_oov_per_flush``, and as many as the CPU budget of optional work allows); NaN
    elsewhere. The sampling itself never changes."""
    if counted is not None:
        oov = counted
        rest = oov < 0
        if not rest.any():
            return oov
        oov[rest] = math.nan
        picked = picked[rest[picked]]
    elif inputs is None or st.analyzer is None or st.vocabulary is None:
        return None
    else:
        oov = np.full(len(inputs), math.nan)
    if inputs is None or st.analyzer is None or st.vocabulary is None:
        return oov
    cand = [i for i in picked if inputs[i] is not None][: st.config.max_oov_per_flush]
    cand = cand[: st.budget.allowed(len(cand))]
    if cand:
        analyzer, vocabulary = st.analyzer, st.vocabulary
        texts = [inputs[i] for i in cand]
        oov[cand] = st.budget.run(lambda: oov_rates(texts, analyzer, vocabulary), len(cand))
    return oov


def _add_to_windows(
    st: MonitorState,
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    ts: np.ndarray,
    lengths: np.ndarray | None,
    oov: np.ndarray | None,
) -> None:
    """Per-window counters, latency sketches and drift inputs."""
    width = st.config.window_s
    k = len(st.labels)
    starts = np.floor(ts / width) * width
    lo, hi = float(starts.min()), float(starts.max())
    groups: list[tuple[float, Any]] = (
        [(lo, slice(None))] if lo == hi else [(float(s), starts == s) for s in np.unique(starts)]
    )
    det = st.drift_detector
    cmap = None if det is None else det.reference.calibration
    for start, sel in groups:
        w = st.window(start)
        w.add(lab[sel], conf[sel], lat[sel], k, cmap)
        if lengths is not None:
            ln = lengths[sel]
            w.lengths.push(ln[~np.isnan(ln)])
        if oov is not None:
            o = oov[sel]
            w.oov.push(o[~np.isnan(o)])


def _count_seconds(st: MonitorState, ts: np.ndarray) -> None:
    """Predictions per whole second (the newest 120 to 180 seconds are kept)."""
    u, c = np.unique(ts.astype(np.int64), return_counts=True)
    sec = st.seconds
    for s_, c_ in zip(u.tolist(), c.tolist(), strict=True):
        sec[s_] = sec.get(s_, 0) + c_
    if len(sec) > 180:
        for old in sorted(sec)[:-120]:
            del sec[old]
