"""The read side of a ModelMonitor: metric table for alerts, drift, and the stats dict.

Runs under the monitor's lock (callers take it); split from ``_flush`` to keep modules small.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from leanml.monitor.sketch import LogSketch

if TYPE_CHECKING:
    from leanml.monitor.monitor import ModelMonitor

_QS = (0.5, 0.95, 0.99, 0.999)
_QNAMES = ("p50", "p95", "p99", "p999")


def _drift(
    m: ModelMonitor,
    label_counts: np.ndarray,
    conf: np.ndarray,
    lengths: np.ndarray,
    oov: np.ndarray,
) -> dict[str, Any] | None:
    if m.drift_detector is None:
        return None
    names = m._labels
    counts = {names[i]: int(c) for i, c in enumerate(label_counts) if c}
    return m.drift_detector.score(
        counts, conf, lengths if lengths.size else None, oov if oov.size else None
    )


def rolling_drift(m: ModelMonitor) -> dict[str, Any] | None:
    lab = m._recent_labels.values()
    return _drift(
        m,
        np.bincount(lab, minlength=len(m._labels)),
        m.confidence.values(),
        m._recent_lengths.values(),
        m._recent_oov.values(),
    )


# ---------------------------------------------------------------------------- read side
def _latency(sk: LogSketch) -> dict[str, Any]:
    if sk.count == 0:
        return {"count": 0, "avg": None, "min": None, "max": None, **dict.fromkeys(_QNAMES)}
    qs = sk.quantiles(_QS)
    return {
        "count": sk.count,
        "avg": sk.mean,
        "min": sk.min,
        "max": sk.max,
        **{k: float(v) for k, v in zip(_QNAMES, qs, strict=True)},
        "relative_accuracy": sk.relative_accuracy,
    }


def _recent(m: ModelMonitor, now: float) -> tuple[LogSketch, int, int]:
    sk = LogSketch(m.config.relative_accuracy)
    count = errors = 0
    for w in m._stats_windows(now):
        sk.merge(w.sketch)
        count += w.count
        errors += w.errors
    return sk, count, errors


def _throughput(m: ModelMonitor, now: float) -> dict[str, Any]:
    sec = int(now)
    last_s = m._seconds.get(sec - 1, 0)
    last_min = sum(c for s, c in m._seconds.items() if sec - 60 <= s < sec)
    width = m.config.window_s
    cur = math.floor(now / width) * width
    prev = [m._windows[cur - width].count] if (cur - width) in m._windows else [0]
    base = []
    for i in range(2, 12):
        start = cur - i * width
        if start < math.floor(m.started / width) * width:
            break
        w = m._windows.get(start)
        base.append(w.count if w else 0)
    drop = None
    if base and sum(base) > 0 and m.started <= cur - width:
        drop = max(0.0, 1.0 - prev[0] / (sum(base) / len(base)))
    return {
        "per_s": last_s,
        "per_min": last_min,
        "last_window": prev[0],
        "baseline_window_mean": (sum(base) / len(base)) if base else None,
        "drop": drop,
        "baseline_windows": len(base),
    }


def metric_table(m: ModelMonitor, now: float) -> dict[str, tuple[float | None, int]]:
    sk, count, errors = _recent(m, now)
    cw = m.count_window.get(m._labels)
    tw = m.time_window.get(m._labels)
    est = m.confidence.get()
    cal = m.calibration.get()
    qs = sk.quantiles([0.95, 0.99]) if sk.count else [None, None]
    tp = _throughput(m, now)
    out: dict[str, tuple[float | None, int]] = {
        "realized_accuracy": (cw["accuracy"], cw["n"]),
        "realized_macro_f1": (cw["macro_f1"], cw["n"]),
        "realized_accuracy_time": (tw["accuracy"], tw["n"]),
        "estimated_accuracy": (est["estimated_accuracy"], est["n"]),
        "calibration_gap": (cal["calibration_gap"], cal["n_labeled"]),
        "latency_p95_s": (None if qs[0] is None else float(qs[0]), sk.count),
        "latency_p99_s": (None if qs[1] is None else float(qs[1]), sk.count),
        "error_rate": (errors / (count + errors) if count + errors else None, count + errors),
        "throughput_drop": (tp["drop"], tp["baseline_windows"]),
    }
    d = m._drift_cache
    n = int(d.get("n", 0) or 0)
    for key in ("class_psi", "class_chi2", "confidence_ks", "input_length_ks", "oov_delta"):
        out[f"drift_{key}"] = (d.get(key), n)
    return out


def stats(m: ModelMonitor, now: float) -> dict[str, Any]:
    sk, count, errors = _recent(m, now)
    life = m.latency_sketch()
    names = m._labels
    drops = dict(m.drops)
    pj: dict[str, Any] = dict(m.pending.stats())
    if not m.config.pending_join:  # the caller keeps the table: ask it, or say we cannot tell
        pj["pending"] = m.pending_count() if m.pending_count is not None else None
        pj["max_entries"] = m.config.pending_max_entries
    drops["pending_evicted_capacity"] = pj["evicted_capacity"]
    drops["pending_evicted_age"] = pj["evicted_age"]
    drops["late_ids_forgotten"] = pj["late_forgotten"]
    drops["time_window_evicted"] = m.time_window.evicted
    drops["resource_samples_evicted"] = m.resources.evicted
    drops["alert_events_evicted"] = m.alerts.events_evicted
    dropped_predictions = drops["record_buffer"] + drops["batch_buffer"]
    est = m.confidence.get()
    return {
        "model": m.name,
        "version": m.version,
        "variant": m.variant,
        "process": m.process_id,
        "ts": now,
        "uptime_s": now - m.started,
        "counts": {
            "predictions": m.total + dropped_predictions,
            "recorded": m.total,
            "errors": m.errors,
            "by_label": {str(names[i]): int(c) for i, c in enumerate(m._label_totals) if c},
            "sampled": m.sampled,
            "buffered": len(m._buf) + sum(len(b[0]) for b in list(m._bbuf)),
        },
        "throughput": _throughput(m, now),
        "latency": {**_latency(sk), "window_s": m.config.stats_window_s},
        "latency_lifetime": _latency(life),
        "error_rate": errors / (count + errors) if count + errors else None,
        "accuracy": {
            "realized": m.count_window.get(names),
            "realized_time": m.time_window.get(names),
            "window_n": m.config.metrics_window_n,
            "window_s": m.config.metrics_window_s,
            "estimated": est["estimated_accuracy"],
            "estimated_n": est["n"],
            "calibration": m.calibration.get(),
        },
        "ground_truth": pj,
        "drift": rolling_drift(m),
        "drift_windows": [
            {"window_start": w.start, **w.drift}
            for w in sorted(m._windows.values(), key=lambda w: w.start)
            if w.drift is not None
        ][-10:],
        "alerts": {
            "levels": m.alerts.levels(),
            "active": m.alerts.active(),
            "events": [e.to_dict() for e in m.alerts.events[-20:]],
            "sink_errors": m.alerts.sink_errors,
        },
        "health": m.alerts.health(),
        "drops": drops,
        "resources": m.resources.latest(),
        "retention": m.last_retention,
        "counters": dict(m.counters),
        "store": m.store.url if m.store is not None else None,
    }
