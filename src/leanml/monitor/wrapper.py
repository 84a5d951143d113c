"""``monitored(estimator, name=...)``: a transparent, timing and recording wrapper.

The wrapper delegates every attribute to the estimator; ``predict`` and ``predict_proba`` are
timed with ``perf_counter`` and recorded in the monitor (labels and top-class confidences from
:func:`leanml._predict.predict_with_confidence`, so ``predict`` costs one ``predict_proba``; each
prediction of a batch is recorded with the batch latency divided by its size). Prediction ids come
from an :class:`~leanml.monitor.IdGenerator`; :meth:`MonitoredEstimator.predict_with_ids`
returns them (thread-safe), and ``last_prediction_ids`` holds those of the last call (per thread).
Exceptions are counted as errors and re-raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from leanml._ids import IdGenerator
from leanml._predict import predict_with_confidence
from leanml.monitor.monitor import ModelMonitor

__all__ = ["MonitoredEstimator", "monitored"]


class MonitoredEstimator:
    """See module docstring."""

    def __init__(
        self,
        estimator: Any,
        monitor: ModelMonitor,
        ids: IdGenerator | None = None,
        record_inputs: bool = True,
    ) -> None:
        self.estimator = estimator
        self.monitor = monitor
        self.ids = ids or IdGenerator()
        self.record_inputs = record_inputs
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        if name in ("estimator", "monitor", "ids", "_local", "record_inputs"):
            raise AttributeError(name)
        return getattr(self.estimator, name)

    @property
    def last_prediction_ids(self) -> list[str]:
        return getattr(self._local, "ids", [])

    def _run(self, X: Any) -> tuple[np.ndarray, Any, list[str]]:
        t0 = time.perf_counter()
        est = self.estimator
        try:
            if hasattr(est, "predict_proba") or hasattr(est, "decision_function"):
                labels, conf, proba = predict_with_confidence(est, X)
            else:  # no scores (e.g. a regressor): labels only, confidence unknown (NaN)
                labels = np.asarray(est.predict(X))
                conf = np.full(len(labels), np.nan)
                proba = None
        except Exception:
            self.monitor.record_error(_len(X))
            raise
        dt = time.perf_counter() - t0
        n = len(labels)
        inputs = X if self.record_inputs and _is_texts(X) else None
        m = self.monitor
        if n == 1:
            pid = self.ids()
            ids = [pid]
            m.record(pid, labels[0], float(conf[0]), dt, inputs[0] if inputs else None)
        else:
            ids = self.ids.take(n)
            m.record_batch(
                ids,
                labels,
                conf,
                dt / n if n else 0.0,
                list(inputs) if inputs is not None else None,
            )
        self._local.ids = ids
        self._local.proba = proba
        return labels, proba, ids

    def predict(self, X: Any) -> np.ndarray:
        return self._run(X)[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        if not hasattr(self.estimator, "predict_proba"):
            raise AttributeError(f"{type(self.estimator).__name__} has no predict_proba")
        return self._run(X)[1]

    def predict_with_ids(self, X: Any) -> tuple[np.ndarray, list[str]]:
        labels, _, ids = self._run(X)
        return labels, ids

    def record_ground_truth(self, prediction_id: str, true_label: Any) -> None:
        self.monitor.record_ground_truth(prediction_id, true_label)

    def close(self) -> None:
        self.monitor.close()

    def __enter__(self) -> MonitoredEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _len(X: Any) -> int:
    try:
        return len(X)
    except TypeError:
        return 1


def _is_texts(X: Any) -> bool:
    return (
        isinstance(X, Sequence)
        and not isinstance(X, str)
        and len(X) > 0
        and all(isinstance(x, str) for x in X[:1])
    )


def _text_vocabulary(estimator: Any) -> dict[str, Any]:
    """analyzer + vocabulary of a fitted text vectorizer at the head of a Pipeline (for OOV)."""
    steps = getattr(estimator, "steps", None)
    head = steps[0][1] if steps else estimator
    vocab = getattr(head, "vocabulary_", None)
    build = getattr(head, "build_analyzer", None)
    if vocab is None or build is None:
        return {}
    return {"analyzer": build(), "vocabulary": vocab}


def monitored(
    estimator: Any,
    name: str,
    *,
    monitor: ModelMonitor | None = None,
    ids: IdGenerator | None = None,
    record_inputs: bool = True,
    **monitor_kwargs: Any,
) -> MonitoredEstimator:
    """Wrap ``estimator`` so every predict / predict_proba is timed and recorded.

    ``monitor`` is used as given, else a :class:`ModelMonitor` is built from ``name`` and
    ``monitor_kwargs`` (config, store, reference, clock, ...); when the estimator is a Pipeline
    starting with a fitted text vectorizer, its analyzer and vocabulary feed the OOV drift score.
    """
    if monitor is None:
        if "analyzer" not in monitor_kwargs and "vocabulary" not in monitor_kwargs:
            monitor_kwargs.update(_text_vocabulary(estimator))
        monitor = ModelMonitor(name, **monitor_kwargs)
    return MonitoredEstimator(estimator, monitor, ids, record_inputs)
