"""Accuracy estimated from confidences before labels arrive, and its calibration check.

Confidence-based performance estimation (in the spirit of NannyML's CBPE): a prediction is
correct with probability ``P(correct)``, so the expected accuracy of a set of predictions is the
mean of their P(correct). Raw confidences are not calibrated; the model's
:class:`~leanml._calibration.ConfidenceMap` (fitted on its validation split, stored in its
manifest with the drift reference) turns each top-class confidence into P(correct). Without a
map the raw confidence is used. The estimate comes with a 95% interval and its sample size
(:meth:`ConfidenceMap.interval`). The estimate is only as good as the calibration, hence the
check: over the predictions whose labels have arrived, the mean mapped confidence is compared
with the realized accuracy of the same predictions (the *gap*, with the realized accuracy's
Wilson interval) and an expected calibration error (ECE, 10 equal-width bins) is computed.
``calibrated`` is true when the absolute gap is within ``tolerance``.

Bounds: :class:`ConfidenceWindow` keeps the last ``size`` confidences (one float64 ring), and
:class:`CalibrationWindow` the last ``size`` labeled (confidence, correct) pairs. ``update`` is
O(batch) numpy work; ``get`` O(size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml._calibration import ConfidenceMap
from leanml._intervals import wilson
from leanml._validation import check_number

_IDENTITY = ConfidenceMap()

__all__ = ["CalibrationWindow", "ConfidenceWindow", "expected_calibration_error"]


class _Ring:
    def __init__(self, size: int, dtype: Any) -> None:
        self.size = size
        self.buf = np.zeros(size, dtype=dtype)
        self.head = 0
        self.filled = 0

    def push(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=self.buf.dtype).ravel()
        if v.size >= self.size:
            self.buf[:] = v[-self.size :]
            self.head = 0
            self.filled = self.size
            return
        head, first = self.head, min(v.size, self.size - self.head)
        self.buf[head : head + first] = v[:first]  # up to the end, then from the start
        self.buf[: v.size - first] = v[first:]
        self.head = (head + v.size) % self.size
        self.filled = min(self.size, self.filled + v.size)

    def values(self) -> np.ndarray:
        """The values held, oldest first."""
        if self.filled < self.size:
            return self.buf[: self.filled].copy()
        return np.concatenate((self.buf[self.head :], self.buf[: self.head]))


class ConfidenceWindow:
    """Estimated accuracy = mean P(correct) of the last ``size`` predictions (their top-class
    confidences through ``cmap``), with its 95% interval."""

    def __init__(self, size: int = 2000) -> None:
        check_number(size, "size", "ConfidenceWindow", low=1, integer=True)
        self._ring = _Ring(size, np.float64)

    def update(self, confidences: np.ndarray) -> None:
        self._ring.push(confidences)

    def values(self) -> np.ndarray:
        return self._ring.values()

    def get(self, cmap: ConfidenceMap | None = None, predicted: Any = None) -> dict[str, Any]:
        """The estimate through ``cmap``; given the window's ``predicted`` labels (aligned with
        its confidences), corrected for a class-mix shift (``ConfidenceMap.shift_adjusted``)."""
        cmap = cmap or _IDENTITY
        v = self._ring.values()
        if not v.size:
            return {
                "n": 0,
                "estimated_accuracy": None,
                "lower": None,
                "upper": None,
                "mean_confidence": None,
                "method": cmap.method,
                "shift_adjusted": False,
            }
        p = cmap.apply(v)
        adjusted = False
        if predicted is not None and len(predicted) == v.size:
            q = cmap.shift_adjusted(p, predicted)
            adjusted, p = q is not p, q
        est, lo, hi = cmap.interval(p)
        return {
            "n": int(v.size),
            "estimated_accuracy": est,
            "lower": lo,
            "upper": hi,
            "mean_confidence": float(v.mean()),
            "method": cmap.method,
            "shift_adjusted": adjusted,
        }


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins over [0, 1] (weighted mean |accuracy - confidence| per bin)."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return float("nan")
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    n = np.bincount(which, minlength=bins)
    s_conf = np.bincount(which, weights=conf, minlength=bins)
    s_acc = np.bincount(which, weights=correct, minlength=bins)
    nz = n > 0
    return float(np.abs(s_acc[nz] - s_conf[nz]).sum() / conf.size)


class CalibrationWindow:
    """Mean confidence vs realized accuracy over the last ``size`` labeled predictions."""

    def __init__(self, size: int = 2000, tolerance: float = 0.05) -> None:
        check_number(size, "size", "CalibrationWindow", low=1, integer=True)
        check_number(tolerance, "tolerance", "CalibrationWindow", low=0)
        self.tolerance = float(tolerance)
        self._conf = _Ring(size, np.float64)
        self._ok = _Ring(size, np.bool_)

    def update(self, confidences: np.ndarray, correct: np.ndarray) -> None:
        self._conf.push(confidences)
        self._ok.push(correct)

    def get(self, cmap: ConfidenceMap | None = None) -> dict[str, Any]:
        """The gap of the mapped confidences (``cmap``, default none) on labeled predictions."""
        cmap = cmap or _IDENTITY
        conf = self._conf.values()
        ok = self._ok.values()
        if conf.size == 0:
            return {
                "n_labeled": 0,
                "estimated_accuracy_labeled": None,
                "realized_accuracy_labeled": None,
                "realized_lower": None,
                "realized_upper": None,
                "calibration_gap": None,
                "ece": None,
                "calibrated": None,
            }
        p = cmap.apply(conf)
        est = float(p.mean())
        real = float(ok.mean())
        lo, hi = wilson(float(ok.sum()), ok.size)
        gap = est - real
        return {
            "n_labeled": int(conf.size),
            "estimated_accuracy_labeled": est,
            "realized_accuracy_labeled": real,
            "realized_lower": lo,
            "realized_upper": hi,
            "calibration_gap": gap,
            "ece": expected_calibration_error(p, ok),
            "calibrated": bool(abs(gap) <= self.tolerance),
        }
