"""Flusher, windows: closing and evicting windows, evaluating alerts, the rows for the store.

A window is scored for drift once it has closed; the oldest windows beyond ``windows_kept`` are
merged into the retired sketch and evicted (not before the store has their last state). Alert
rules read the metric table (:func:`~leanml.monitor._read.metric_table`). At each store interval
the dirty windows, detail rows, label rows, resource samples, and alert events
are collected under the lock and written outside it (a failed write marks the windows dirty
again and counts the lost rows). Everything but :func:`write_rows` runs under the state's lock.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from leanml.monitor._read import drift_of, metric_table, rolling_drift
from leanml.monitor._state import MonitorState
from leanml.monitor.store import MonitorStore

__all__ = [
    "collect_rows",
    "evaluate_alerts",
    "evict_windows",
    "score_closed_windows",
    "write_rows",
]

logger = logging.getLogger("leanml.monitor")


def score_closed_windows(st: MonitorState, now: float) -> None:
    """Drift scores of the windows that closed since the last step (with a reference)."""
    if st.drift_detector is None:
        return
    for w in st.windows.values():
        if w.drift is None and w.start + w.width <= now and w.count:
            w.drift = drift_of(
                st, w.label_counts, w.conf.values(), w.lengths.values(), w.oov.values()
            )
            w.dirty = True


def evict_windows(st: MonitorState) -> None:
    """Keep ``windows_kept`` windows; older ones go to the retired sketch once written."""
    extra = len(st.windows) - st.config.windows_kept
    if extra <= 0:
        return
    for start in sorted(st.windows)[:extra]:
        w = st.windows[start]
        if w.dirty and st.store is not None:
            continue  # written at the next store flush, then evicted
        st.retired.merge(w.sketch)
        del st.windows[start]
        st.drops["windows_evicted"] += 1


def evaluate_alerts(st: MonitorState, now: float) -> None:
    """Refresh the rolling drift (its scores: no rule reads an interval), evaluate the rules,
    queue their events for the store."""
    st.drift_cache = dict(rolling_drift(st, intervals=False) or {})
    events = st.alerts.evaluate(metric_table(st, now), now)
    for e in events if st.store is not None else ():
        st.alert_rows.append(
            {
                "ts": e.ts,
                "model": e.model,
                "variant": e.variant,
                "rule": e.rule,
                "previous": e.previous,
                "level": e.level,
                "value": e.value,
                "n": e.n,
                "reason": e.reason,
            }
        )
    extra = len(st.alert_rows) - st.config.max_events
    if extra > 0:
        st.drops["alert_rows"] += extra
        del st.alert_rows[:extra]


def collect_rows(st: MonitorState, now: float) -> dict[str, list[Any]]:
    """Take every row waiting for the store (the dirty windows become clean)."""
    snaps = []
    for w in st.windows.values():
        if w.dirty:
            snaps.append(w.row(st.name, st.version, st.variant, st.labels, now))
            w.dirty = False
    details = st.details.take()
    labels = [st.label_rows.popleft() for _ in range(len(st.label_rows))]
    res = [
        {
            "ts": r["ts"],
            "rss_bytes": r["rss_bytes"],
            "cpu_percent": r["cpu_percent"],
            "disk_bytes": r["disk_bytes"],
            "gc": json.dumps({"counts": r["gc_counts"], "collections": r["gc_collections"]}),
        }
        for r in st.resource_rows
    ]
    st.resource_rows = []
    alerts, st.alert_rows = st.alert_rows, []
    return {
        "snapshots": snaps,
        "predictions": details,
        "labels": labels,
        "resources": res,
        "alerts": alerts,
    }


def write_rows(st: MonitorState, store: MonitorStore, rows: dict[str, list[Any]]) -> None:
    """Write collected rows (outside the lock); on failure count them and retry the windows."""
    try:
        store.write(**rows)
        st.counters["store_writes"] += 1
    except Exception:
        st.counters["store_errors"] += 1
        lost = sum(len(v) for k, v in rows.items() if k not in ("snapshots", "predictions"))
        lost += sum(c.rows for c in rows["predictions"])
        st.drops["store_rows"] += lost
        with st.lock:  # windows are upserted: mark them for the next attempt
            for r in rows["snapshots"]:
                w = st.windows.get(r["window_start"])
                if w is not None:
                    w.dirty = True
        logger.exception("monitor %s: store write failed (%d rows lost)", st.name, lost)
