"""``monitored(estimator, name=...)``: a transparent, timing and recording wrapper.

The wrapper delegates every attribute to the estimator; ``predict`` and ``predict_proba`` are
timed with ``perf_counter`` and recorded in the monitor (labels and top-class confidences from
:func:`leanml._predict.predict_with_confidence`, so ``predict`` costs one ``predict_proba``; each
prediction of a batch is recorded with the batch latency divided by its size). Exceptions are
counted as errors and re-raised.

Ground truth takes the same path as in the server (:mod:`leanml.groundtruth`): a
:class:`~leanml.groundtruth.GroundTruth` issues the prediction ids (unguessable, thread-safe)
and holds each prediction's class, confidence and time in its ring;
:meth:`MonitoredEstimator.predict_with_ids` returns the ids and ``last_prediction_ids`` holds
those of the last call (per thread). :meth:`MonitoredEstimator.record_ground_truth` joins a label
there, stores it in the durable :class:`~leanml.groundtruth.FeedbackLog` when the monitor has a
store (before it returns), then hands the joined pair to the monitor; at construction the
monitor's accuracy windows are restored from that log (:meth:`ModelMonitor.restore`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from leanml._predict import predict_with_confidence
from leanml.errors import MonitorError
from leanml.groundtruth import FeedbackLog, GroundTruth
from leanml.monitor.monitor import ModelMonitor

__all__ = ["MonitoredEstimator", "monitored"]


class MonitoredEstimator:
    """See module docstring."""

    def __init__(
        self,
        estimator: Any,
        monitor: ModelMonitor,
        ground_truth: GroundTruth | None = None,
        record_inputs: bool = True,
    ) -> None:
        self.estimator = estimator
        self.monitor = monitor
        cfg = monitor.config
        clock = monitor.state.clock
        self.ground_truth = ground_truth or GroundTruth(
            cfg.pending_max_entries, cfg.pending_max_age_s, clock=clock
        )
        monitor.ground_truth, monitor.ground_truth_code = self.ground_truth, 0
        self.record_inputs = record_inputs
        self._local = threading.local()
        classes = getattr(estimator, "classes_", None)
        self._classes: list[Any] = [] if classes is None else list(np.asarray(classes).tolist())
        self._index = {c: i for i, c in enumerate(self._classes)}
        self.log: FeedbackLog | None = None
        store = monitor.store
        if store is not None:
            self.log = FeedbackLog(
                store.engine, store.process_id, table_prefix=store.prefix, clock=clock
            )
            self.log.register_space(self.ground_truth.prefix, monitor.name)
            monitor.restore(self.log)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:
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
        index = self._index
        if n == 1:
            lab = labels[0]
            i = index.get(lab)
            ids = self.ground_truth.issue(1, 0, self._new_class(lab) if i is None else i, conf[0])
            pid = ids[0]
            m.record(pid, lab, float(conf[0]), dt, inputs[0] if inputs else None)
        else:
            values = labels.tolist()
            pred = [index.get(lab) for lab in values]
            if None in pred:
                new = self._new_class
                pred = [new(v) if p is None else p for v, p in zip(values, pred, strict=True)]
            ids = self.ground_truth.issue(n, 0, pred, conf)
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

    def _new_class(self, label: Any) -> int:
        """The ring's index of a predicted value the estimator has no ``classes_`` entry for
        (a regressor's output): up to :data:`_MAX_VALUES` of them, then -1 (not scored)."""
        key = label.item() if isinstance(label, np.generic) else label
        got = self._index.get(key)
        if got is None and len(self._classes) < _MAX_VALUES:
            got = self._index[key] = len(self._classes)
            self._classes.append(key)
        return -1 if got is None else got

    def predict(self, X: Any) -> np.ndarray:
        return self._run(X)[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        if not hasattr(self.estimator, "predict_proba"):
            raise AttributeError(f"{type(self.estimator).__name__} has no predict_proba")
        return self._run(X)[1]

    def predict_with_ids(self, X: Any) -> tuple[np.ndarray, list[str]]:
        labels, _, ids = self._run(X)
        return labels, ids

    def record_ground_truth(self, prediction_id: str, true_label: Any) -> str:
        """Join the true label of an earlier prediction; its outcome (see
        :class:`~leanml.groundtruth.GroundTruth`: ``joined``, ``duplicate``, ``never_seen``...)."""
        return self.record_ground_truth_batch([prediction_id], [true_label])[0]

    def record_ground_truth_batch(
        self, prediction_ids: Sequence[str], true_labels: Sequence[Any]
    ) -> list[str]:
        """Join many labels; stored durably (with a store) before the monitor counts them."""
        if len(prediction_ids) != len(true_labels):
            raise ValueError(
                "The 'true_labels' parameter of MonitoredEstimator.record_ground_truth_batch "
                f"must have {len(prediction_ids)} items, got {len(true_labels)} instead."
            )
        items = list(zip(prediction_ids, true_labels, strict=True))
        statuses, joined = self.ground_truth.join(items)
        if not joined:
            return statuses
        classes = self._classes
        predicted = [classes[j.pred] if 0 <= j.pred < len(classes) else None for j in joined]
        if self.log is not None:
            try:
                self.log.write_sync(self._log_rows(joined, predicted))
            except Exception as exc:
                self.ground_truth.give_back(joined)
                raise MonitorError(f"ground truth could not be stored: {exc}") from exc
        self.monitor.record_joined(
            [j.id for j in joined],
            [j.label for j in joined],
            predicted,
            [j.confidence for j in joined],
            [j.pred_ts for j in joined],
        )
        return statuses

    def _log_rows(self, joined: Sequence[Any], predicted: list[Any]) -> list[dict[str, Any]]:
        m = self.monitor
        return [
            {
                "prediction_id": j.id,
                "model": m.name,
                "label": str(j.label),
                "owner": self.ground_truth.prefix,
                "status": "joined",
                "variant": m.variant,
                "version": m.version,
                "predicted": str(p),
                "predicted_index": j.pred,
                "confidence": j.confidence,
                "pred_ts": j.pred_ts,
            }
            for j, p in zip(joined, predicted, strict=True)
        ]

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.monitor.close()

    def __enter__(self) -> MonitoredEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: most distinct predicted values without a class (a regressor's) kept for the ground-truth join
_MAX_VALUES = 1_000
_OWN = frozenset(
    ("estimator", "monitor", "ground_truth", "_local", "record_inputs", "_classes", "_index", "log")
)


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
    ground_truth: GroundTruth | None = None,
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
    return MonitoredEstimator(estimator, monitor, ground_truth, record_inputs)
