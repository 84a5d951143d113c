"""Flusher, ingest: buffered prediction records into totals, windows, sketches and drift inputs.

Takes a chunk of the intake buffers (at most ``flush_batch_size`` predictions) as columns, the
sampled predictions (deterministic in the id, plus low-confidence ones) picked while it is taken
(:class:`leanml._native.Sampler`), adds them to their time windows (counts, latency sketch,
confidence/length/OOV samples) and to the recent windows, and hands the sampled ones to
:mod:`~leanml.monitor._details`. Runs under the state's lock.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any, NamedTuple, overload

import numpy as np

from leanml._ids import sample_hash
from leanml._native import Sampler, take_batches
from leanml.monitor._details import keep_details
from leanml.monitor._state import MonitorState
from leanml.monitor.drift import oov_rates

__all__ = ["drain_errors", "drain_records"]

logger = logging.getLogger("leanml.monitor")


def drain_records(st: MonitorState) -> bool:
    """Ingest up to ``flush_batch_size`` buffered predictions; whether there were any. The
    single records and the batches are ingested as two chunks (an invalid record drops its
    chunk, counted in ``invalid_batches``)."""
    buf, bbuf = st.buf, st.bbuf
    if not (buf or bbuf):
        return False
    cfg = st.config
    limit = cfg.flush_batch_size
    sampler = Sampler(cfg.sampling_rate, cfg.sample_below_confidence, sample_hash)
    taken = min(len(buf), limit)
    if taken:
        _guarded(st, partial(buf.take, taken, st.label_index, sampler))
    if bbuf and taken < limit:
        _guarded(st, partial(take_batches, bbuf, limit - taken, st.label_index, sampler))
    return True


def _guarded(st: MonitorState, take: Any) -> None:
    """Take a chunk of records as columns, in C (:meth:`leanml._native.SingleBuffer.take` or
    :func:`~leanml._native.take_batches`, which also pick the sampled ones), and ingest it; a
    malformed record drops the chunk."""
    try:
        columns = take()
        st.pace()
        _ingest_columns(st, *columns)
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
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    ts: np.ndarray,
    lengths: np.ndarray | None,
    tok: np.ndarray,
    known: np.ndarray,
    model_s: float,
    counted: bool,
    unknown_at: list[int],
    unknown: list[Any],
    kept: np.ndarray,
    low_only: np.ndarray | None,
    kept_ids: list[Any],
    kept_inputs: list[Any] | None,
) -> None:
    """A taken chunk (the columns :data:`leanml._native.TAKEN_COLUMNS` names; ``lab`` the label
    codes) into the windows, sketches, drift inputs and detail rows."""
    if not lab.size:
        return
    if unknown_at:  # labels not seen before
        lab[unknown_at] = st.label_indices(unknown)
    oov_counted = _oov_of_counts(tok, known) if counted else None
    _count_labels(st, lab)
    st.budget.credit(model_s)
    oov = _oov(st, len(lab), kept, kept_inputs, oov_counted)
    # the chunk's time span, read once: most chunks fall in one window and one or two
    # seconds, and then neither needs a per-record array (each numpy pass over a few thousand
    # values lets the GIL go, and the thread calling the model takes it for up to 5 ms)
    span = float(ts.min()), float(ts.max())
    # the values the drift inputs keep, filtered once for the windows and the recent rings
    clean = _Clean(_finite(conf), _not_nan(lengths), _not_nan(oov))
    _add_to_windows(st, lab, conf, lat, ts, lengths, oov, span, clean)
    st.lifetime.add_many(lat)
    st.model_s += model_s
    _count_seconds(st, ts, span)
    st.confidence.update(clean.conf)
    st.recent_labels.push(lab)
    if clean.lengths is not None:
        st.recent_lengths.push(clean.lengths)
    if clean.oov is not None:
        st.recent_oov.push(clean.oov)
    if kept.size:
        keep_details(st, kept_ids, lab, conf, lat, kept_inputs, ts, kept, low_only)


class _Clean(NamedTuple):
    """A chunk's confidences that are finite (a model without scores records NaN), and its
    lengths and OOV rates that are not NaN (no input, no tokens), or None."""

    conf: np.ndarray
    lengths: np.ndarray | None
    oov: np.ndarray | None


def _finite(a: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    return a if ok.all() else a[ok]


@overload
def _not_nan(a: np.ndarray) -> np.ndarray: ...
@overload
def _not_nan(a: None) -> None: ...
def _not_nan(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    bad = np.isnan(a)
    return a[~bad] if bad.any() else a


def _count_labels(st: MonitorState, lab: np.ndarray) -> None:
    st.total += int(lab.size)
    counts = np.bincount(lab, minlength=len(st.labels))
    if counts.size > st.label_totals.size:
        grown = np.zeros(counts.size, dtype=np.int64)
        grown[: st.label_totals.size] = st.label_totals
        st.label_totals = grown
    st.label_totals[: counts.size] += counts


def _oov(
    st: MonitorState,
    n: int,
    kept: np.ndarray,
    kept_inputs: list[Any] | None,
    counted: np.ndarray | None,
) -> np.ndarray | None:
    """OOV rate per prediction (``n`` of them): from the model's token counts where it counted
    them (every prediction, no tokenization); else, with an analyzer, of the sampled inputs
    (``kept_inputs``, at the positions ``kept``; at most ``max_oov_per_flush``, and as many as
    the CPU budget of optional work allows); NaN elsewhere. The sampling itself never
    changes."""
    analyzer, vocabulary = st.analyzer, st.vocabulary
    if counted is not None:
        oov = counted
        rest = oov < 0
        if not rest.any():
            return oov
        oov[rest] = math.nan
        which: Any = np.flatnonzero(rest[kept]).tolist()  # kept predictions without counts
    elif kept_inputs is None or analyzer is None or vocabulary is None:
        return None
    else:
        oov = np.full(n, math.nan)
        which = range(len(kept))
    if kept_inputs is None or analyzer is None or vocabulary is None:
        return oov
    cand = [j for j in which if kept_inputs[j] is not None][: st.config.max_oov_per_flush]
    cand = cand[: st.budget.allowed(len(cand))]
    if cand:
        texts = [kept_inputs[j] for j in cand]
        oov[kept[cand]] = st.budget.run(lambda: oov_rates(texts, analyzer, vocabulary), len(cand))
    return oov


def _add_to_windows(
    st: MonitorState,
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    ts: np.ndarray,
    lengths: np.ndarray | None,
    oov: np.ndarray | None,
    span: tuple[float, float],
    clean: _Clean,
) -> None:
    """Per-window counters, latency sketches and drift inputs (``span``: the first and last
    time in ``ts``; ``clean``: the chunk's filtered drift inputs, used when it falls in one
    window)."""
    width = st.config.window_s
    k = len(st.labels)
    lo, hi = (math.floor(t / width) * width for t in span)  # floor is monotone: the ends
    det = st.drift_detector
    cmap = None if det is None else det.reference.calibration
    parts: list[tuple[float, Any, _Clean]]  # (window start, selection, its drift inputs)
    if lo == hi:  # one window: the chunk's filtered inputs as they are
        parts = [(lo, slice(None), clean)]
    else:
        starts = np.floor(ts / width) * width
        parts = []
        for s in np.unique(starts):
            sel = starts == s
            part = _Clean(
                _finite(conf[sel]),
                None if lengths is None else _not_nan(lengths[sel]),
                None if oov is None else _not_nan(oov[sel]),
            )
            parts.append((float(s), sel, part))
    for start, sel, part in parts:
        w = st.window(start)
        w.add(lab[sel], conf[sel], lat[sel], k, cmap, finite=part.conf)
        if part.lengths is not None:
            w.lengths.push(part.lengths)
        if part.oov is not None:
            w.oov.push(part.oov)


def _count_seconds(st: MonitorState, ts: np.ndarray, span: tuple[float, float]) -> None:
    """Predictions per whole second (the newest 120 to 180 seconds are kept; ``span``: the
    first and last time in ``ts``). A chunk spans a second or two: counted from its first
    second (no sort), unless its times are far apart."""
    lo, hi = int(span[0]), int(span[1])  # truncation is monotone, as astype's
    sec = st.seconds
    if lo == hi:
        sec[lo] = sec.get(lo, 0) + int(ts.size)
    elif hi == lo + 1 and lo >= 0:  # two seconds (most chunks at 1 s a flush): one pass
        later = int(np.count_nonzero(ts >= hi))  # int(t) >= hi, for t >= 0
        sec[lo] = sec.get(lo, 0) + int(ts.size) - later
        sec[hi] = sec.get(hi, 0) + later
    else:
        whole = ts.astype(np.int64)
        if hi - lo <= 4096:
            c = np.bincount(whole - lo)
            u = np.flatnonzero(c)
            secs, counts = (u + lo).tolist(), c[u].tolist()
        else:
            secs, counts = (a.tolist() for a in np.unique(whole, return_counts=True))
        for s_, c_ in zip(secs, counts, strict=True):
            sec[s_] = sec.get(s_, 0) + c_
    if len(sec) > 180:
        for old in sorted(sec)[:-120]:
            del sec[old]
