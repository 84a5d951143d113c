"""Flusher, ground truth: join true labels to predictions and score the joined pairs.

Labels from ``record_ground_truth`` are joined by prediction id in the pending table; labels
from ``record_joined`` come matched already. Joined pairs feed the accuracy and calibration
windows and the per-window joined/correct counts, and become label rows for the store. With a
store and ``forward_unknown_ground_truth``, labels of ids this process does not know are
forwarded through the store to the process that made the prediction
(:func:`claim_forwarded` claims the ones other processes forwarded here). Runs under the state's
lock, except :func:`claim_forwarded` (store I/O; it takes the lock around the joins).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from leanml.monitor._state import MonitorState
from leanml.monitor.join import JoinResult

__all__ = ["claim_forwarded", "drain_ground_truth", "ingest_ground_truth"]


def drain_ground_truth(st: MonitorState) -> bool:
    """Join up to ``flush_batch_size`` buffered items; whether there were any."""
    if not st.gt:
        return False
    gpop = st.gt.popleft
    ingest_ground_truth(st, [gpop() for _ in range(min(len(st.gt), st.config.flush_batch_size))])
    return True


def ingest_ground_truth(
    st: MonitorState, items: list[tuple], from_inbox: bool = False
) -> list[int]:
    """Join labels; unknown ids are forwarded to the store for other processes (see config).
    Returns the input positions that were not unknown (for inbox rows: the ones to claim)."""
    joined = [it for it in items if len(it) == 4]  # from record_joined: matched already
    if joined:
        _score_joined(st, _matched(st, joined))
        items = [it for it in items if len(it) == 3]
    ids: list[Any] = []
    labels: list[Any] = []
    tss: list[np.ndarray] = []
    for i, lab, ts in items:
        ids.extend(i)
        labels.extend(lab)
        tss.append(_per_item(ts, len(i)))
    if not ids:
        return []
    ts_all = np.concatenate(tss)
    forward = st.store is not None and st.config.forward_unknown_ground_truth
    res = st.pending.join(ids, labels, ts_all, count_unknown=not (forward or from_inbox))
    if forward and not from_inbox and res.unknown:
        _forward(st, [(ids[p], labels[p], float(ts_all[p])) for p in res.unknown])
    unknown = set(res.unknown)
    found = [p for p in range(len(ids)) if p not in unknown]
    if len(res):
        _score_joined(st, res)
    return found


def _forward(st: MonitorState, unknown: list[tuple[Any, Any, float]]) -> None:
    """Queue rows forwarding labels of unknown ids (beyond the bound: counted unknown here)."""
    room = max(st.config.ground_truth_buffer_size - len(st.forward_rows), 0)
    n = len(unknown)
    if n > room:  # cannot forward: these count as unknown here and now
        st.drops["forward_buffer"] += n - room
        st.pending.counters["unknown"] += n - room
    for pid, label, ts in unknown[:room]:
        st.forward_rows.append(
            {
                "model": st.name,
                "variant": st.variant,
                "prediction_id": _json_label(pid),
                "true_label": _json_label(label),
                "ts": ts,
            }
        )
    st.pending.counters["forwarded"] += min(n, room)


def _per_item(ts: Any, n: int) -> np.ndarray:
    """One timestamp per item from one float or a sequence of them."""
    return np.broadcast_to(np.asarray(ts, dtype=np.float64), (n,))


def _matched(st: MonitorState, items: list[tuple]) -> JoinResult:
    """One JoinResult of ``record_joined`` items (counted as joined)."""
    ids: list[Any] = []
    true: list[Any] = []
    pred: list[Any] = []
    conf: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    tss: list[np.ndarray] = []
    for i, lab, ts, (p, c, pt) in items:
        n = len(i)
        ids.extend(i)
        true.extend(lab)
        pred.extend(p.tolist() if isinstance(p, np.ndarray) else p)
        conf.append(np.asarray(c, dtype=np.float64).reshape(n))
        pts.append(np.asarray(pt, dtype=np.float64).reshape(n))
        tss.append(_per_item(ts, n))
    st.pending.counters["joined"] += len(ids)
    return JoinResult(
        ids,
        st.label_indices(pred),
        np.concatenate(conf),
        np.concatenate(pts),
        true,
        np.concatenate(tss),
    )


def _score_joined(st: MonitorState, res: JoinResult) -> None:
    """Accuracy, calibration and per-window counts of joined pairs; label rows for the store."""
    true = st.label_indices(res.true_labels)
    correct = true == res.predicted
    st.count_window.update(true, res.predicted)
    st.time_window.update(true, res.predicted, res.ts)
    scored = np.isfinite(res.confidences)
    st.calibration.update(res.confidences[scored], correct[scored])
    starts = np.floor(res.ts / st.config.window_s) * st.config.window_s
    for s in np.unique(starts):
        sel = starts == s
        w = st.window(float(s))
        w.joined += int(sel.sum())
        w.correct += int(correct[sel].sum())
        w.dirty = True
    if st.store is not None:
        _queue_label_rows(st, res, true)


def _queue_label_rows(st: MonitorState, res: JoinResult, true: np.ndarray) -> None:
    room = max(st.config.detail_buffer_size - len(st.label_rows), 0)
    if len(res) > room:
        st.drops["labels_buffer"] += len(res) - room
    names = st.labels
    for j in range(min(len(res), room)):
        st.label_rows.append(
            {
                "prediction_id": str(res.ids[j]),
                "ts": float(res.ts[j]),
                "pred_ts": float(res.pred_ts[j]),
                "model": st.name,
                "variant": st.variant,
                "true_label": str(names[true[j]]),
                "predicted_label": str(names[res.predicted[j]]),
                "confidence": float(res.confidences[j]),
            }
        )


def _json_label(label: Any) -> str:
    if isinstance(label, np.generic):
        label = label.item()
    try:
        return json.dumps(label)
    except TypeError:
        return json.dumps(str(label))


def claim_forwarded(st: MonitorState, now: float) -> None:
    """Join ground truth other processes forwarded (store I/O outside the state's lock)."""
    store = st.store
    if store is None or not st.config.forward_unknown_ground_truth:
        return
    rows = store.inbox(st.name, st.variant, limit=st.config.ground_truth_buffer_size)
    if rows:
        item = (
            [json.loads(r["prediction_id"]) for r in rows],
            [json.loads(r["true_label"]) for r in rows],
            np.asarray([r["ts"] for r in rows], dtype=np.float64),
        )
        with st.lock:
            found = ingest_ground_truth(st, [item], from_inbox=True)
            st.pending.counters["claimed_from_other_processes"] += len(found)
        if found:
            store.claim([rows[p]["id"] for p in found])
    expired = store.expire_forwarded(st.name, st.variant, now - st.config.forward_ttl_s)
    if expired:
        with st.lock:
            st.pending.counters["unknown"] += expired
