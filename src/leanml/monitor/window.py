"""One time window of a model's predictions: counters, a latency sketch and drift inputs.

A :class:`Window` is what a process persists per (model, variant, window) and what readers merge:
exact counts (total, per label, errors, joined and correct labels, the sum of the predictions'
P(correct), i.e. of their confidences through the model's confidence map, stored as
``confidence_sum`` so that any reader's estimated accuracy is ``confidence_sum /
confidence_count``, calibrated) and a
:class:`~leanml.monitor.sketch.LogSketch` of latencies. It also keeps bounded rings (the last
``sample_n`` confidences, input lengths and OOV rates) so a drift score can be computed per
window. Memory: the sketch (at most ~15 KB) plus 3 * ``sample_n`` floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml._calibration import ConfidenceMap
from leanml.monitor.drift import DriftScores
from leanml.monitor.estimate import _Ring
from leanml.monitor.sketch import LogSketch

__all__ = ["Window"]


class Window:
    """Accumulator for one time window (see module docstring)."""

    __slots__ = (
        "confidence_n",
        "confidence_sum",
        "conf",
        "correct",
        "count",
        "dirty",
        "drift",
        "errors",
        "joined",
        "label_counts",
        "lengths",
        "oov",
        "sketch",
        "start",
        "width",
    )

    def __init__(self, start: float, width: float, relative_accuracy: float, sample_n: int):
        self.start = start
        self.width = width
        self.count = 0
        self.errors = 0
        self.joined = 0
        self.correct = 0
        self.confidence_sum = 0.0
        self.confidence_n = 0
        self.label_counts = np.zeros(0, dtype=np.int64)
        self.sketch = LogSketch(relative_accuracy)
        self.conf = _Ring(sample_n, np.float64)
        self.lengths = _Ring(sample_n, np.float64)
        self.oov = _Ring(sample_n, np.float64)
        self.drift: DriftScores | None = None
        self.dirty = True

    def add(
        self,
        labels: np.ndarray,
        conf: np.ndarray,
        lat: np.ndarray,
        k: int,
        cmap: ConfidenceMap | None = None,
        finite: np.ndarray | None = None,
    ) -> None:
        """Count a batch; ``cmap`` maps its confidences to the P(correct) summed for the
        estimate (the raw confidences feed the drift ring); ``finite``: the finite ones
        among ``conf``, when the caller has them."""
        self.count += int(labels.size)
        counts = np.bincount(labels, minlength=k)
        if counts.size > self.label_counts.size:
            grown = np.zeros(counts.size, dtype=np.int64)
            grown[: self.label_counts.size] = self.label_counts
            self.label_counts = grown
        self.label_counts[: counts.size] += counts
        if finite is None:  # models without scores record NaN confidences
            finite = conf[np.isfinite(conf)]
        self.confidence_sum += float((finite if cmap is None else cmap.apply(finite)).sum())
        self.confidence_n += int(finite.size)
        self.sketch.add_many(lat)
        self.conf.push(finite)
        self.dirty = True

    def label_dict(self, names: list[Any]) -> dict[str, int]:
        return {str(names[i]): int(c) for i, c in enumerate(self.label_counts) if c}

    def row(self, model: str, version: str, variant: str, names: list[Any], now: float) -> dict:
        import json

        return {
            "model": model,
            "version": version,
            "variant": variant,
            "window_start": self.start,
            "window_s": self.width,
            "count": self.count,
            "errors": self.errors,
            "joined": self.joined,
            "correct": self.correct,
            "confidence_sum": self.confidence_sum,
            "confidence_count": self.confidence_n,
            "label_counts": json.dumps(self.label_dict(names)),
            "drift": json.dumps(self.drift) if self.drift is not None else None,
            "sketch": self.sketch.to_bytes() if self.sketch.count else None,
            "updated_at": now,
        }
