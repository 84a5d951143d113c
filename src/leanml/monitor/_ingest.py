"""Flusher, ingest: buffered prediction records into totals, windows, sketches and drift inputs.

Takes a chunk of the intake buffers (at most ``flush_batch_size`` predictions), decides which
predictions are sampled (deterministic in the id, plus low-confidence ones), adds them to their
time windows (counts, latency sketch, confidence/length/OOV samples), to the recent windows,
and hands the sampled ones to :mod:`~leanml.monitor._details`. Runs under the state's lock.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from leanml._ids import sample_hashes
from leanml._native import take_singles
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
        _guarded(st, _ingest_singles, st, taken)
    bpop = bbuf.popleft
    batches = []
    while bbuf and taken < limit:
        b = bpop()
        batches.append(b)
        taken += len(b[0])
    if batches:
        _guarded(st, _ingest_batches, st, batches)
    return True


def _guarded(st: MonitorState, ingest: Any, *args: Any) -> None:
    try:
        ingest(*args)
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


def _ingest_singles(st: MonitorState, n: int) -> None:
    """The first ``n`` single records (:meth:`~leanml.monitor.ModelMonitor.record`), taken
    and transposed into columns in C (:func:`leanml._native.take_singles`)."""
    ids, labels, codes, conf, lat, inputs, ts, tok, known, model_s, counted = take_singles(
        st.buf, n, st.label_index
    )
    new = np.flatnonzero(codes < 0)  # labels not seen before
    if new.size:
        codes[new] = st.label_indices([labels[i] for i in new.tolist()])
    oov = _oov_of_counts(tok, known) if counted else None
    _ingest(st, ids, codes, conf, lat, inputs, ts, model_s, oov)


def _ingest_batches(st: MonitorState, batches: list[tuple]) -> None:
    # Flat Python lists first, one array conversion per column at the end: per-batch numpy
    # calls (asarray, broadcast_to, full) cost ~7 us per batch, more than the rest of the
    # ingest of a typical serving micro-batch of ~12 predictions.
    ids: list[Any] = []
    labels: list[Any] = []
    confs: list[float] = []
    lats: list[float] = []
    inputs: list[Any] = []
    has_inputs = False
    # the model's time, what the optional work's CPU budget and the overhead ratio are shares
    # of: per batch, the model seconds its caller timed, else its longest latency (the batch
    # ran once for all of them)
    model_s = 0.0
    counted: list[tuple[int, Any]] = []  # (position, counts) of the batches with token counts
    batch_ts: list[tuple[float, int]] = []  # one time per batch
    for i, lab, c, lat, inp, ts, counts, model_seconds in batches:
        n = len(i)
        if counts is not None:
            if len(counts[0]) != n or len(counts[1]) != n:
                raise ValueError(f"token counts of {len(counts[0])} inputs for a batch of {n}")
            counted.append((len(ids), counts))
        ids.extend(i)
        labels.extend(lab.tolist() if isinstance(lab, np.ndarray) else lab)
        confs.extend(c.tolist() if isinstance(c, np.ndarray) else c)
        batch_lats = _latencies(lat, n)
        lats.extend(batch_lats)
        if model_seconds is not None:
            model_s += model_seconds
        elif type(lat) is float:  # one latency for the batch
            model_s += lat if lat == lat else 0.0
        else:
            finite = [x for x in batch_lats if x == x]
            model_s += max(finite) if finite else 0.0
        batch_ts.append((ts, n))
        if inp is None:
            inputs.extend([None] * n)
        else:
            inputs.extend(inp)
            has_inputs = True
    if not ids:
        return
    times, sizes = zip(*batch_ts, strict=True)
    oov = None
    if counted:
        tok = np.full(len(ids), -1.0)
        known = np.zeros(len(ids))
        for at, (t, k) in counted:
            tok[at : at + len(t)] = t
            known[at : at + len(k)] = k
        oov = _oov_of_counts(tok, known)
    _ingest(
        st,
        ids,
        st.label_indices(labels),
        np.asarray(confs, dtype=np.float64),
        np.asarray(lats, dtype=np.float64),
        inputs if has_inputs else None,
        np.repeat(np.asarray(times, dtype=np.float64), sizes),
        model_s,
        oov,
    )


def _oov_of_counts(tok: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Out-of-vocabulary rate from the model's token counts: NaN for an input without
    tokens, -1 where the model did not count (``tok`` -1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        oov = (tok - known) / tok
    oov[tok == 0] = math.nan
    oov[tok < 0] = -1.0
    return oov


def _latencies(lat: Any, n: int) -> list[float]:
    """The ``n`` latencies of a batch from one value or a sequence of ``n``."""
    if isinstance(lat, np.ndarray):
        lat = lat.tolist()  # a 0-d array gives one float
    if isinstance(lat, (float, int)) or not hasattr(lat, "__len__"):
        return [lat] * n  # one latency for the whole batch
    if len(lat) != n:
        raise ValueError(f"{len(lat)} latencies for a batch of {n} predictions")
    return list(lat)


def _ingest(
    st: MonitorState,
    ids: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
    model_s: float,
    counted: np.ndarray | None = None,
) -> None:
    _count_labels(st, lab)
    lengths = _input_lengths(inputs, len(ids))
    sampled, reason_low = _sample(st, ids, conf)
    picked = np.flatnonzero(sampled)
    st.budget.credit(model_s)
    oov = _oov(st, inputs, picked, counted)
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


def _input_lengths(inputs: list[Any] | None, n: int) -> np.ndarray | None:
    """Length in characters per input (NaN where the input is None)."""
    if inputs is None:
        return None
    try:  # every input present (the usual case): len() at C speed
        return np.fromiter(map(len, inputs), np.float64, n)
    except TypeError:  # some are None
        return np.fromiter((math.nan if x is None else len(x) for x in inputs), np.float64, n)


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
