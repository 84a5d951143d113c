"""ModelMonitor: record every prediction in a few hundred nanoseconds, do the rest in background.

Hot path contract:

* :meth:`ModelMonitor.record` does one bounded-length check, one clock read and one
  ``deque.append`` of a tuple (atomic under the GIL: no lock, no I/O, no allocation besides the
  tuple). When the buffer holds ``buffer_size`` records the record is dropped and counted
  (``drops.record_buffer``); dropped predictions still count in the totals.
* :meth:`ModelMonitor.record_batch` appends one tuple of arrays (the arrays are kept by
  reference: do not mutate them afterwards).
* :meth:`ModelMonitor.record_ground_truth` / ``record_ground_truth_batch`` and
  :meth:`ModelMonitor.record_error` are appends too.

A background flusher thread (every ``flush_interval_s``) moves buffered records into per-window
counters and latency sketches, the pending-join table, accuracy/calibration windows and the
sampled-detail queue; evaluates alerts; samples resources; writes the store every
``store_interval_s``; and applies retention. :meth:`flush` does all of that synchronously;
:meth:`close` (or leaving the ``with`` block) flushes everything and stops the thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from leanml._validation import param_error
from leanml.errors import ConfigError, MonitorError
from leanml.monitor.alerts import AlertManager, AlertSink, LogSink
from leanml.monitor.config import MonitorConfig
from leanml.monitor.drift import DriftDetector, Reference
from leanml.monitor.estimate import CalibrationWindow, ConfidenceWindow, _Ring
from leanml.monitor.join import PendingJoin
from leanml.monitor.metrics import CountWindow, TimeWindow
from leanml.monitor.resources import IdleCollector, ResourceSampler
from leanml.monitor.sketch import LogSketch
from leanml.monitor.store import PREDICTION_COLUMNS, MonitorStore, default_process_id
from leanml.monitor.window import Window

__all__ = ["ModelMonitor", "input_hash"]

logger = logging.getLogger("leanml.monitor")
_QS = (0.5, 0.95, 0.99, 0.999)
_QNAMES = ("p50", "p95", "p99", "p999")


class ModelMonitor:
    """Monitoring of one model variant in one process (see module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "",
        variant: str = "default",
        config: MonitorConfig | None = None,
        store: MonitorStore | str | None = None,
        reference: Reference | Mapping[str, Any] | None = None,
        analyzer: Callable[[str], Sequence[str]] | None = None,
        vocabulary: Mapping[str, Any] | None = None,
        sinks: Sequence[AlertSink] | None = None,
        clock: Callable[[], float] = time.time,
        process_id: str | None = None,
        start: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise param_error("name", "ModelMonitor", "a non-empty str", name)
        cfg = config if config is not None else MonitorConfig()
        if not isinstance(cfg, MonitorConfig):
            raise param_error("config", "ModelMonitor", "a MonitorConfig", config)
        self.name, self.version, self.variant = name, version, variant
        self.config = cfg
        self._clock = clock
        self._owns_store = isinstance(store, str)
        self.store = MonitorStore(store, process_id=process_id) if isinstance(store, str) else store
        self.process_id = (
            self.store.process_id if self.store else process_id or default_process_id()
        )
        self.drift_detector = DriftDetector(reference) if reference is not None else None
        self.analyzer, self.vocabulary = analyzer, vocabulary
        #: with ``pending_join=False``: how many predictions the caller's table holds unlabeled
        self.pending_count: Callable[[], int] | None = None
        self.alerts = AlertManager(
            cfg.alert_rules,
            [LogSink()] if sinks is None else sinks,
            model=name,
            variant=variant,
            max_events=cfg.max_events,
        )
        self._init_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))
        if start:
            self.start()

    def _init_state(self) -> None:
        """Buffers, counters, windows and threads of this process (fresh after a fork)."""
        cfg = self.config
        clock = self._clock
        # hot-path state: bound methods and bounds read on every call
        self._buf: deque[tuple] = deque()
        self._append = self._buf.append
        self._cap = cfg.buffer_size
        self._bbuf: deque[tuple] = deque()
        self._bappend = self._bbuf.append
        self._bcap = cfg.batch_buffer_size
        self._gt: deque[tuple] = deque()
        self._gtappend = self._gt.append
        self._gtcap = cfg.ground_truth_buffer_size
        self._err: deque[tuple[float, int]] = deque()
        self._drop_lock = threading.Lock()
        self.drops = {
            "record_buffer": 0,
            "batch_buffer": 0,
            "ground_truth_buffer": 0,
            "error_buffer": 0,
            "detail_buffer": 0,
            "windows_evicted": 0,
            "store_rows": 0,
            "labels_overflow": 0,
            "resource_rows": 0,
            "alert_rows": 0,
            "labels_buffer": 0,
            "forward_buffer": 0,
        }
        # flusher-owned state
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()
        self._labels: list[Any] = []
        self._label_index: dict[Any, int] = {}
        self._label_totals = np.zeros(0, dtype=np.int64)
        self.total = 0
        self.errors = 0
        self.sampled = 0
        self._windows: dict[float, Window] = {}
        self._retired = LogSketch(cfg.relative_accuracy)
        self._seconds: dict[int, int] = {}
        self.pending = (
            PendingJoin(cfg.pending_max_entries, cfg.pending_max_age_s, cfg.late_memory)
            if cfg.pending_join
            else PendingJoin(1, cfg.pending_max_age_s, 0)  # counters only: record_joined
        )
        self.count_window = CountWindow(cfg.metrics_window_n)
        self.time_window = TimeWindow(cfg.metrics_window_s)
        self.confidence = ConfidenceWindow(cfg.recent_window_n)
        self.calibration = CalibrationWindow(cfg.recent_window_n, cfg.calibration_tolerance)
        self._recent_labels = _Ring(cfg.recent_window_n, np.int32)
        self._recent_lengths = _Ring(cfg.recent_window_n, np.float64)
        self._recent_oov = _Ring(cfg.recent_window_n, np.float64)
        self._details: deque[tuple] = deque()  # rows in store.PREDICTION_COLUMNS order
        self._label_rows: deque[dict[str, Any]] = deque()
        self._forward_rows: deque[dict[str, Any]] = deque()
        self._alert_rows: list[dict[str, Any]] = []
        self._resource_rows: list[dict[str, Any]] = []
        self.resources = ResourceSampler(
            cfg.resource_history, disk_usage=self.store.disk_usage if self.store else None
        )
        self.gc = IdleCollector(cfg.gc_idle_s) if cfg.gc_idle_collect else None
        self._drift_cache: dict[str, Any] = {}
        self.last_retention: dict[str, Any] | None = None
        self.counters = {
            "flushes": 0,
            "flusher_errors": 0,
            "store_writes": 0,
            "store_errors": 0,
            "invalid_batches": 0,
            "retention_runs": 0,
        }
        now = clock()
        self.started = now
        self._due = {
            "alerts": now,
            "store": now + cfg.store_interval_s,
            "resources": now,
            "retention": now + cfg.retention_interval_s,
        }
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ hot path
    def record(
        self,
        prediction_id: Hashable,
        label: Any,
        confidence: float,
        latency_s: float,
        input: str | None = None,
    ) -> None:
        """Record one prediction; returns at once (no lock, no I/O)."""
        if len(self._buf) < self._cap:
            self._append((prediction_id, label, confidence, latency_s, input, self._clock()))
        else:
            self._drop("record_buffer", 1)

    def record_batch(
        self,
        ids: Sequence[Hashable],
        labels: Sequence[Any] | np.ndarray,
        confidences: Sequence[float] | np.ndarray,
        latencies: Sequence[float] | np.ndarray | float,
        inputs: Sequence[str | None] | None = None,
    ) -> None:
        """Record a batch (arrays aligned by position; ``latencies`` may be one float)."""
        n = len(ids)
        if len(labels) != n or len(confidences) != n or (inputs is not None and len(inputs) != n):
            raise param_error(
                "labels/confidences/inputs",
                "ModelMonitor.record_batch",
                f"sequences of the same length as ids ({n})",
                (len(labels), len(confidences)),
            )
        if (
            isinstance(latencies, (list, tuple))
            or (isinstance(latencies, np.ndarray) and latencies.ndim)
        ) and len(latencies) != n:
            raise param_error(
                "latencies",
                "ModelMonitor.record_batch",
                f"one float or a sequence of the same length as ids ({n})",
                len(latencies),
            )
        if len(self._bbuf) < self._bcap:
            self._bappend((ids, labels, confidences, latencies, inputs, self._clock()))
        else:
            self._drop("batch_buffer", n)

    def record_error(self, n: int = 1) -> None:
        """Count ``n`` failed predictions."""
        if len(self._err) < self._cap:
            self._err.append((self._clock(), n))
        else:
            self._drop("error_buffer", n)

    def record_ground_truth(
        self, prediction_id: Hashable, true_label: Any, ts: float | None = None
    ) -> None:
        """Queue the true label of an earlier prediction for joining."""
        if len(self._gt) < self._gtcap:
            self._gtappend(((prediction_id,), (true_label,), self._clock() if ts is None else ts))
        else:
            self._drop("ground_truth_buffer", 1)

    def record_ground_truth_batch(
        self,
        ids: Sequence[Hashable],
        true_labels: Sequence[Any],
        ts: float | Sequence[float] | None = None,
    ) -> None:
        if len(true_labels) != len(ids):
            raise param_error(
                "true_labels",
                "ModelMonitor.record_ground_truth_batch",
                f"a sequence of the same length as ids ({len(ids)})",
                len(true_labels),
            )
        if len(self._gt) < self._gtcap:
            self._gtappend((ids, true_labels, self._clock() if ts is None else ts))
        else:
            self._drop("ground_truth_buffer", len(ids))

    def record_joined(
        self,
        ids: Sequence[Hashable],
        true_labels: Sequence[Any],
        predicted_labels: Sequence[Any],
        confidences: Sequence[float] | np.ndarray,
        pred_ts: Sequence[float] | np.ndarray,
        ts: float | None = None,
    ) -> None:
        """Queue ground truth the caller has already matched to its predictions.

        For callers that keep their predictions themselves (``pending_join=False``): each item
        counts as ``joined`` and feeds the accuracy and calibration windows of ``pred_ts``.
        """
        n = len(ids)
        if len(true_labels) != n or len(predicted_labels) != n or len(confidences) != n:
            raise param_error(
                "true_labels/predicted_labels/confidences",
                "ModelMonitor.record_joined",
                f"sequences of the same length as ids ({n})",
                (len(true_labels), len(predicted_labels), len(confidences)),
            )
        if len(pred_ts) != n:
            raise param_error(
                "pred_ts", "ModelMonitor.record_joined", f"{n} timestamps", len(pred_ts)
            )
        if len(self._gt) < self._gtcap:
            now = self._clock() if ts is None else ts
            self._gtappend((ids, true_labels, now, (predicted_labels, confidences, pred_ts)))
        else:
            self._drop("ground_truth_buffer", n)

    def _drop(self, which: str, n: int) -> None:
        if self._closed:
            raise MonitorError(f"monitor {self.name!r} is closed")
        with self._drop_lock:
            self.drops[which] += n

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name=f"leanml-monitor-{self.name}"
            )
            self._thread.start()

    def _run(self) -> None:
        more = False
        while not (self._stop.is_set() if more else self._stop.wait(self.config.flush_interval_s)):
            try:
                more = self._step(force=False)  # a backlog beyond flush_batch_size: go on
            except Exception:  # keep monitoring alive; count and log
                more = False
                self.counters["flusher_errors"] += 1
                logger.exception("monitor %s: flusher step failed", self.name)

    def flush(self) -> None:
        """Process every buffered record now and write the store (blocking)."""
        self._step(force=True)

    def close(self) -> None:
        """Flush everything, stop the flusher, close sinks (and the store if opened by URL)."""
        if self._closed:
            return
        # stop intake first: records racing with close are counted as dropped, later ones raise
        self._cap = self._bcap = self._gtcap = 0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        self._closed = True
        self.alerts.close()
        if self.gc is not None:
            self.gc.close()
        if self._owns_store and self.store is not None:
            self.store.close()

    def __enter__(self) -> ModelMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def configure(self, **changes: Any) -> MonitorConfig:
        """Change settings at run time (validated; takes effect at the next call / step)."""
        with self._lock:
            cfg = replace(self.config, **changes)
            old = self.config
            if cfg.pending_join != old.pending_join:
                raise ConfigError("pending_join cannot change at run time")
            if cfg.relative_accuracy != old.relative_accuracy:
                raise ConfigError(
                    "relative_accuracy cannot change at run time (sketches of different "
                    f"accuracy do not merge), got {cfg.relative_accuracy!r}"
                )
            self.config = cfg
            self._cap, self._bcap, self._gtcap = (
                cfg.buffer_size,
                cfg.batch_buffer_size,
                cfg.ground_truth_buffer_size,
            )
            if cfg.pending_join and (
                cfg.pending_max_entries,
                cfg.pending_max_age_s,
                cfg.late_memory,
            ) != (
                old.pending_max_entries,
                old.pending_max_age_s,
                old.late_memory,
            ):
                self.pending.resize(cfg.pending_max_entries, cfg.pending_max_age_s, cfg.late_memory)
            if cfg.metrics_window_n != old.metrics_window_n:
                self.count_window = CountWindow(cfg.metrics_window_n)
            self.time_window.seconds = cfg.metrics_window_s
            if cfg.recent_window_n != old.recent_window_n:
                self.confidence = ConfidenceWindow(cfg.recent_window_n)
                self.calibration = CalibrationWindow(cfg.recent_window_n, cfg.calibration_tolerance)
                self._recent_labels = _Ring(cfg.recent_window_n, np.int32)
                self._recent_lengths = _Ring(cfg.recent_window_n, np.float64)
                self._recent_oov = _Ring(cfg.recent_window_n, np.float64)
            self.calibration.tolerance = cfg.calibration_tolerance
            self.alerts.set_rules(cfg.alert_rules)
            self.alerts.max_events = cfg.max_events
            self.resources.samples = deque(self.resources.samples, maxlen=cfg.resource_history)
            return cfg

    def set_reference(self, reference: Reference | Mapping[str, Any] | None) -> None:
        with self._lock:
            self.drift_detector = DriftDetector(reference) if reference is not None else None

    # ------------------------------------------------------------------ flusher
    def _step(self, force: bool) -> bool:
        from leanml.monitor import _flush

        return _flush.step(self, force)

    # ------------------------------------------------------------------ reading
    def label_of(self, index: int) -> Any:
        return self._labels[index]

    def _stats_windows(self, now: float) -> list[Window]:
        lo = now - self.config.stats_window_s
        return [w for w in self._windows.values() if w.start + w.width > lo]

    def latency_sketch(self, since: float | None = None) -> LogSketch:
        """A merged copy of the in-memory window sketches (all of them plus retired if no since)."""
        with self._lock:
            out = LogSketch(self.config.relative_accuracy)
            if since is None:
                out.merge(self._retired)
            for w in self._windows.values():
                if since is None or w.start + w.width > since:
                    out.merge(w.sketch)
            return out

    def metrics(self) -> dict[str, tuple[float | None, int]]:
        """Flat metric table (name -> (value, sample size)) that alert rules read."""
        from leanml.monitor import _read

        with self._lock:
            return _read.metric_table(self, self._clock())

    def stats(self) -> dict[str, Any]:
        """Everything a dashboard or the serving layer reads, as a plain dict."""
        from leanml.monitor import _read

        with self._lock:
            return _read.stats(self, self._clock())

    snapshot = stats

    def health(self) -> str:
        return self.alerts.health()

    def prometheus_text(self) -> str:
        from leanml.monitor.prometheus import render

        return render([self])

    def sampled_records(self) -> list[dict[str, Any]]:
        """Sampled detail records not yet written (all of them when there is no store)."""
        with self._lock:
            return [dict(zip(PREDICTION_COLUMNS, r, strict=True)) for r in self._details]


def _after_fork(ref: weakref.ReferenceType[ModelMonitor]) -> None:
    """In a forked child (e.g. gunicorn --preload): start over with empty state, a new process
    id and a flusher thread, so the parent's counts are not written twice."""
    m = ref()
    if m is None or m._closed:
        return
    running = m._thread is not None
    m.process_id = m.store.process_id if m.store is not None else default_process_id()
    m._init_state()
    if running:
        m.start()


#: hashlib releases the GIL while hashing 2048 bytes or more: on the flusher thread that means
#: handing the GIL to the event loop and back per long text, so it is fed in smaller pieces
_HASH_PIECE = 2047


def input_hash(text: str) -> str:
    """SHA-256 (hex) of ``text`` in UTF-8."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= _HASH_PIECE:
        return hashlib.sha256(data).hexdigest()
    view = memoryview(data)
    h = hashlib.sha256()
    for i in range(0, len(data), _HASH_PIECE):
        h.update(view[i : i + _HASH_PIECE])
    return h.hexdigest()
