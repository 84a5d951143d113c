"""The monitoring phase of ``leanml demo``: overhead, and accuracy joined from delayed ground truth.

:func:`monitoring_demo` wraps a fitted model with :func:`~leanml.monitor.monitored`, measures the
monitoring overhead on single-text predictions (monitored vs unmonitored, interleaved on the same
texts for two seconds; and the monitor's own CPU over that loop, per prediction and over the
model's time, after a warm-up), then replays a simulated feedback stream on a simulated clock:
each prediction's true label arrives after a random delay (exponential, mean ``mean_delay_s``),
``missing_rate`` of them never arrive, ``duplicate_rate`` arrive twice, a few arrive for ids
nobody predicted, and those delayed beyond ``pending_max_age_s`` arrive after their prediction
has expired (counted as late: the ground-truth path's ``expired`` + ``evicted``; ``unknown`` is
its ``never_seen``).
It returns the monitor's joined accuracy beside the true accuracy of all predictions and the
confidence-based estimate, plus every ground-truth counter. Runs in seconds; no I/O.

The day the report shows (traffic, drift, alerts, written to the store) is
:mod:`leanml.demo.day`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from leanml._validation import check_number
from leanml.monitor import (
    GroundTruth,
    ModelMonitor,
    MonitorConfig,
    MonitoredEstimator,
    MonitorStats,
    monitored,
)

__all__ = ["monitoring_demo", "settled_overhead"]
#: the simulated clock starts here (a fixed epoch: runs are reproducible)
_T0 = 1_700_000_000.0
#: predictions arrive in batches of this size, one per second
_BATCH = 50
# one feedback event: (arrival time, prediction id, true label)
_Event = tuple[float, str, Any]


class _SimClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _overhead(
    model: Any, texts: Sequence[str], rounds: int, min_seconds: float
) -> dict[str, float]:
    """Single-text predict, plain and monitored, interleaved on the same texts for ``rounds``
    rounds and at least ``min_seconds``; and the monitor's own CPU over that loop, after a
    warm-up (its start-up: first windows, first alert round) and once its flusher has taken
    the loop's records (:func:`settled_overhead`)."""
    wrapped = monitored(model, name="overhead", sinks=[])
    pc = time.perf_counter_ns
    plain = mon = n = r = 0
    try:
        for text in texts:  # warm-up: both paths, the monitor's start-up
            model.predict([text])
            wrapped.predict([text])
        wrapped.monitor.flush()
        before = wrapped.monitor.stats()
        end = time.perf_counter() + min_seconds
        while r < rounds or time.perf_counter() < end:
            for i, text in enumerate(texts):
                x = [text]
                if (i + r) % 2:
                    t0 = pc()
                    model.predict(x)
                    t1 = pc()
                    wrapped.predict(x)
                    t2 = pc()
                    plain, mon = plain + t1 - t0, mon + t2 - t1
                else:
                    t0 = pc()
                    wrapped.predict(x)
                    t1 = pc()
                    model.predict(x)
                    t2 = pc()
                    mon, plain = mon + t1 - t0, plain + t2 - t1
            n += len(texts)
            r += 1
        own = settled_overhead(wrapped.monitor, before)
    finally:
        wrapped.close()
    n = max(1, n)
    return {
        "predict_us": plain / n / 1000,
        "monitored_predict_us": mon / n / 1000,
        "overhead_pct": 100.0 * (mon - plain) / plain if plain else float("nan"),
        **own,
    }


def settled_overhead(
    monitor: ModelMonitor, before: MonitorStats, timeout_s: float = 5.0
) -> dict[str, float]:
    """The monitor's own CPU (its flusher thread and the timed caller share) since
    ``before``, a ``stats()`` snapshot, once the background flusher has taken every record
    buffered since (waited for, not forced: a forced flush evaluates alerts out of turn):
    over the model's time in between (``self_measured_overhead_pct``) and per prediction
    recorded in between (``monitor_cpu_per_prediction_us``, of which
    ``caller_cpu_per_prediction_us`` on the predicting thread and
    ``flusher_cpu_per_prediction_us`` on the flusher's). Time-driven work (alert rounds,
    flusher steps) counts at the rate the loop ran."""
    deadline = time.perf_counter() + timeout_s
    while monitor.stats()["counts"]["buffered"] and time.perf_counter() < deadline:
        time.sleep(0.05)
    after = monitor.stats()
    a, b = before["overhead"], after["overhead"]
    cpu = b["monitor_cpu_s"] - a["monitor_cpu_s"]
    model = b["model_s"] - a["model_s"]
    n = after["counts"]["recorded"] - before["counts"]["recorded"]

    def per_prediction_us(seconds: float) -> float:
        return seconds / n * 1e6 if n else float("nan")

    return {
        "self_measured_overhead_pct": 100.0 * cpu / model if model > 0 else float("nan"),
        "monitor_cpu_per_prediction_us": per_prediction_us(cpu),
        "caller_cpu_per_prediction_us": per_prediction_us(b["caller_s"] - a["caller_s"]),
        "flusher_cpu_per_prediction_us": per_prediction_us(b["flusher_cpu_s"] - a["flusher_cpu_s"]),
    }


def _predict_in_batches(
    wrapped: Any, monitor: ModelMonitor, clock: _SimClock, X: Sequence[str]
) -> tuple[list[str], list[Any]]:
    """Predictions arrive one batch a second; returns their ids and predicted labels."""
    ids: list[str] = []
    labels: list[Any] = []
    for start in range(0, len(X), _BATCH):
        lab, batch_ids = wrapped.predict_with_ids(list(X[start : start + _BATCH]))
        ids += batch_ids
        labels += list(lab)
        clock.t += float(_BATCH)
        monitor.flush()
    return ids, labels


def _feedback_events(
    rng: np.random.Generator,
    ids: list[str],
    y: np.ndarray,
    *,
    missing_rate: float,
    duplicate_rate: float,
    unknown: int,
    mean_delay_s: float,
) -> tuple[list[_Event], int]:
    """The delayed labels, sorted by arrival, and how many never arrive."""
    n = len(ids)
    t_pred = _T0 + np.repeat(np.arange(0, n, _BATCH), _BATCH)[:n].astype(float)
    arrives = ~(rng.random(n) < missing_rate)
    delay = rng.exponential(mean_delay_s, n)
    events: list[_Event] = [(t_pred[i] + delay[i], ids[i], y[i]) for i in np.flatnonzero(arrives)]
    dups = [e for e in events if rng.random() < duplicate_rate]
    events += [(t + float(rng.exponential(60.0)), pid, lab) for t, pid, lab in dups]
    events += [(float(t_pred[-1]) + i, f"unknown-{i}", y[0]) for i in range(unknown)]
    events.sort(key=lambda e: e[0])
    return events, int((~arrives).sum())


def _replay(wrapped: MonitoredEstimator, clock: _SimClock, events: list[_Event]) -> MonitorStats:
    """Send each label at its arrival time (expiry runs as time passes); the final stats."""
    monitor = wrapped.monitor
    for t, pid, lab in events:
        if t > clock.t:
            clock.t = t
            monitor.flush()
        wrapped.record_ground_truth(pid, lab)
    clock.t += 1.0
    monitor.flush()
    return monitor.stats()


def _ground_truth_counts(gt: dict[str, Any]) -> dict[str, Any]:
    """The demo's counters: late = arrived after its prediction left the ring."""
    out = {k: gt[k] for k in ("joined", "duplicate", "evicted_age", "evicted_capacity", "pending")}
    out["late"] = gt["expired"] + gt["evicted"]
    out["unknown"] = gt["never_seen"] + gt["foreign"]
    return out


def monitoring_demo(
    model: Any,
    X: Sequence[str],
    y: Sequence[Any],
    *,
    name: str = "model",
    reference: dict[str, Any] | None = None,
    config: MonitorConfig | None = None,
    missing_rate: float = 0.3,
    duplicate_rate: float = 0.02,
    unknown: int = 5,
    mean_delay_s: float = 600.0,
    pending_max_age_s: float = 3600.0,
    overhead_texts: int = 200,
    overhead_rounds: int = 3,
    overhead_seconds: float = 2.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the simulation described in the module docstring and return a plain dict."""
    check_number(missing_rate, "missing_rate", "monitoring_demo", low=0, high=1)
    check_number(duplicate_rate, "duplicate_rate", "monitoring_demo", low=0, high=1)
    check_number(mean_delay_s, "mean_delay_s", "monitoring_demo", low=0)
    rng = np.random.default_rng(seed)
    overhead = _overhead(model, list(X[:overhead_texts]), overhead_rounds, overhead_seconds)
    clock = _SimClock(_T0)
    cfg = dataclasses.replace(
        config or MonitorConfig(),
        pending_max_age_s=pending_max_age_s,
        metrics_window_n=len(X) or 1,
    )
    monitor = ModelMonitor(
        name, config=cfg, clock=clock, reference=reference, start=False, sinks=[]
    )
    y_arr = np.asarray(y, dtype=object)
    truth_path = GroundTruth(cfg.pending_max_entries, cfg.pending_max_age_s, clock=clock)
    wrapped = monitored(model, name=name, monitor=monitor, ground_truth=truth_path)
    ids, labels = _predict_in_batches(wrapped, monitor, clock, X)
    events, missing = _feedback_events(
        rng,
        ids,
        y_arr,
        missing_rate=missing_rate,
        duplicate_rate=duplicate_rate,
        unknown=unknown,
        mean_delay_s=mean_delay_s,
    )
    s = _replay(wrapped, clock, events)
    monitor.close()
    correct = np.asarray(labels, dtype=object) == y_arr
    return {
        "model": name,
        "predictions": len(X),
        "overhead": overhead,
        "true_accuracy": float(correct.mean()) if len(X) else None,
        "joined_accuracy": s["accuracy"]["realized"]["accuracy"],
        "joined_interval": [
            s["accuracy"]["realized"]["accuracy_lower"],
            s["accuracy"]["realized"]["accuracy_upper"],
        ],
        "joined_n": s["accuracy"]["realized"]["n"],
        "joined_macro_f1": s["accuracy"]["realized"]["macro_f1"],
        "estimated_accuracy": s["accuracy"]["estimated"],
        "estimated_interval": [s["accuracy"]["estimated_lower"], s["accuracy"]["estimated_upper"]],
        "estimated_n": s["accuracy"]["estimated_n"],
        "alerts": s["alerts"]["levels"],
        "calibration": s["accuracy"]["calibration"],
        "labels_sent": len(events),
        "labels_missing": missing,
        "ground_truth": _ground_truth_counts(dict(s["ground_truth"])),
        "health": s["health"],
        "drift": s["drift"],
    }
