"""MonitorConfig: every knob of a ModelMonitor, validated in one place.

Changeable at run time with ``ModelMonitor.configure(**changes)`` (no restart): the hot path reads
the buffer bounds on every call and the flusher reads everything else on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from leanml._validation import check_choice, check_number, param_error
from leanml.monitor.alerts import AlertRule, default_rules

__all__ = ["MonitorConfig"]

_POS_INT = {
    "flush_batch_size",
    "buffer_size",
    "batch_buffer_size",
    "ground_truth_buffer_size",
    "detail_buffer_size",
    "windows_kept",
    "pending_max_entries",
    "metrics_window_n",
    "recent_window_n",
    "resource_history",
    "max_oov_per_flush",
    "max_events",
    "max_labels",
}
_POS_FLOAT = {
    "flush_interval_s",
    "window_s",
    "stats_window_s",
    "store_interval_s",
    "pending_max_age_s",
    "metrics_window_s",
    "alert_interval_s",
    "retention_interval_s",
    "resource_interval_s",
    "gc_idle_s",
    "forward_ttl_s",
}


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of one :class:`~leanml.monitor.ModelMonitor` (defaults for production).

    Sampling: ``sampling_rate`` of predictions (deterministic in the id) are kept in detail,
    plus every prediction with confidence below ``sample_below_confidence`` when set;
    ``store_inputs`` is ``"text"``, ``"hash"`` (sha256 only, the default: no raw text at rest)
    or ``"none"``. The flusher wakes every ``flush_interval_s`` and moves at most
    ``flush_batch_size`` records per round (rounds follow each other while a backlog remains).
    Buffers (each counts its drops): ``buffer_size`` single records,
    ``batch_buffer_size`` record_batch calls, ``ground_truth_buffer_size`` labels,
    ``detail_buffer_size`` sampled records awaiting the store. Windows: ``window_s`` per
    sketch/counter window, ``windows_kept`` in memory, ``stats_window_s`` for the reported
    latency/error rate, ``metrics_window_n`` / ``metrics_window_s`` for realized accuracy,
    ``recent_window_n`` predictions for estimated accuracy and drift. Join: pending table bounds
    ``pending_max_entries`` / ``pending_max_age_s`` and ``late_memory`` ids of evicted
    predictions; ``pending_join=False`` keeps no table (and no ids) at all, for a caller that
    keeps its predictions itself and reports matched pairs with ``record_joined`` (the server
    does: its id space is that table, so the monitor holds no id for 100k predictions).
    Retention: rows older than ``retention_max_age_s`` or beyond the newest
    ``retention_max_rows`` deleted every ``retention_interval_s`` (``None`` disables each).
    Several processes: with a store, ground truth whose id this process never saw is forwarded
    to the store (``forward_unknown_ground_truth``) for the process that made the prediction to
    claim; unclaimed after ``forward_ttl_s`` it counts as unknown.
    """

    sampling_rate: float = 0.2
    sample_below_confidence: float | None = None
    store_inputs: str = "hash"
    flush_interval_s: float = 0.2
    flush_batch_size: int = 16_384
    buffer_size: int = 65_536
    batch_buffer_size: int = 4_096
    ground_truth_buffer_size: int = 65_536
    detail_buffer_size: int = 10_000
    window_s: float = 60.0
    windows_kept: int = 60
    stats_window_s: float = 300.0
    store_interval_s: float = 5.0
    pending_max_entries: int = 100_000
    pending_max_age_s: float = 86_400.0
    late_memory: int = 100_000
    pending_join: bool = True
    metrics_window_n: int = 1_000
    metrics_window_s: float = 3_600.0
    recent_window_n: int = 2_000
    calibration_tolerance: float = 0.05
    alert_rules: tuple[AlertRule, ...] = field(default_factory=default_rules)
    alert_interval_s: float = 1.0
    max_events: int = 1_000
    retention_max_age_s: float | None = 30 * 86_400.0
    retention_max_rows: int | None = 1_000_000
    retention_interval_s: float = 3_600.0
    retention_reclaim: str = "full"
    resource_interval_s: float = 10.0
    resource_history: int = 360
    gc_idle_collect: bool = False
    gc_idle_s: float = 2.0
    relative_accuracy: float = 0.005
    max_oov_per_flush: int = 256
    max_labels: int = 1_000
    forward_unknown_ground_truth: bool = True
    forward_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        owner = "MonitorConfig"
        check_number(self.sampling_rate, "sampling_rate", owner, low=0, high=1)
        if self.sample_below_confidence is not None:
            check_number(
                self.sample_below_confidence, "sample_below_confidence", owner, low=0, high=1
            )
        check_choice(self.store_inputs, "store_inputs", owner, ("text", "hash", "none"))
        check_choice(self.retention_reclaim, "retention_reclaim", owner, ("full", "plain", "none"))
        for name in _POS_INT:
            check_number(getattr(self, name), name, owner, low=1, integer=True)
        check_number(self.late_memory, "late_memory", owner, low=0, integer=True)
        for name in _POS_FLOAT:
            check_number(getattr(self, name), name, owner, low=0, low_open=True)
        check_number(self.calibration_tolerance, "calibration_tolerance", owner, low=0)
        check_number(
            self.relative_accuracy, "relative_accuracy", owner, low=0, high=0.5, low_open=True
        )
        if self.retention_max_age_s is not None:
            check_number(
                self.retention_max_age_s, "retention_max_age_s", owner, low=0, low_open=True
            )
        if self.retention_max_rows is not None:
            check_number(self.retention_max_rows, "retention_max_rows", owner, low=0, integer=True)
        for flag in ("gc_idle_collect", "forward_unknown_ground_truth", "pending_join"):
            if not isinstance(getattr(self, flag), bool):
                raise param_error(flag, owner, "a bool", getattr(self, flag))
        rules = tuple(self.alert_rules)
        if not all(isinstance(r, AlertRule) for r in rules):
            raise param_error("alert_rules", owner, "a sequence of AlertRule", self.alert_rules)
        object.__setattr__(self, "alert_rules", rules)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["alert_rules"] = [r.name for r in self.alert_rules]
        return out
