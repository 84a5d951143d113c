"""The ``[monitor]`` section: every knob of a ModelMonitor, and the alert rules it evaluates.

Changeable at run time with ``ModelMonitor.configure(**changes)`` (no restart): the hot path reads
the buffer bounds on every call and the flusher reads everything else on every step. Alert rules
can be given in a file as ``[[monitor.alert_rules]]`` tables with the fields of
:class:`AlertRule`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from leanml._validation import check_choice, check_number, param_error
from leanml.config._spec import setting

__all__ = ["LEVELS", "AlertRule", "MonitorConfig", "default_rules"]

#: Alert levels, in order of severity.
LEVELS = ("ok", "warning", "critical")
_RANK = {name: i for i, name in enumerate(LEVELS)}


@dataclass(frozen=True)
class AlertRule:
    """One threshold rule on a monitor metric (see :mod:`leanml.monitor.alerts`)."""

    name: str
    metric: str
    direction: str = "above"
    warning: float | None = None
    critical: float | None = None
    min_samples: int = 1
    hysteresis: float = 0.0
    for_evaluations: int = 1
    clear_evaluations: int = 1
    #: compare the metric's 95% interval bound, when the monitor has one, not its value: a
    #: "below" rule fires when the upper bound is below the threshold, an "above" rule when the
    #: lower bound is above it (a figure whose interval still reaches the threshold holds)
    interval: bool = True

    def __post_init__(self) -> None:
        owner = "AlertRule"
        if not isinstance(self.name, str) or not self.name:
            raise param_error("name", owner, "a non-empty str", self.name)
        if not isinstance(self.metric, str) or not self.metric:
            raise param_error("metric", owner, "a non-empty str", self.metric)
        check_choice(self.direction, "direction", owner, ("above", "below"))
        if self.warning is None and self.critical is None:
            raise param_error("warning", owner, "set (or 'critical' set)", self.warning)
        for key in ("warning", "critical"):
            v = getattr(self, key)
            if v is not None:
                check_number(v, key, owner)
        if self.warning is not None and self.critical is not None:
            worse = (
                self.critical >= self.warning
                if self.direction == "above"
                else self.critical <= self.warning
            )
            if not worse:
                raise param_error(
                    "critical",
                    owner,
                    f"at least as severe as warning={self.warning}",
                    self.critical,
                )
        check_number(self.min_samples, "min_samples", owner, low=0, integer=True)
        check_number(self.hysteresis, "hysteresis", owner, low=0)
        check_number(self.for_evaluations, "for_evaluations", owner, low=1, integer=True)
        check_number(self.clear_evaluations, "clear_evaluations", owner, low=1, integer=True)
        if not isinstance(self.interval, bool):
            raise param_error("interval", owner, "a bool", self.interval)

    def breaches(self, value: float, threshold: float, margin: float = 0.0) -> bool:
        if self.direction == "above":
            return value > threshold - margin
        return value < threshold + margin

    def level_for(self, value: float, current: str) -> str:
        """The level ``value`` asks for, given the current level (hysteresis applied)."""
        for level in ("critical", "warning"):
            thr = getattr(self, level)
            if thr is None:
                continue
            margin = self.hysteresis if _RANK[current] >= _RANK[level] else 0.0
            if self.breaches(value, thr, margin):
                return level
        return "ok"


def default_rules() -> tuple[AlertRule, ...]:
    """Generic rules every model gets unless configured otherwise."""
    return (
        AlertRule("realized_accuracy", "realized_accuracy", "below", 0.85, 0.7, 200, 0.02, 2, 2),
        AlertRule("estimated_accuracy", "estimated_accuracy", "below", 0.85, 0.7, 200, 0.02, 2, 2),
        AlertRule("latency_p95", "latency_p95_s", "above", 0.1, 0.5, 100, 0.01, 2, 2),
        AlertRule("latency_p99", "latency_p99_s", "above", 0.25, 1.0, 100, 0.02, 2, 2),
        AlertRule("error_rate", "error_rate", "above", 0.01, 0.05, 100, 0.005, 2, 2),
        AlertRule("class_drift", "drift_class_psi", "above", 0.1, 0.25, 200, 0.02, 2, 2),
        AlertRule("confidence_drift", "drift_confidence_ks", "above", 0.1, 0.2, 200, 0.02, 2, 2),
        AlertRule("throughput_drop", "throughput_drop", "above", 0.5, 0.8, 1, 0.1, 2, 2),
    )


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
}


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of one :class:`~leanml.monitor.ModelMonitor` (defaults for production).

    ``pending_max_entries`` and ``pending_max_age_s`` bound the pending-join ring of the
    ground-truth path (:class:`leanml.groundtruth.GroundTruth`) that the wrapper and the server
    build for each model; the monitor itself receives labels joined already.
    """

    SECTION: ClassVar[str] = "monitor"
    ENV_PREFIX: ClassVar[str] = "LEANML_MONITOR_"

    sampling_rate: float = setting(
        0.2, "Share of predictions kept in detail (deterministic in the prediction id)."
    )
    sample_below_confidence: float | None = setting(
        None, "Also keep in detail every prediction less confident than this."
    )
    store_inputs: str = setting(
        "redacted",
        "What a detail row keeps of the input: text (as sent), redacted (e-mail addresses, "
        "URLs, phone-like and long digit runs masked), hash (its sha256 only) or none.",
    )
    flush_interval_s: float = setting(
        1.0, "How often a flusher step runs (s; sooner when a buffer is half full)."
    )
    flush_on_record: bool = setting(
        True,
        "Run a due flusher step on the thread that records (no GIL handoff to the flusher "
        "thread, which then steps only when records stop); false: the flusher thread steps "
        "(leanml serve).",
    )
    flush_hold_s: float | None = setting(
        None,
        "Longest stretch a flusher step holds the GIL before a 0.1 ms pause that lets the "
        "threads serving predictions run (s); none: no pauses (leanml serve: 0.0005).",
    )
    flush_batch_size: int = setting(16_384, "Most records the flusher moves per round.")
    buffer_size: int = setting(65_536, "Bound of the single-record buffer (drops counted).")
    batch_buffer_size: int = setting(4_096, "Bound of the record_batch buffer, in calls.")
    ground_truth_buffer_size: int = setting(65_536, "Bound of the ground-truth buffer.")
    detail_buffer_size: int = setting(10_000, "Bound of the sampled records awaiting the store.")
    window_s: float = setting(60.0, "Length of one counter/sketch window (s).")
    windows_kept: int = setting(60, "Windows kept in memory.")
    stats_window_s: float = setting(300.0, "Range of the reported latency and error rate (s).")
    store_interval_s: float = setting(5.0, "How often window snapshots are written (s).")
    pending_max_entries: int = setting(100_000, "Most predictions awaiting ground truth.")
    pending_max_age_s: float = setting(86_400.0, "Longest wait for ground truth (s).")
    metrics_window_n: int = setting(1_000, "Labelled predictions in the realized-accuracy window.")
    metrics_window_s: float = setting(3_600.0, "Age bound of the realized-accuracy window (s).")
    recent_window_n: int = setting(2_000, "Predictions behind estimated accuracy and drift.")
    calibration_tolerance: float = setting(
        0.05, "Largest calibration gap before the estimate is flagged."
    )
    alert_rules: tuple[AlertRule, ...] = setting(
        doc="Alert rules ([[monitor.alert_rules]] tables; default: the generic rules).",
        factory=default_rules,
    )
    alert_interval_s: float = setting(5.0, "How often alert rules are evaluated (s).")
    max_events: int = setting(1_000, "Alert events kept in memory.")
    retention_max_age_s: float | None = setting(
        30 * 86_400.0, "Stored rows older than this are deleted (s); none keeps them."
    )
    retention_max_rows: int | None = setting(
        1_000_000, "Stored rows beyond the newest N are deleted; none keeps them."
    )
    retention_interval_s: float = setting(3_600.0, "How often retention runs (s).")
    retention_reclaim: str = setting(
        "full", "How retention gives space back: full (VACUUM), plain or none."
    )
    resource_interval_s: float = setting(10.0, "How often CPU and memory are sampled (s).")
    resource_history: int = setting(360, "Resource samples kept in memory.")
    gc_idle_collect: bool = setting(False, "Run the garbage collector when the process idles.")
    gc_idle_s: float = setting(2.0, "Idle time before that collection (s).")
    relative_accuracy: float = setting(0.005, "Relative error bound of the latency sketch.")
    max_oov_per_flush: int = setting(256, "Most texts per flush scored for out-of-vocabulary.")
    overhead_budget: float = setting(
        0.0025, "CPU of optional analysis (text statistics) as a share of the model's time."
    )
    max_labels: int = setting(1_000, "Most distinct labels counted per model.")

    def __post_init__(self) -> None:
        owner = "MonitorConfig"
        check_number(self.sampling_rate, "sampling_rate", owner, low=0, high=1)
        if self.sample_below_confidence is not None:
            check_number(
                self.sample_below_confidence, "sample_below_confidence", owner, low=0, high=1
            )
        check_choice(self.store_inputs, "store_inputs", owner, ("text", "redacted", "hash", "none"))
        check_choice(self.retention_reclaim, "retention_reclaim", owner, ("full", "plain", "none"))
        for name in _POS_INT:
            check_number(getattr(self, name), name, owner, low=1, integer=True)
        for name in _POS_FLOAT:
            check_number(getattr(self, name), name, owner, low=0, low_open=True)
        check_number(self.calibration_tolerance, "calibration_tolerance", owner, low=0)
        check_number(self.overhead_budget, "overhead_budget", owner, low=0)
        check_number(
            self.relative_accuracy, "relative_accuracy", owner, low=0, high=0.5, low_open=True
        )
        if self.flush_hold_s is not None:
            check_number(self.flush_hold_s, "flush_hold_s", owner, low=0, low_open=True)
        if self.retention_max_age_s is not None:
            check_number(
                self.retention_max_age_s, "retention_max_age_s", owner, low=0, low_open=True
            )
        if self.retention_max_rows is not None:
            check_number(self.retention_max_rows, "retention_max_rows", owner, low=0, integer=True)
        for name in ("gc_idle_collect", "flush_on_record"):
            if not isinstance(getattr(self, name), bool):
                raise param_error(name, owner, "a bool", getattr(self, name))
        rules = tuple(self.alert_rules)
        if not all(isinstance(r, AlertRule) for r in rules):
            raise param_error("alert_rules", owner, "a sequence of AlertRule", self.alert_rules)
        object.__setattr__(self, "alert_rules", rules)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["alert_rules"] = [r.name for r in self.alert_rules]
        return out
