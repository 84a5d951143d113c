"""MonitorState: the mutable state of one ModelMonitor that its flusher and readers share.

:class:`~leanml.monitor.ModelMonitor` is the public face (the record calls, lifecycle and
reading); everything the flusher steps (``_flush``, ``_ingest``, ``_details``, ``_truth``,
``_windows``) and the readers (``_read``) work on is here, passed to them as a parameter:

* settings: identity, config, clock, store, alert manager, drift detector, analyzer;
* intake buffers the record calls append to (``buf``, ``bbuf``, ``gt``, ``err``) and ``drops``;
* the label table, per-window counters and sketches, the accuracy, calibration and
  recent-input windows (ground truth arrives joined already: :mod:`leanml.groundtruth`);
* the outbox of rows waiting for the store, counters and the schedule of due work.

Locking: ``lock`` guards everything but the intake buffers (appends are atomic under the GIL)
and ``drops`` (``drop_lock``); ``io_lock`` serializes flusher steps so store I/O can run
outside ``lock``. After a fork, :meth:`fresh` gives a state with the same settings and nothing
counted.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from leanml._native import SingleBuffer
from leanml.config import MonitorConfig
from leanml.groundtruth import GroundTruth
from leanml.monitor._blocks import DetailQueue
from leanml.monitor._pace import Pacer
from leanml.monitor.alerts import AlertManager
from leanml.monitor.budget import OverheadBudget
from leanml.monitor.drift import DriftDetector
from leanml.monitor.estimate import CalibrationWindow, ConfidenceWindow, _Ring
from leanml.monitor.metrics import CountWindow, TimeWindow
from leanml.monitor.resources import IdleCollector, ResourceSampler
from leanml.monitor.sketch import LogSketch
from leanml.monitor.store import MonitorStore
from leanml.monitor.window import Window

__all__ = ["OTHER", "MonitorState"]

#: the shared label index of every label beyond ``max_labels``
OTHER = "__other__"

_DROPS = (
    "record_buffer",
    "batch_buffer",
    "ground_truth_buffer",
    "error_buffer",
    "detail_buffer",
    "windows_evicted",
    "store_rows",
    "labels_overflow",
    "resource_rows",
    "alert_rows",
    "labels_buffer",
)
_COUNTERS = (
    "flushes",
    "flusher_errors",
    "store_writes",
    "store_errors",
    "invalid_batches",
    "retention_runs",
)


class MonitorState:
    """See module docstring."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        variant: str,
        process_id: str,
        config: MonitorConfig,
        clock: Callable[[], float],
        store: MonitorStore | None,
        alerts: AlertManager,
        drift_detector: DriftDetector | None,
        analyzer: Callable[[str], Sequence[str]] | None,
        vocabulary: Mapping[str, Any] | None,
    ) -> None:
        self.name, self.version, self.variant = name, version, variant
        self.process_id = process_id
        self.config = config
        self.clock = clock
        self.store = store
        self.alerts = alerts
        self.drift_detector = drift_detector
        self.analyzer, self.vocabulary = analyzer, vocabulary
        #: the ground-truth path that joins this monitor's labels, and this monitor's code in it
        self.ground_truth: GroundTruth | None = None
        self.ground_truth_code = 0
        self._init_intake()
        self._init_tables()
        self._init_quality()
        self._init_outbox()
        self._init_schedule()

    def fresh(self, process_id: str) -> MonitorState:
        """A state with these settings and nothing counted (for a forked child)."""
        st = MonitorState(
            name=self.name,
            version=self.version,
            variant=self.variant,
            process_id=process_id,
            config=self.config,
            clock=self.clock,
            store=self.store,
            alerts=self.alerts,
            drift_detector=self.drift_detector,
            analyzer=self.analyzer,
            vocabulary=self.vocabulary,
        )
        st.ground_truth, st.ground_truth_code = self.ground_truth, self.ground_truth_code
        st.budget.meter = self.budget.meter
        return st

    # ------------------------------------------------------------------ construction steps
    def _init_intake(self) -> None:
        """The buffers the record calls append to, and what they drop."""
        self.buf = SingleBuffer()  # record(): columns, in C
        self.bbuf: deque[tuple] = deque()
        self.gt: deque[tuple] = deque()
        self.err: deque[tuple[float, int]] = deque()
        self.drop_lock = threading.Lock()
        self.drops = dict.fromkeys(_DROPS, 0)

    def _init_tables(self) -> None:
        """Labels, totals, per-window counters and sketches."""
        cfg = self.config
        self.lock = threading.RLock()
        self.io_lock = threading.Lock()
        self.labels: list[Any] = []
        self.label_index: dict[Any, int] = {}
        self.label_totals = np.zeros(0, dtype=np.int64)
        self.total = 0
        self.errors = 0
        self.sampled = 0
        self.windows: dict[float, Window] = {}
        self.retired = LogSketch(cfg.relative_accuracy)  # the sketches of evicted windows
        #: every latency ever ingested (a running merge: the lifetime view copies one sketch)
        self.lifetime = LogSketch(cfg.relative_accuracy)
        #: the monitor's own cost: flusher CPU (thread time of every step), the caller-side
        #: cost measured on a sample of wrapped calls, and the model time it is compared with
        self.flusher_cpu_ns = 0
        self.caller_sampled_ns = 0
        self.caller_samples = 0
        self.caller_calls = 0
        self.model_s = 0.0
        self.seconds: dict[int, int] = {}  # predictions per whole second (throughput)
        #: recording paused by the caller since (None: not paused), and the last pauses
        #: (start, end): the throughput rule leaves their windows out
        self.paused_at: float | None = None
        self.pauses: deque[tuple[float, float]] = deque(maxlen=16)
        self.drift_cache: dict[str, Any] = {}  # the rolling drift scores of the last alert round

    def _init_quality(self) -> None:
        """Ground-truth counts and the accuracy, calibration and recent-input windows."""
        cfg = self.config
        #: labels joined (and scored) here; restored: rebuilt from the durable log at start
        self.gt_counts = {"joined": 0, "restored": 0}
        self.count_window = CountWindow(cfg.metrics_window_n)
        self.time_window = TimeWindow(cfg.metrics_window_s)
        self._init_recent(cfg)

    def _init_recent(self, cfg: MonitorConfig) -> None:
        self.confidence = ConfidenceWindow(cfg.recent_window_n)
        self.calibration = CalibrationWindow(cfg.recent_window_n, cfg.calibration_tolerance)
        self.recent_labels = _Ring(cfg.recent_window_n, np.int32)
        self.recent_lengths = _Ring(cfg.recent_window_n, np.float64)
        self.recent_oov = _Ring(cfg.recent_window_n, np.float64)

    def _init_outbox(self) -> None:
        """Rows waiting for the store, resources and the idle collector."""
        cfg = self.config
        self.details = DetailQueue()  # sampled predictions waiting for the store
        self.label_rows: deque[dict[str, Any]] = deque()
        self.alert_rows: list[dict[str, Any]] = []
        self.resource_rows: list[dict[str, Any]] = []
        # rows a step on a recording thread collected, for the flusher thread to write (no
        # store I/O on a thread that predicts: a store that is down would hold it)
        self.unwritten: dict[str, list[Any]] | None = None
        self.resources = ResourceSampler(
            cfg.resource_history, disk_usage=self.store.disk_usage if self.store else None
        )
        self.gc = IdleCollector(cfg.gc_idle_s) if cfg.gc_idle_collect else None
        self.last_retention: dict[str, Any] | None = None
        self.counters = dict.fromkeys(_COUNTERS, 0)
        #: the CPU budget of optional work (text statistics), fed by the recorded latencies
        self.budget = OverheadBudget(cfg.overhead_budget)

    def _init_schedule(self) -> None:
        cfg = self.config
        now = self.clock()
        self.started = now
        self.pace = Pacer(cfg.flush_hold_s)  # the flusher's pauses that let the GIL go
        self.due = {
            "alerts": now,
            "store": now + cfg.store_interval_s,
            "resources": now,
            "retention": now + cfg.retention_interval_s,
        }

    # ------------------------------------------------------------------ settings
    def reconfigure(self, cfg: MonitorConfig) -> None:
        """Take ``cfg`` (validated by the caller): resize what its sizes bound."""
        old, self.config = self.config, cfg
        if cfg.metrics_window_n != old.metrics_window_n:
            self.count_window = CountWindow(cfg.metrics_window_n)
        self.time_window.seconds = cfg.metrics_window_s
        if cfg.recent_window_n != old.recent_window_n:
            self._init_recent(cfg)
        self.calibration.tolerance = cfg.calibration_tolerance
        self.budget.budget = cfg.overhead_budget
        self.pace.every_s = cfg.flush_hold_s
        self.alerts.set_rules(cfg.alert_rules)
        self.alerts.max_events = cfg.max_events
        self.resources.samples = deque(self.resources.samples, maxlen=cfg.resource_history)

    # ------------------------------------------------------------------ tables
    def window(self, ts: float) -> Window:
        """The window holding time ``ts`` (created on first use)."""
        width = self.config.window_s
        start = math.floor(ts / width) * width
        w = self.windows.get(start)
        if w is None:
            w = Window(start, width, self.config.relative_accuracy, self.config.recent_window_n)
            self.windows[start] = w
        return w

    def label_indices(self, labels: Sequence[Any]) -> np.ndarray:
        """Small integer per label; beyond ``max_labels`` distinct labels, one shared
        ``__other__`` index (counted in ``drops.labels_overflow``) so that a caller passing ids
        or floats as labels cannot grow memory without bound."""
        index = self.label_index
        idx = list(map(index.get, labels))
        if None in idx:
            for pos, lab in enumerate(labels):
                if idx[pos] is None:
                    idx[pos] = self._new_label(lab)
        return np.asarray(idx, dtype=np.int32)

    def _new_label(self, lab: Any) -> int:
        got = self.label_index.get(lab)  # seen earlier in the same call
        if got is not None:
            return got
        if len(self.labels) < self.config.max_labels:
            key = lab.item() if isinstance(lab, np.generic) else lab
            got = self.label_index[key] = len(self.labels)
            self.labels.append(key)
            return got
        self.drops["labels_overflow"] += 1
        other = self.label_index.get(OTHER)
        if other is None:
            other = self.label_index[OTHER] = len(self.labels)
            self.labels.append(OTHER)
        return other

    def paused_during(self, start: float, end: float) -> bool:
        """Whether recording was paused at any time in ``[start, end)``."""
        if self.paused_at is not None and self.paused_at < end:
            return True
        return any(a < end and b > start for a, b in self.pauses)

    def stats_windows(self, now: float) -> list[Window]:
        """The windows overlapping the stats window that ends at ``now``."""
        lo = now - self.config.stats_window_s
        return [w for w in self.windows.values() if w.start + w.width > lo]

    def latency_sketch(self, since: float | None = None) -> LogSketch:
        """A merged copy of the window sketches newer than ``since``; without ``since`` a copy
        of the running lifetime sketch (every window, retired ones included: no merge)."""
        if since is None:
            return self.lifetime.copy()
        out = LogSketch(self.config.relative_accuracy)
        for w in self.windows.values():
            if since is None or w.start + w.width > since:
                out.merge(w.sketch)
        return out
