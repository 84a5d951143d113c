"""The read side of a monitor's state: drift, the metric table alert rules read, ``stats()``.

Every function takes the :class:`~leanml.monitor._state.MonitorState` and runs under its lock
(callers take it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from leanml._calibration import ConfidenceMap
from leanml.groundtruth import STATUSES
from leanml.monitor._state import MonitorState
from leanml.monitor.drift import BOOTSTRAP_REPLICATES, DRIFT_SCORES, DriftScores
from leanml.monitor.sketch import LogSketch
from leanml.monitor.stats import (
    AccuracyStats,
    AlertStats,
    CountStats,
    LatencyStats,
    MonitorStats,
    ThroughputStats,
    WindowDrift,
)

__all__ = [
    "CALLER_SAMPLE_EVERY",
    "confidence_map",
    "drift_of",
    "metric_table",
    "overhead",
    "rolling_drift",
    "stats",
]

#: the monitored wrapper times its own work on one call in this many (a power of two)
CALLER_SAMPLE_EVERY = 64

_QS = (0.5, 0.95, 0.99, 0.999)


def drift_of(
    st: MonitorState,
    label_counts: np.ndarray,
    conf: np.ndarray,
    lengths: np.ndarray,
    oov: np.ndarray,
    intervals: bool = True,
) -> DriftScores | None:
    """Drift scores of these live values (None without a reference), with their bootstrap
    intervals unless ``intervals`` is false."""
    if st.drift_detector is None:
        return None
    names = st.labels
    counts = {names[i]: int(c) for i, c in enumerate(label_counts) if c}
    return st.drift_detector.score(
        counts,
        conf,
        lengths if lengths.size else None,
        oov if oov.size else None,
        bootstrap=BOOTSTRAP_REPLICATES if intervals else 0,
    )


def rolling_drift(st: MonitorState, intervals: bool = True) -> DriftScores | None:
    """Drift of the recent predictions (the ``recent_window_n`` newest); ``intervals`` false
    leaves out the bootstrap intervals (most of the cost: ~10 ms with full recent windows)."""
    lab = st.recent_labels.values()
    return drift_of(
        st,
        np.bincount(lab, minlength=len(st.labels)),
        st.confidence.values(),
        st.recent_lengths.values(),
        st.recent_oov.values(),
        intervals,
    )


def confidence_map(st: MonitorState) -> ConfidenceMap | None:
    """The served variant's confidence -> P(correct) map (from its reference), if any."""
    return None if st.drift_detector is None else st.drift_detector.reference.calibration


def _estimate(st: MonitorState, cmap: ConfidenceMap | None) -> dict[str, Any]:
    """The confidence window's estimate, with the recent predicted labels for the class-mix
    shift correction when they line up with its confidences."""
    codes = st.recent_labels.values()
    names = st.labels
    predicted = [str(names[i]) for i in codes] if cmap is not None and cmap.classes else None
    return st.confidence.get(cmap, predicted)


def _latency(sk: LogSketch) -> LatencyStats:
    if sk.count == 0:
        return {
            "count": 0,
            "avg": None,
            "min": None,
            "max": None,
            "p50": None,
            "p95": None,
            "p99": None,
            "p999": None,
        }
    p50, p95, p99, p999 = (float(v) for v in sk.quantiles(_QS))
    return {
        "count": sk.count,
        "avg": sk.mean,
        "min": sk.min,
        "max": sk.max,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "p999": p999,
        "relative_accuracy": sk.relative_accuracy,
    }


def _recent(st: MonitorState, now: float) -> tuple[LogSketch, int, int]:
    sk = LogSketch(st.config.relative_accuracy)
    count = errors = 0
    for w in st.stats_windows(now):
        sk.merge(w.sketch)
        count += w.count
        errors += w.errors
    return sk, count, errors


def _throughput(st: MonitorState, now: float) -> ThroughputStats:
    sec = int(now)
    last_s = st.seconds.get(sec - 1, 0)
    last_min = sum(c for s, c in st.seconds.items() if sec - 60 <= s < sec)
    width = st.config.window_s
    cur = math.floor(now / width) * width
    prev = st.windows[cur - width].count if (cur - width) in st.windows else 0
    base = []
    for i in range(2, 12):
        start = cur - i * width
        if start < math.floor(st.started / width) * width:
            break
        if st.paused_during(start, start + width):  # not recorded: not the traffic
            continue
        w = st.windows.get(start)
        base.append(w.count if w else 0)
    drop = None
    paused = st.paused_during(cur - width, now)  # a pause is not a drop
    if base and sum(base) > 0 and st.started <= cur - width and not paused:
        drop = max(0.0, 1.0 - prev / (sum(base) / len(base)))
    return {
        "per_s": last_s,
        "per_min": last_min,
        "last_window": prev,
        "baseline_window_mean": (sum(base) / len(base)) if base else None,
        "drop": drop,
        "baseline_windows": len(base),
    }


def metric_table(st: MonitorState, now: float) -> dict[str, tuple[float | None, int]]:
    """Flat metric table (name -> (value, sample size)) that alert rules read."""
    sk, count, errors = _recent(st, now)
    cw = st.count_window.get(st.labels)
    tw = st.time_window.get(st.labels)
    cmap = confidence_map(st)
    est = _estimate(st, cmap)
    cal = st.calibration.get(cmap)
    qs = sk.quantiles([0.95, 0.99]) if sk.count else [None, None]
    tp = _throughput(st, now)
    out: dict[str, tuple[float | None, int]] = {
        "realized_accuracy": (cw["accuracy"], cw["n"]),
        "realized_accuracy_lower": (cw["accuracy_lower"], cw["n"]),
        "realized_accuracy_upper": (cw["accuracy_upper"], cw["n"]),
        "realized_macro_f1": (cw["macro_f1"], cw["n"]),
        "realized_accuracy_time": (tw["accuracy"], tw["n"]),
        "realized_accuracy_time_lower": (tw["accuracy_lower"], tw["n"]),
        "realized_accuracy_time_upper": (tw["accuracy_upper"], tw["n"]),
        "estimated_accuracy": (est["estimated_accuracy"], est["n"]),
        "estimated_accuracy_lower": (est["lower"], est["n"]),
        "estimated_accuracy_upper": (est["upper"], est["n"]),
        "calibration_gap": (cal["calibration_gap"], cal["n_labeled"]),
        "latency_p95_s": (None if qs[0] is None else float(qs[0]), sk.count),
        "latency_p99_s": (None if qs[1] is None else float(qs[1]), sk.count),
        "error_rate": (errors / (count + errors) if count + errors else None, count + errors),
        "throughput_drop": (tp["drop"], tp["baseline_windows"]),
    }
    d = st.drift_cache
    n = int(d.get("n", 0) or 0)
    for key in DRIFT_SCORES:
        out[f"drift_{key}"] = (d.get(key), n)
    return out


def stats(st: MonitorState, now: float) -> MonitorStats:
    """Everything a dashboard or the serving layer reads (see :class:`MonitorStats`)."""
    sk, count, errors = _recent(st, now)
    return {
        "model": st.name,
        "version": st.version,
        "variant": st.variant,
        "process": st.process_id,
        "ts": now,
        "uptime_s": now - st.started,
        "counts": _counts(st),
        "throughput": _throughput(st, now),
        "latency": {**_latency(sk), "window_s": st.config.stats_window_s},
        "latency_lifetime": _latency(st.latency_sketch()),
        "error_rate": errors / (count + errors) if count + errors else None,
        "accuracy": _accuracy(st),
        "ground_truth": _ground_truth(st),
        "drift": rolling_drift(st),
        "drift_windows": _drift_windows(st),
        "alerts": _alerts(st),
        "health": st.alerts.health(),
        "drops": _drops(st),
        "resources": st.resources.latest(),
        "retention": st.last_retention,
        "counters": dict(st.counters),
        "optional_work": st.budget.stats(),
        "store": st.store.url if st.store is not None else None,
        "overhead": overhead(st),
        "paused": st.paused_at is not None,
    }


def overhead(st: MonitorState) -> dict[str, Any]:
    """The monitor's own CPU against the model's time: the flusher's thread CPU (ingest,
    windows, drift, detail rows, store writes) plus the caller-side cost (ids and record,
    timed on one wrapped call in :data:`CALLER_SAMPLE_EVERY`, scaled to every call);
    ``ratio`` = monitor CPU / the model's time (each single call's latency; each batch's
    model seconds as its caller timed them, else its longest latency)."""
    caller_s = (
        st.caller_sampled_ns / st.caller_samples * st.caller_calls / 1e9
        if st.caller_samples
        else 0.0
    )
    flusher_s = st.flusher_cpu_ns / 1e9
    monitor_s = flusher_s + caller_s
    return {
        "monitor_cpu_s": monitor_s,
        "flusher_cpu_s": flusher_s,
        "caller_s": caller_s,
        "caller_samples": st.caller_samples,
        "model_s": st.model_s,
        "ratio": monitor_s / st.model_s if st.model_s > 0 else None,
        "per_prediction_ns": monitor_s * 1e9 / st.total if st.total else None,
    }


def _counts(st: MonitorState) -> CountStats:
    names = st.labels
    dropped_predictions = st.drops["record_buffer"] + st.drops["batch_buffer"]
    return {
        "predictions": st.total + dropped_predictions,
        "recorded": st.total,
        "errors": st.errors,
        "by_label": {str(names[i]): int(c) for i, c in enumerate(st.label_totals) if c},
        "sampled": st.sampled,
        "buffered": len(st.buf) + sum(len(b[0]) for b in list(st.bbuf)),
    }


def _accuracy(st: MonitorState) -> AccuracyStats:
    cmap = confidence_map(st)
    est = _estimate(st, cmap)
    return {
        "realized": st.count_window.get(st.labels),
        "realized_time": st.time_window.get(st.labels),
        "window_n": st.config.metrics_window_n,
        "window_s": st.config.metrics_window_s,
        "estimated": est["estimated_accuracy"],
        "estimated_lower": est["lower"],
        "estimated_upper": est["upper"],
        "estimated_n": est["n"],
        "estimated_method": est["method"],
        "estimated_shift_adjusted": est["shift_adjusted"],
        "mean_confidence": est["mean_confidence"],
        "calibration": st.calibration.get(cmap),
    }


def _ground_truth(st: MonitorState) -> dict[str, Any]:
    """The ground-truth path's outcome counters (shared by the monitors of one model), this
    monitor's joined / restored counts and its pending predictions (None without a path)."""
    gt = st.ground_truth
    out: dict[str, Any] = dict.fromkeys(STATUSES, 0) if gt is None else dict(gt.stats())
    out.update(st.gt_counts)
    out["pending"] = None if gt is None else gt.pending(st.ground_truth_code)
    out.setdefault("max_entries", st.config.pending_max_entries)
    return out


def _drops(st: MonitorState) -> dict[str, int]:
    """Every drop and eviction counter, the pending join's and the windows' included."""
    drops = dict(st.drops)
    gt = st.ground_truth.stats() if st.ground_truth is not None else {}
    drops["pending_evicted_capacity"] = gt.get("evicted_capacity", 0)
    drops["pending_evicted_age"] = gt.get("evicted_age", 0)
    drops["time_window_evicted"] = st.time_window.evicted
    drops["resource_samples_evicted"] = st.resources.evicted
    drops["alert_events_evicted"] = st.alerts.events_evicted
    return drops


def _drift_windows(st: MonitorState) -> list[WindowDrift]:
    """The drift of the 10 newest scored windows."""
    out: list[WindowDrift] = [
        {"window_start": w.start, **w.drift}
        for w in sorted(st.windows.values(), key=lambda w: w.start)
        if w.drift is not None
    ]
    return out[-10:]


def _alerts(st: MonitorState) -> AlertStats:
    return {
        "levels": st.alerts.levels(),
        "active": st.alerts.active(),
        "events": [e.to_dict() for e in st.alerts.events[-20:]],
        "sink_errors": st.alerts.sink_errors,
    }
