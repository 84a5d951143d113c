"""Flusher, ground truth: score labels already joined to their predictions.

Labels arrive matched (``record_joined``, from the ground-truth path of
:mod:`leanml.groundtruth`, which holds the pending predictions, or from a caller that keeps its
own) or restored from the durable log at start (``restore_joined``). Joined pairs feed the
accuracy and calibration windows; live ones (not restored: those were counted by the process
that joined them) also feed the per-window joined/correct counts and become label rows for the
store. Runs under the state's lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml.monitor._state import MonitorState

__all__ = ["drain_ground_truth", "ingest_joined"]


def drain_ground_truth(st: MonitorState) -> bool:
    """Score up to ``flush_batch_size`` buffered items; whether there were any."""
    if not st.gt:
        return False
    gpop = st.gt.popleft
    ingest_joined(st, [gpop() for _ in range(min(len(st.gt), st.config.flush_batch_size))])
    return True


def ingest_joined(st: MonitorState, items: list[tuple]) -> None:
    """Score ``(ids, true labels, ts, (predicted, confidences, pred_ts), restored)`` items."""
    for restored in (False, True):
        batch = [it for it in items if it[4] is restored]
        if batch:
            _score(st, *_matched(batch), restored=restored)


def _per_item(ts: Any, n: int) -> np.ndarray:
    """One timestamp per item from one float or a sequence of them."""
    return np.broadcast_to(np.asarray(ts, dtype=np.float64), (n,))


def _matched(
    items: list[tuple],
) -> tuple[list[Any], list[Any], list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated (ids, true, predicted, confidences, pred_ts, ts) of several items."""
    ids: list[Any] = []
    true: list[Any] = []
    pred: list[Any] = []
    conf: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    tss: list[np.ndarray] = []
    for i, lab, ts, (p, c, pt), _ in items:
        n = len(i)
        ids.extend(i)
        true.extend(lab)
        pred.extend(p.tolist() if isinstance(p, np.ndarray) else p)
        conf.append(np.asarray(c, dtype=np.float64).reshape(n))
        pts.append(np.asarray(pt, dtype=np.float64).reshape(n))
        tss.append(_per_item(ts, n))
    return ids, true, pred, np.concatenate(conf), np.concatenate(pts), np.concatenate(tss)


def _score(
    st: MonitorState,
    ids: list[Any],
    true_labels: list[Any],
    predicted_labels: list[Any],
    confidences: np.ndarray,
    pred_ts: np.ndarray,
    ts: np.ndarray,
    *,
    restored: bool,
) -> None:
    """Accuracy and calibration of joined pairs; live ones: per-window counts, label rows."""
    true = st.label_indices(true_labels)
    predicted = st.label_indices(predicted_labels)
    correct = true == predicted
    st.count_window.update(true, predicted)
    st.time_window.update(true, predicted, ts)
    scored = np.isfinite(confidences)
    st.calibration.update(confidences[scored], correct[scored])
    st.gt_counts["restored" if restored else "joined"] += len(ids)
    if restored:
        return
    starts = np.floor(ts / st.config.window_s) * st.config.window_s
    for s in np.unique(starts):
        sel = starts == s
        w = st.window(float(s))
        w.joined += int(sel.sum())
        w.correct += int(correct[sel].sum())
        w.dirty = True
    if st.store is not None:
        _queue_label_rows(st, ids, true, predicted, confidences, pred_ts, ts)


def _queue_label_rows(
    st: MonitorState,
    ids: list[Any],
    true: np.ndarray,
    predicted: np.ndarray,
    confidences: np.ndarray,
    pred_ts: np.ndarray,
    ts: np.ndarray,
) -> None:
    room = max(st.config.detail_buffer_size - len(st.label_rows), 0)
    if len(ids) > room:
        st.drops["labels_buffer"] += len(ids) - room
    names = st.labels
    for j in range(min(len(ids), room)):
        st.label_rows.append(
            {
                "prediction_id": str(ids[j]),
                "ts": float(ts[j]),
                "pred_ts": float(pred_ts[j]),
                "model": st.name,
                "variant": st.variant,
                "true_label": str(names[true[j]]),
                "predicted_label": str(names[predicted[j]]),
                "confidence": float(confidences[j]),
            }
        )
