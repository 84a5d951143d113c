"""Sliding-window classification metrics from joined (true, predicted) pairs.

One streaming protocol (as in river): ``update(...)`` then ``get()``. Both windows keep an
incremental confusion matrix, so ``get()`` costs O(k^2) for k classes, independent of the window
length, and every update costs O(1) per pair (amortized). Classes are small integer indices
assigned by the monitor; the matrix grows when a new class appears.

Metrics follow scikit-learn's definitions with ``zero_division=0``: accuracy, macro-F1 over the
classes present in the window (in ``y_true`` or ``y_pred``, as ``f1_score(average="macro")``),
per-class precision and recall. ``tests/monitor/test_metrics.py`` checks every step against
``sklearn.metrics``.

Bounds: :class:`CountWindow` holds exactly ``size`` pairs (two int32 rings);
:class:`TimeWindow` holds the pairs of the last ``seconds`` but at most ``max_items`` (older ones
are evicted early and counted in ``evicted``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from leanml._intervals import wilson
from leanml._validation import check_number

__all__ = ["ConfusionWindow", "CountWindow", "TimeWindow", "metrics_from_confusion"]


def metrics_from_confusion(cm: np.ndarray, labels: list[Any] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall from a confusion matrix (rows = true)."""
    n = int(cm.sum())
    k = cm.shape[0]
    names = labels if labels is not None else list(range(k))
    if n == 0:
        return {
            "n": 0,
            "accuracy": None,
            "accuracy_lower": None,
            "accuracy_upper": None,
            "macro_f1": None,
            "precision": {},
            "recall": {},
            "confusion": {"labels": [], "matrix": []},
        }
    tp = np.diag(cm).astype(np.float64)
    pred_tot = cm.sum(axis=0).astype(np.float64)
    true_tot = cm.sum(axis=1).astype(np.float64)
    present = (pred_tot + true_tot) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_tot > 0, tp / pred_tot, 0.0)
        recall = np.where(true_tot > 0, tp / true_tot, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    idx = np.flatnonzero(present)
    lower, upper = wilson(float(tp.sum()), n)
    return {
        "n": n,
        "accuracy": float(tp.sum() / n),
        "accuracy_lower": lower,  # Wilson 95%
        "accuracy_upper": upper,
        "macro_f1": float(f1[idx].mean()),
        "precision": {_key(names[i]): float(precision[i]) for i in idx},
        "recall": {_key(names[i]): float(recall[i]) for i in idx},
        "confusion": {
            "labels": [_key(names[i]) for i in idx],
            "matrix": cm[np.ix_(idx, idx)].astype(int).tolist(),
        },
    }


def _key(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


class ConfusionWindow:
    """Base: an incremental confusion matrix over integer class indices."""

    def __init__(self) -> None:
        self.cm = np.zeros((0, 0), dtype=np.int64)

    def _grow(self, k: int) -> None:
        if k > self.cm.shape[0]:
            size = max(k, 2 * self.cm.shape[0], 4)
            grown = np.zeros((size, size), dtype=np.int64)
            old = self.cm.shape[0]
            grown[:old, :old] = self.cm
            self.cm = grown

    @property
    def n(self) -> int:
        return int(self.cm.sum())

    def get(self, labels: list[Any] | None = None) -> dict[str, Any]:
        k = self.cm.shape[0]
        if labels is not None and len(labels) < k:
            labels = list(labels) + list(range(len(labels), k))
        return metrics_from_confusion(self.cm, labels)

    def correct(self) -> int:
        return int(np.trace(self.cm))


class CountWindow(ConfusionWindow):
    """The last ``size`` labeled predictions."""

    def __init__(self, size: int = 1000) -> None:
        super().__init__()
        check_number(size, "size", "CountWindow", low=1, integer=True)
        self.size = size
        self._t = np.zeros(size, dtype=np.int32)
        self._p = np.zeros(size, dtype=np.int32)
        self._filled = 0
        self._head = 0

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        t = np.asarray(y_true, dtype=np.int32)
        p = np.asarray(y_pred, dtype=np.int32)
        if t.size == 0:
            return
        self._grow(int(max(t.max(), p.max())) + 1)
        if t.size > self.size:
            t, p = t[-self.size :], p[-self.size :]
        n = t.size
        pos = (self._head + np.arange(n)) % self.size
        if self._filled + n > self.size:  # remove the pairs being overwritten
            n_out = self._filled + n - self.size
            out = (self._head - self._filled + np.arange(n_out)) % self.size
            np.subtract.at(self.cm, (self._t[out], self._p[out]), 1)
        np.add.at(self.cm, (t, p), 1)
        self._t[pos] = t
        self._p[pos] = p
        self._head = int((self._head + n) % self.size)
        self._filled = min(self.size, self._filled + n)


class TimeWindow(ConfusionWindow):
    """Labeled predictions whose label time is within the last ``seconds``."""

    def __init__(self, seconds: float = 3600.0, max_items: int = 1_000_000) -> None:
        super().__init__()
        check_number(seconds, "seconds", "TimeWindow", low=0, low_open=True)
        check_number(max_items, "max_items", "TimeWindow", low=1, integer=True)
        self.seconds = float(seconds)
        self.max_items = max_items
        self._items: deque[tuple[float, int, int]] = deque()
        self.evicted = 0

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, ts: np.ndarray) -> None:
        t = np.asarray(y_true, dtype=np.int64)
        p = np.asarray(y_pred, dtype=np.int64)
        if t.size == 0:
            return
        self._grow(int(max(t.max(), p.max())) + 1)
        np.add.at(self.cm, (t, p), 1)
        times = np.broadcast_to(np.asarray(ts, dtype=float), t.shape).tolist()
        self._items.extend(zip(times, t.tolist(), p.tolist(), strict=True))
        while len(self._items) > self.max_items:
            _, a, b = self._items.popleft()
            self.cm[a, b] -= 1
            self.evicted += 1

    def expire(self, now: float) -> None:
        cutoff = now - self.seconds
        items = self._items
        cm = self.cm
        while items and items[0][0] < cutoff:
            _, a, b = items.popleft()
            cm[a, b] -= 1
