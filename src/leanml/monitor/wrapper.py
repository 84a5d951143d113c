"""``monitored(estimator, name=...)``: a transparent, timing and recording wrapper.

The wrapper delegates every attribute to the estimator; ``predict`` and ``predict_proba`` are
timed with ``perf_counter`` and recorded in the monitor (labels and top-class confidences from
:func:`leanml._predict.predict_with_confidence`, so ``predict`` costs one ``predict_proba``; each
prediction of a batch is recorded with the batch latency divided by its size). Exceptions are
counted as errors and re-raised. One input (``predict([x])``, ``predict_with_ids([x])``) of a
classifier takes :class:`leanml._native.OneCall`: the model's call (a compact text model's
one-pass ``predict_fused_one``), the id and the record, in C from the call to the answer.

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

from collections.abc import Sequence
from time import perf_counter, perf_counter_ns
from typing import Any

import numpy as np

from leanml._native import DECISION, FUSED, PROBA, LastIds, OneCall, take_at
from leanml._predict import scores_to_proba
from leanml._text import oov_inputs
from leanml.errors import MonitorError
from leanml.groundtruth import FeedbackLog, GroundTruth
from leanml.monitor._read import CALLER_SAMPLE_EVERY
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
        self._last = LastIds()  # each thread's last prediction ids
        classes = getattr(estimator, "classes_", None)
        self._classes: list[Any] = [] if classes is None else list(np.asarray(classes).tolist())
        self._index = {c: i for i, c in enumerate(self._classes)}
        self._bind(estimator)
        self.log: FeedbackLog | None = None
        store = monitor.store
        if store is not None:
            self.log = FeedbackLog(
                store.engine, store.process_id, table_prefix=store.prefix, clock=clock
            )
            self.log.register_space(self.ground_truth.prefix, monitor.name)
            monitor.restore(self.log)

    def _bind(self, est: Any) -> None:
        """Resolve once what every call needs: the model's one-pass methods (compact text
        models), else its scoring method, the class array, the hot-path callables."""
        self._labels = None if _classes_of(est) is None else np.asarray(_classes_of(est))
        # the same classes as Python objects: a batch's labels for the monitor are taken from
        # here (shared objects, their hashes cached), not made from the array one by one
        self._label_list = None if self._labels is None else self._labels.tolist()
        fused_one = getattr(est, "predict_fused_one", None)
        fused = getattr(est, "predict_fused", None)
        ok = self._labels is not None and callable(fused_one) and callable(fused)
        self._fused = fused if ok else None
        self._proba_fn = getattr(est, "predict_proba", None)
        self._decision_fn = getattr(est, "decision_function", None)
        self._calls = 0
        self._issue = self.ground_truth.issue
        self._record = self.monitor.record
        self._record_batch = self.monitor.record_batch
        kind, model = _one_call_kind(self._labels, fused_one if ok else None, est)
        if kind is not None:  # one input: C from the call to the answer (_native.OneCall)
            one = OneCall(
                kind,
                model,
                self._labels,
                self.ground_truth,
                self.monitor.recorder,
                self.record_inputs,
                self._last,
                self._note,
                self.monitor.record_error,
                _SAMPLE_MASK + 1,
                self._predict_any,
                self._predict_with_ids_any,
            )
            # instance attributes over the methods below, which take every other input
            self.predict = one.predict  # type: ignore[method-assign]
            self.predict_with_ids = one.predict_with_ids  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:
            raise AttributeError(name)
        return getattr(self.estimator, name)

    @property
    def last_prediction_ids(self) -> list[str]:
        return self._last.get()

    def _note(self, ns: int) -> None:
        """One sampled call's own cost (ids, record) for the monitor's overhead figure."""
        self.monitor.note_caller_cost(ns, _SAMPLE_MASK + 1)

    def _run(self, X: Any, want_proba: bool = False) -> tuple[np.ndarray, Any, list[str]]:
        t0 = perf_counter()
        counts = None
        proba = None
        try:
            if self._fused is not None and _is_texts(X):
                top, conf, proba, counts = self._fused(X, want_proba)
                labels = self._labels[top]  # type: ignore[index]
            elif self._proba_fn is not None or self._decision_fn is not None:
                top, conf, proba = self._scores(X)
                labels = self._labels[top] if self._labels is not None else top
            else:  # no scores (e.g. a regressor): labels only, confidence unknown (NaN)
                labels = np.asarray(self.estimator.predict(X))
                conf = np.full(len(labels), np.nan)
                top = None
        except Exception:
            self.monitor.record_error(_len(X))
            raise
        dt = perf_counter() - t0
        calls = self._calls = self._calls + 1
        timed = not calls & _SAMPLE_MASK
        if timed:
            t1 = perf_counter_ns()
        n = len(labels)
        inputs = X if self.record_inputs and _is_texts(X) else None
        if top is None or self._labels is None:  # the ring's index of each predicted value
            values = labels.tolist()
            pred: Any = [self._index.get(lab) for lab in values]
            if None in pred:
                new = self._new_class
                pred = [new(v) if p is None else p for v, p in zip(values, pred, strict=True)]
        else:
            pred = top
        if n == 1:
            ids = self._issue(1, 0, int(pred[0]), float(conf[0]))
            tok, known = (int(counts[0][0]), int(counts[1][0])) if counts is not None else (-1, 0)
            self._record(
                ids[0], labels[0], float(conf[0]), dt, inputs[0] if inputs else None, tok, known
            )
        else:
            ids = self._issue(n, 0, pred, conf)
            names = self._label_list
            self._record_batch(
                ids,
                labels
                if top is None or names is None
                else take_at(names, top.astype(np.int64, copy=False)),
                conf,
                dt / n if n else 0.0,
                list(inputs) if inputs is not None else None,
                counts,
                dt,  # the model's time for the batch
            )
        self._last.set(ids)
        if timed:
            self._note(perf_counter_ns() - t1)
        return labels, proba, ids

    def _scores(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class indices, top-class probabilities, probabilities), as
        :func:`leanml._predict.predict_top`, with the scoring method resolved at wrap time."""
        if self._proba_fn is not None:
            try:
                proba = np.asarray(self._proba_fn(X))
            except AttributeError:  # e.g. SGDClassifier(loss="hinge") has the name, refuses
                if self._decision_fn is None:
                    raise
                proba = scores_to_proba(self._decision_fn(X))
        else:
            proba = scores_to_proba(self._decision_fn(X))  # type: ignore[misc]
        top = proba.argmax(axis=1)
        return top, proba[np.arange(len(top)), top], proba

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
        if self._proba_fn is None:
            raise AttributeError(f"{type(self.estimator).__name__} has no predict_proba")
        return self._run(X, True)[1]

    def predict_with_ids(self, X: Any) -> tuple[np.ndarray, list[str]]:
        labels, _, ids = self._run(X)
        return labels, ids

    # what the one-input path (OneCall) hands every other input
    _predict_any = predict
    _predict_with_ids_any = predict_with_ids

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
    (
        "estimator",
        "monitor",
        "ground_truth",
        "_last",
        "record_inputs",
        "_classes",
        "_index",
        "log",
        "_labels",
        "_fused",
        "_proba_fn",
        "_decision_fn",
        "_issue",
        "_record",
        "_record_batch",
        "_calls",
    )
)
#: one wrapped call in CALLER_SAMPLE_EVERY times its own cost (the mask of a power of two)
_SAMPLE_MASK = CALLER_SAMPLE_EVERY - 1


def _classes_of(estimator: Any) -> Any:
    """The estimator's ``classes_`` (None when it has none: a regressor, an unfitted model)."""
    try:
        return estimator.classes_
    except AttributeError:
        return None


def _one_call_kind(labels: Any, fused_one: Any, est: Any) -> tuple[int | None, Any]:
    """How :class:`~leanml._native.OneCall` gets one input's class and confidence: the
    compact model's one-pass call, else ``predict_proba``, else ``decision_function``
    (None: no one-input path, e.g. a regressor)."""
    if labels is None:
        return None, None
    if fused_one is not None:
        return FUSED, fused_one
    for kind, name in ((PROBA, "predict_proba"), (DECISION, "decision_function")):
        method = getattr(est, name, None)
        if method is not None:
            return kind, method
    return None, None


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
    starting with a fitted text vectorizer, the out-of-vocabulary rate of sampled inputs is scored
    on its words (:func:`leanml._text.oov_inputs`; a compact text model counts them itself).
    """
    if monitor is None:
        if "analyzer" not in monitor_kwargs and "vocabulary" not in monitor_kwargs:
            monitor_kwargs.update(oov_inputs(estimator))
        monitor = ModelMonitor(name, **monitor_kwargs)
    return MonitoredEstimator(estimator, monitor, ground_truth, record_inputs)
