"""Cost of metrics collection with a full day of retained one-minute windows (issue #17).

Three models, one process, 1,440 one-minute snapshot rows and 50,000 joined labels in the
feedback log each in a SQLite store (plus a monitor per model holding an hour of windows in
memory); times ``MonitorStore.merged`` (what
``/v1/models/NAME/stats`` and ``/metrics`` read per model), ``ModelMonitor.stats()`` and the
monitors' Prometheus exposition. Medians of repeated calls, in ms; prints JSON.

    flock /tmp/bench.lock python benchmarks/metrics_collection.py [--windows 1440]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np

from leanml.monitor import ModelMonitor, MonitorStore
from leanml.monitor.prometheus import render
from leanml.monitor.window import Window

T0 = 1_700_000_000.0


def _fill(store: MonitorStore, model: str, windows: int, rng: np.random.Generator) -> None:
    rows = []
    for i in range(windows):
        w = Window(T0 + 60.0 * i, 60.0, 0.005, 200)
        n = 600
        w.add(rng.integers(0, 3, n), rng.uniform(0.5, 1, n), rng.lognormal(-7, 0.5, n), 3)
        rows.append(w.row(model, "1", "default", ["a", "b", "c"], T0 + 60.0 * i))
    store.write(snapshots=rows)


def _feedback(store: MonitorStore, model: str, labels: int, rng: np.random.Generator) -> None:
    """A day of joined labels in the durable feedback log (what ``merged`` counts)."""
    rows = [
        {
            "prediction_id": f"{model}-{i}",
            "model": model,
            "label": "a",
            "owner": "o",
            "received_by": "r",
            "ts": T0 + 86_400.0 * i / labels,
            "status": "joined",
            "variant": "default",
            "predicted": "a" if rng.random() < 0.9 else "b",
        }
        for i in range(labels)
    ]
    with store.engine.begin() as conn:
        conn.execute(store.feedback.insert(), rows)


def _ms(f, reps: int) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=1440)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--labels", type=int, default=50_000, help="feedback rows per model")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    models = ["email", "intent", "sentiment"]
    with tempfile.TemporaryDirectory() as tmp:
        store = MonitorStore(f"sqlite:///{tmp}/m.db")
        for m in models:
            _fill(store, m, args.windows, rng)
            _feedback(store, m, args.labels, rng)
        clock = [T0 + 60.0 * args.windows]
        mons = []
        for m in models:
            mon = ModelMonitor(m, store=store, sinks=[], clock=lambda: clock[0], start=False)
            for k in range(60):  # an hour of windows in memory
                clock[0] = T0 + 60.0 * (args.windows - 60 + k)
                mon.record_batch(
                    [f"{m}{k}-{j}" for j in range(100)], ["a"] * 100, [0.9] * 100, 1e-3
                )
                mon.flush()
            mons.append(mon)
        out = {
            "windows_per_model": args.windows,
            "feedback_labels_per_model": args.labels,
            "models": len(models),
            "store_merged_ms_per_model": _ms(lambda: store.merged(model="intent"), args.reps),
            "monitor_stats_ms": _ms(mons[1].stats, args.reps),
            "monitors_exposition_ms": _ms(lambda: render(mons), args.reps),
        }
        out["scrape_ms_estimate"] = (
            out["monitors_exposition_ms"] + 3 * out["store_merged_ms_per_model"]
        )
        out["stats_ms_estimate"] = out["monitor_stats_ms"] + out["store_merged_ms_per_model"]
        out["pass"] = {
            "scrape_le_2ms": out["scrape_ms_estimate"] <= 2.0,
            "stats_le_2ms": out["stats_ms_estimate"] <= 2.0,
        }
        for mon in mons:
            mon.close()
        store.close()
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
