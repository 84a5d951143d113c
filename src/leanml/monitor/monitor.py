"""ModelMonitor: record every prediction in a few hundred nanoseconds, do the rest in background.

Hot path contract:

* :meth:`ModelMonitor.record` converts the numbers, reads the clock, does one bounded-length
  check and puts the record in a :class:`leanml._native.SingleBuffer` (columns in C: three
  list appends and five stores, atomic under the GIL: no lock, no I/O, no tuple), all in C
  (:class:`leanml._native.Recorder`). A confidence, latency or count that is not a number is
  refused there (counted in ``invalid_batches``). When the buffer holds ``buffer_size`` records
  the record is dropped and counted (``drops.record_buffer``); dropped predictions still count
  in the totals.
* :meth:`ModelMonitor.record_batch` appends one tuple of arrays (the arrays are kept by
  reference: do not mutate them afterwards).
* :meth:`ModelMonitor.record_joined` (labels already matched to their predictions, by the
  ground-truth path of :mod:`leanml.groundtruth`) and :meth:`ModelMonitor.record_error` are
  appends too. The monitor keeps no prediction id: the :class:`~leanml.groundtruth.GroundTruth`
  that issued them holds the pending predictions (``monitor.ground_truth``, for the stats).

A flusher step (every ``flush_interval_s``) moves buffered records into per-window counters and
latency sketches, accuracy/calibration windows and the sampled-detail queue; evaluates alerts;
samples resources; writes the store every ``store_interval_s``; and applies retention.
:meth:`flush` does all of that synchronously; :meth:`close` (or leaving the ``with`` block)
flushes everything and stops the flusher thread.

Where a step runs: with ``flush_on_record`` (the default) the first record at or after the
step's due time runs it on the recording thread, once that record is in the buffer (the call
that does so waits for it: about a millisecond for a thousand records); a reader
(:meth:`stats`, :meth:`metrics`...) runs one first when records wait, so it sees every
prediction recorded before it asked. Such a step does no store I/O (a store that is down would
hold the prediction): the flusher thread writes the rows it collected, applies retention, looks
in every ``store_interval_s`` and steps when records have stopped, when a buffer is half full,
and for :meth:`close`. The reason is CPU: a thread that waits must take the GIL back from the
thread calling the model, and a scikit-learn pipeline lets the GIL go and takes it back many
times a prediction; each release wakes the waiting thread, which finds the GIL taken again, so
CPython's switch-interval request never fires: a wake of the flusher thread beside such a
model cost about 1.7 ms of CPU, and its steps four times what they cost on the recording thread
(``benchmarks/flusher_gil.py``). With ``flush_on_record`` off (``leanml serve``: its event loop
must not run steps) the flusher thread steps; with ``flush_hold_s`` set (``leanml serve`` sets
it) it pauses briefly every ``flush_hold_s`` it has held the GIL, so that the threads serving
predictions are not kept waiting by a long step (:mod:`~leanml.monitor._pace`).

Layout: ``ModelMonitor`` is the public face; the state the flusher and the readers share is one
:class:`~leanml.monitor._state.MonitorState` they take as a parameter. The flusher's step is
``_flush`` (order and schedule), ``_pace`` (its pauses), ``_ingest`` (records into windows and
sketches), ``_details`` (sampled detail rows), ``_truth`` (ground-truth join and scoring) and
``_windows`` (closing and evicting windows, alerts, store rows); the readers are ``_read``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

import numpy as np

from leanml._logging import limited
from leanml._native import Recorder
from leanml._validation import param_error
from leanml.config import MonitorConfig
from leanml.errors import ConfigError, MonitorError
from leanml.groundtruth import FeedbackLog, GroundTruth
from leanml.monitor._flush import step
from leanml.monitor._read import metric_table
from leanml.monitor._read import stats as read_stats
from leanml.monitor._state import MonitorState
from leanml.monitor.alerts import AlertManager, AlertSink, LogSink
from leanml.monitor.drift import DriftDetector, Reference
from leanml.monitor.estimate import CalibrationWindow, ConfidenceWindow
from leanml.monitor.metrics import CountWindow, TimeWindow
from leanml.monitor.prometheus import render
from leanml.monitor.resources import IdleCollector, ResourceSampler
from leanml.monitor.sketch import LogSketch
from leanml.monitor.stats import MonitorStats
from leanml.monitor.store import PREDICTION_COLUMNS, MonitorStore, default_process_id

__all__ = ["ModelMonitor"]

_log = limited("leanml.monitor")  # failures repeat during a store outage
_T = TypeVar("_T")


class _FromState(Generic[_T]):
    """A public attribute of ModelMonitor that lives on its :class:`MonitorState`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def __get__(self, monitor: ModelMonitor | None, owner: type | None = None) -> _T:
        if monitor is None:  # looked up on the class: there is no value
            raise AttributeError(self.attr)
        return getattr(monitor.state, self.attr)

    def __set__(self, monitor: ModelMonitor, value: _T) -> None:
        setattr(monitor.state, self.attr, value)


class ModelMonitor:
    """Monitoring of one model variant in one process (see module docstring).

    The flusher and the readers work on :attr:`state` (a
    :class:`~leanml.monitor._state.MonitorState`); the public attributes below read and write
    it. The record calls keep direct references to its intake buffers (no extra lookup).
    """

    config = _FromState[MonitorConfig]()
    store = _FromState[MonitorStore | None]()
    process_id = _FromState[str]()
    drift_detector = _FromState[DriftDetector | None]()
    analyzer = _FromState[Callable[[str], Sequence[str]] | None]()
    vocabulary = _FromState[Mapping[str, Any] | None]()
    #: the ground-truth path that issues this monitor's ids and joins its labels (for stats)
    ground_truth = _FromState[GroundTruth | None]()
    #: this monitor's code in :attr:`ground_truth` (its pending predictions)
    ground_truth_code = _FromState[int]()
    alerts = _FromState[AlertManager]()
    total = _FromState[int]()
    errors = _FromState[int]()
    sampled = _FromState[int]()
    drops = _FromState[dict[str, int]]()
    counters = _FromState[dict[str, int]]()
    count_window = _FromState[CountWindow]()
    time_window = _FromState[TimeWindow]()
    confidence = _FromState[ConfidenceWindow]()
    calibration = _FromState[CalibrationWindow]()
    resources = _FromState[ResourceSampler]()
    gc = _FromState[IdleCollector | None]()
    last_retention = _FromState[dict[str, Any] | None]()
    started = _FromState[float]()

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
        cpu_meter: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise param_error("name", "ModelMonitor", "a non-empty str", name)
        cfg = config if config is not None else MonitorConfig()
        if not isinstance(cfg, MonitorConfig):
            raise param_error("config", "ModelMonitor", "a MonitorConfig", config)
        self.name, self.version, self.variant = name, version, variant
        self._clock = clock
        self._owns_store = isinstance(store, str)
        own = MonitorStore(store, process_id=process_id) if isinstance(store, str) else store
        self.state = MonitorState(
            name=name,
            version=version,
            variant=variant,
            process_id=own.process_id if own else process_id or default_process_id(),
            config=cfg,
            clock=clock,
            store=own,
            alerts=AlertManager(
                cfg.alert_rules,
                [LogSink()] if sinks is None else sinks,
                model=name,
                variant=variant,
                max_events=cfg.max_events,
            ),
            drift_detector=DriftDetector(reference) if reference is not None else None,
            analyzer=analyzer,
            vocabulary=vocabulary,
        )
        if cpu_meter is not None:  # what the optional work's CPU budget reads (thread CPU time)
            self.state.budget.meter = cpu_meter
        # the flusher waits on _wake: its interval, or until a buffer is half full (or close)
        self._stop, self._wake = threading.Event(), threading.Event()
        # the C recorder's bound method shadows the method ``record`` below (same arguments,
        # no Python frame per call)
        self.recorder = Recorder(
            self.state.buf, cfg.buffer_size, clock, self._drop, self._invalid_record
        )
        self.record = self.recorder.record  # type: ignore[method-assign]
        self._closed = False
        self._thread: threading.Thread | None = None
        # the last step a recording thread ran (monotonic s), how long it took and when it
        # ended (perf_counter ns: a timed call it ran in does not count it as its own cost)
        self._stepped_at = -math.inf
        self._here_ns = self._here_end_ns = 0
        self._bind_intake(cfg)
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))
        if start:
            self.start()

    def _bind_intake(self, cfg: MonitorConfig) -> None:
        """Hot-path references: the state's buffers, their bound appends and bounds."""
        st = self.state
        self._buf = st.buf
        # a forked child's fresh buffer goes to the same recorder: the ``record`` methods
        # callers took before the fork keep working
        self.recorder.bind(
            st.buf,
            cfg.buffer_size,
            self._clock,
            self._drop,
            self._invalid_record,
            self._wake.set,
            self._step_here,
        )
        self._arm(cfg)
        self._bbuf = st.bbuf
        self._bappend = st.bbuf.append
        self._gt = st.gt
        self._gtappend = st.gt.append
        self._err = st.err
        self._cap, self._bcap, self._gtcap = (
            cfg.buffer_size,
            cfg.batch_buffer_size,
            cfg.ground_truth_buffer_size,
        )

    # ------------------------------------------------------------------ hot path
    def record(
        self,
        prediction_id: Hashable,
        label: Any,
        confidence: float,
        latency_s: float,
        input: str | None = None,
        tokens: int = -1,
        known: int = 0,
    ) -> None:
        """Record one prediction; returns at once (no lock, no I/O). ``tokens`` / ``known``:
        the input's word tokens and how many the model knows, when the model counted them
        (:meth:`~leanml.compress.CompactModel.predict_fused_one`): its out-of-vocabulary rate
        then needs no tokenization (``tokens=-1``: not counted).

        Each instance answers with :meth:`leanml._native.Recorder.record` (C), bound at
        construction; this method is the same call for a caller that reaches it through the
        class."""
        self.recorder.record(prediction_id, label, confidence, latency_s, input, tokens, known)

    def record_batch(
        self,
        ids: Sequence[Hashable],
        labels: Sequence[Any] | np.ndarray,
        confidences: Sequence[float] | np.ndarray,
        latencies: Sequence[float] | np.ndarray | float,
        inputs: Sequence[str | None] | None = None,
        tokens: tuple[np.ndarray, np.ndarray] | None = None,
        model_seconds: float | None = None,
    ) -> None:
        """Record a batch (arrays aligned by position; ``latencies`` may be one float);
        ``tokens``: the inputs' (word tokens, known tokens) arrays, as for :meth:`record`;
        ``model_seconds``: the time the model took for the whole batch, when the caller knows
        it (a server: the latencies then also hold queueing and HTTP), else the batch's
        longest latency stands for it. It is what the ``overhead`` ratio and the optional
        work's budget are shares of."""
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
        held = len(self._bbuf)
        if held < self._bcap:
            now = self._clock()
            self._bappend((ids, labels, confidences, latencies, inputs, now, tokens, model_seconds))
            if held + 1 == self._bcap >> 1:  # half full: the flusher takes it now
                self._wake.set()
            if now >= self.recorder.due:  # a step is due: this thread runs it
                self.recorder.due = math.inf
                self._step_here()
        else:
            self._drop("batch_buffer", n)

    def record_error(self, n: int = 1) -> None:
        """Count ``n`` failed predictions."""
        if len(self._err) < self._cap:
            self._err.append((self._clock(), n))
        else:
            self._drop("error_buffer", n)

    def record_joined(
        self,
        ids: Sequence[Hashable],
        true_labels: Sequence[Any],
        predicted_labels: Sequence[Any],
        confidences: Sequence[float] | np.ndarray,
        pred_ts: Sequence[float] | np.ndarray,
        ts: float | Sequence[float] | np.ndarray | None = None,
        *,
        restored: bool = False,
    ) -> None:
        """Queue ground truth already matched to its predictions (by a
        :class:`~leanml.groundtruth.GroundTruth`, or a caller that keeps its own).

        Each item counts as ``joined`` and feeds the accuracy and calibration windows, the
        joined/correct counts of its label time's window and a label row. ``restored=True``
        (labels read back from the durable log at start, counted by the process that joined
        them) feeds the accuracy and calibration windows only and counts as ``restored``.
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
        held = len(self._gt)
        if held < self._gtcap:
            now = self._clock() if ts is None else ts
            matched = (predicted_labels, confidences, pred_ts)
            self._gtappend((ids, true_labels, now, matched, restored))
            if held + 1 == self._gtcap >> 1:  # half full: the flusher takes it now
                self._wake.set()
        else:
            self._drop("ground_truth_buffer", n)

    def restore(self, log: FeedbackLog, limit: int = 100_000) -> int:
        """Rebuild the accuracy and calibration windows from the durable log: the newest
        ``limit`` joined labels of this model variant, fed as ``restored`` (see
        :meth:`record_joined`). Returns how many; :meth:`flush` applies them."""
        rows = log.joined_rows(self.name, self.variant, limit=limit)
        if rows:
            self.record_joined(
                [r["prediction_id"] for r in rows],
                [r["label"] for r in rows],
                [r["predicted"] for r in rows],
                np.asarray([np.nan if r["confidence"] is None else r["confidence"] for r in rows]),
                np.asarray([r["pred_ts"] or r["ts"] for r in rows], dtype=np.float64),
                np.asarray([r["ts"] for r in rows], dtype=np.float64),
                restored=True,
            )
        return len(rows)

    def note_caller_cost(self, ns: int, calls: int) -> None:
        """The caller's own cost of one timed call (ids, record) in ``ns``, standing for
        ``calls`` calls (the caller times one call in that many): the caller-side share of
        the ``overhead`` figure of :meth:`stats`."""
        st = self.state
        if self._here_ns and self._here_end_ns > time.perf_counter_ns() - ns:
            ns = max(0, ns - self._here_ns)  # a step ran in the timed call: not its cost
            self._here_ns = 0
        st.caller_sampled_ns += ns
        st.caller_samples += 1
        st.caller_calls += calls

    def set_paused(self, paused: bool) -> None:
        """The caller stopped (``True``) or resumed recording this model's predictions (the
        serving layer's ``PUT /v1/models/NAME/monitoring``). Nothing else changes: labels still
        join, the flusher still writes. The throughput rule has no value while its last
        window overlaps a pause (or it is paused), and windows that overlap one are left out
        of its baseline: a pause is not a traffic drop. ``stats()["paused"]`` says whether it
        is paused."""
        st = self.state
        with st.lock:
            now = self._clock()
            if paused and st.paused_at is None:
                st.paused_at = now
            elif not paused and st.paused_at is not None:
                st.pauses.append((st.paused_at, now))
                st.paused_at = None

    @property
    def paused(self) -> bool:
        return self.state.paused_at is not None

    def _invalid_record(self, message: str) -> None:
        """A record whose confidence, latency or counts are not numbers: counted, logged."""
        st = self.state
        with st.drop_lock:
            st.counters["invalid_batches"] += 1
        _log.error("monitor %s: dropped an invalid record: %s", self.name, message)

    def _drop(self, which: str, n: int) -> None:
        if self._closed:
            raise MonitorError(f"monitor {self.name!r} is closed")
        st = self.state
        with st.drop_lock:
            st.drops[which] += n

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name=f"leanml-monitor-{self.name}"
            )
            self._thread.start()
            self._arm(self.config)

    def _arm(self, cfg: MonitorConfig) -> None:
        """When the next record runs a step (``flush_on_record``, the flusher running)."""
        here = cfg.flush_on_record and self._thread is not None and not self._closed
        self.recorder.due = self._clock() + cfg.flush_interval_s if here else math.inf

    def _stepping_here(self, cfg: MonitorConfig) -> bool:
        """Whether recording threads run the steps: one did within two intervals."""
        recent = time.monotonic() - self._stepped_at < 2 * cfg.flush_interval_s
        return cfg.flush_on_record and recent

    def _step_here(self) -> None:
        """The step due when a record arrived, on the thread that recorded it (``on_due`` of
        the :class:`~leanml._native.Recorder`, and :meth:`record_batch`); skipped while the
        flusher thread steps. Never raises into the caller: a failing step is counted and
        logged, as on the flusher thread."""
        cfg = self.config
        if not cfg.flush_on_record or self._closed or self._stop.is_set() or self._thread is None:
            return
        t0 = time.perf_counter_ns()
        try:
            more = step(self.state, force=False, here=True)
        except Exception:
            more = False
            self.counters["flusher_errors"] += 1
            _log.exception("monitor %s: flusher step failed", self.name)
        self._here_end_ns = time.perf_counter_ns()
        self._here_ns = self._here_end_ns - t0
        if more is not None:
            self._stepped_at = time.monotonic()
        if self.state.unwritten is not None:  # rows for the store: the flusher thread writes
            self._wake.set()
        # a backlog beyond flush_batch_size: the next record goes on with it
        self.recorder.due = self._clock() + (0.0 if more else cfg.flush_interval_s)

    def _run(self) -> None:
        more = False
        stop, wake = self._stop, self._wake
        while True:
            woke = True
            if not more:  # a backlog beyond flush_batch_size goes on at once
                cfg = self.config
                # while records run the steps, look in rarely: each wake beside a model that
                # lets the GIL go costs milliseconds of CPU (module docstring)
                here = self._stepping_here(cfg)
                woke = wake.wait(
                    max(cfg.flush_interval_s, cfg.store_interval_s)
                    if here
                    else cfg.flush_interval_s
                )
                wake.clear()
                if not woke and self._stepping_here(cfg):
                    continue
            if stop.is_set():
                return
            try:
                more = self._step(force=False)
            except Exception:  # keep monitoring alive; count and log
                more = False
                self.counters["flusher_errors"] += 1
                _log.exception("monitor %s: flusher step failed", self.name)

    def flush(self) -> None:
        """Process every buffered record now and write the store (blocking)."""
        self._step(force=True)

    def close(self) -> None:
        """Flush everything, stop the flusher, close sinks (and the store if opened by URL)."""
        if self._closed:
            return
        # stop intake first: records racing with close are counted as dropped, later ones raise
        self._cap = self._bcap = self._gtcap = self.recorder.cap = 0
        self._stop.set()
        self._wake.set()
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
        with self.state.lock:
            cfg = replace(self.config, **changes)
            old = self.config
            if cfg.relative_accuracy != old.relative_accuracy:
                raise ConfigError(
                    "relative_accuracy cannot change at run time (sketches of different "
                    f"accuracy do not merge), got {cfg.relative_accuracy!r}"
                )
            self.state.reconfigure(cfg)
            if cfg.flush_on_record != old.flush_on_record:
                self._arm(cfg)
                self._wake.set()  # the flusher thread's wait follows
            self._cap, self._bcap, self._gtcap = (
                cfg.buffer_size,
                cfg.batch_buffer_size,
                cfg.ground_truth_buffer_size,
            )
            self.recorder.cap = cfg.buffer_size
            return cfg

    def set_reference(self, reference: Reference | Mapping[str, Any] | None) -> None:
        with self.state.lock:
            self.drift_detector = DriftDetector(reference) if reference is not None else None

    # ------------------------------------------------------------------ flusher
    def _step(self, force: bool) -> bool:
        return bool(step(self.state, force))

    # ------------------------------------------------------------------ reading
    def label_of(self, index: int) -> Any:
        return self.state.labels[index]

    def latency_sketch(self, since: float | None = None) -> LogSketch:
        """A merged copy of the in-memory window sketches (all of them plus retired if no since)."""
        self._catch_up()
        with self.state.lock:
            return self.state.latency_sketch(since)

    def _catch_up(self) -> None:
        """Before a read, with ``flush_on_record``: take the records buffered since the last
        step (the flusher thread looks in rarely while records run the steps), so a reader
        sees every prediction recorded before it asked."""
        st = self.state
        if self.config.flush_on_record and (st.buf or st.bbuf or st.gt or st.err):
            self._step_here()

    def metrics(self) -> dict[str, tuple[float | None, int]]:
        """Flat metric table (name -> (value, sample size)) that alert rules read."""
        self._catch_up()
        with self.state.lock:
            return metric_table(self.state, self._clock())

    def stats(self) -> MonitorStats:
        """Everything a dashboard or the serving layer reads, as a plain (typed) dict."""
        self._catch_up()
        with self.state.lock:
            return read_stats(self.state, self._clock())

    snapshot = stats

    def health(self) -> str:
        return self.alerts.health()

    def prometheus_text(self) -> str:
        return render([self])

    def sampled_records(self) -> list[dict[str, Any]]:
        """Sampled detail records not yet written (all of them when there is no store)."""
        self._catch_up()
        with self.state.lock:
            return [
                dict(zip(PREDICTION_COLUMNS, r, strict=True)) for r in self.state.details.records()
            ]


def _after_fork(ref: weakref.ReferenceType[ModelMonitor]) -> None:
    """In a forked child (e.g. gunicorn --preload): start over with empty state, a new process
    id and a flusher thread, so the parent's counts are not written twice."""
    m = ref()
    if m is None or m._closed:
        return
    running = m._thread is not None
    store = m.state.store
    m.state = m.state.fresh(store.process_id if store is not None else default_process_id())
    m._stop, m._wake = threading.Event(), threading.Event()
    m._thread = None
    m._stepped_at = -math.inf
    m._bind_intake(m.config)
    if running:
        m.start()
