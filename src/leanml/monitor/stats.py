"""The shape of :meth:`ModelMonitor.stats() <leanml.monitor.ModelMonitor.stats>`: typed dicts.

``stats()`` returns a plain ``dict`` (JSON as is) typed by :class:`MonitorStats`; its sections
are typed dicts too, except those that are tables of named counters (``drops``, ``counters``,
``ground_truth``), which are ``dict[str, int]`` with the keys listed in the monitor's docs.
The drift section holds :class:`~leanml.monitor.drift.DriftScores`, whose main scores are
:data:`~leanml.monitor.drift.DRIFT_SCORES`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from leanml.monitor.drift import DriftScores

__all__ = [
    "AccuracyStats",
    "AlertStats",
    "CountStats",
    "LatencyStats",
    "MonitorStats",
    "ThroughputStats",
    "WindowDrift",
]


class CountStats(TypedDict):
    predictions: int  # recorded + dropped by a full buffer
    recorded: int
    errors: int
    by_label: dict[str, int]
    sampled: int
    buffered: int


class ThroughputStats(TypedDict):
    per_s: int
    per_min: int
    last_window: int
    baseline_window_mean: float | None
    drop: float | None
    baseline_windows: int


class LatencyStats(TypedDict):
    """Latency in seconds from a merged sketch (None when it is empty)."""

    count: int
    avg: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    relative_accuracy: NotRequired[float]  # absent when the sketch is empty
    window_s: NotRequired[float]  # the stats window (``latency``, not ``latency_lifetime``)


class AccuracyStats(TypedDict):
    """Realized accuracy (with its Wilson 95% interval, ``accuracy_lower`` / ``_upper`` in
    ``realized``) and the estimate from calibrated confidences with its 95% interval."""

    realized: dict[str, Any]  # CountWindow.get(): accuracy (+ _lower/_upper), macro_f1, n...
    realized_time: dict[str, Any]  # TimeWindow.get()
    window_n: int
    window_s: float
    estimated: float | None
    estimated_lower: float | None
    estimated_upper: float | None
    estimated_n: int
    estimated_method: str  # the confidence map: identity | temperature | isotonic
    estimated_shift_adjusted: bool  # corrected for the window's class-mix shift
    mean_confidence: float | None  # the raw top-class confidences' mean
    calibration: dict[str, Any]  # CalibrationWindow.get()


class WindowDrift(DriftScores):
    window_start: float


class AlertStats(TypedDict):
    levels: dict[str, str]
    active: list[dict[str, Any]]
    events: list[dict[str, Any]]
    sink_errors: int


class MonitorStats(TypedDict):
    """Everything a dashboard or the serving layer reads of one monitor."""

    model: str
    version: str
    variant: str
    process: str
    ts: float
    uptime_s: float
    counts: CountStats
    throughput: ThroughputStats
    latency: LatencyStats
    latency_lifetime: LatencyStats
    error_rate: float | None
    accuracy: AccuracyStats
    ground_truth: dict[str, Any]  # GroundTruth.stats() + joined/restored; ``pending`` may be None
    drift: DriftScores | None
    drift_windows: list[WindowDrift]
    alerts: AlertStats
    health: str
    drops: dict[str, int]
    resources: dict[str, Any] | None
    retention: dict[str, Any] | None
    counters: dict[str, int]
    optional_work: dict[str, Any]  # OverheadBudget.stats(): budget, effective share, CPU spent
    store: str | None
    overhead: dict[str, Any]  # the monitor's own CPU vs the model's time (_read.overhead)
    paused: bool  # recording paused by the caller (ModelMonitor.set_paused)
