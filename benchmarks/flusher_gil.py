"""Where the monitor's flusher steps: on the recording thread or on its own, beside a predict loop.

Usage (the machine is shared: serialize benchmark runs with the lock)::

    flock /tmp/bench.lock python benchmarks/flusher_gil.py [--seconds 10] [--rounds 2] [--json F]

A thread that waits (the flusher between steps, a store write, a file read) must take the GIL
back from the thread calling the model. CPython's waiter asks the holder to drop the GIL only
after a switch interval (5 ms) with no release; a scikit-learn pipeline lets the GIL go and
takes it back many times per prediction (NumPy, SciPy and BLAS calls), and each of those
releases wakes the waiter, which finds the GIL taken again and sleeps: it can wait 100 ms and
burn milliseconds of CPU in those wake-ups. A compact model (one C call holding the GIL) does
not do that. Measured on the CLINC150 intent model (TF-IDF words and pairs, logistic
regression) and its compact variant, single-text predict, plain and monitored in turn, texts
recorded, every monitor setting at its default:

* ``{variant}_wake_cpu_us`` / ``_wake_late_ms``: a bare thread's CPU to wake from a 0.2 s
  wait, and how late it resumes, beside the loop (median over the run);
* ``{variant}_{where}_monitor_ns`` / ``_monitor_pct``: the monitor's own CPU (flusher +
  timed caller share) per monitored prediction and over the model's time, ``where`` =
  ``record``: ``monitor.flush_on_record`` on (the default: the due step runs on the
  predicting thread); ``thread``: off (the flusher thread steps, as ``leanml serve`` does);
* ``{variant}_{where}_step_us``: the flusher CPU per step;
* ``{variant}_{where}_p50_us`` / ``_p99_us`` / ``_p999_us``: the monitored predict call's
  wall time (the call that runs a step waits for it; one that needs the GIL while the flusher
  thread holds it waits too).

Rounds alternate the two placements, so the machine's drift hits both. Figures of one run
only compare with each other. Needs ``LEANML_DATA_DIR`` for CLINC150 (else the bundled
sample).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from leanml import monitored
from leanml.compress import to_compact
from leanml.config import MonitorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_overhead import _fit, _load_intents  # the same intent model and texts


def _wake_cost(model: Any, texts: list[list[str]], seconds: float) -> dict[str, float]:
    """A thread waking from 0.2 s waits beside the predict loop: its CPU and lateness."""
    stop, tick = threading.Event(), threading.Event()
    cpu: list[int] = []
    late: list[float] = []

    def waker() -> None:
        while not stop.is_set():
            c0, w0 = time.thread_time_ns(), time.perf_counter()
            tick.wait(0.2)
            cpu.append(time.thread_time_ns() - c0)
            late.append(time.perf_counter() - w0 - 0.2)

    t = threading.Thread(target=waker)
    t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for x in texts:
            model.predict(x)
    stop.set()
    t.join()
    return {
        "wake_cpu_us": statistics.median(cpu) / 1e3,
        "wake_late_ms": statistics.median(late) * 1e3,
    }


def _monitor_cost(
    model: Any, texts: list[list[str]], seconds: float, on_record: bool
) -> dict[str, float]:
    """The monitor's CPU in the plain/monitored predict loop, its steps on the predicting
    thread (``flush_on_record``) or on the flusher thread; the monitored calls' wall time."""
    cfg = MonitorConfig(flush_on_record=on_record)
    wrapped = monitored(model, name="gil", sinks=[], config=cfg)
    mon = wrapped.monitor
    pc = time.perf_counter_ns
    lat: list[int] = []
    try:
        for x in texts[:20]:
            model.predict(x)
            wrapped.predict(x)
        mon.flush()
        before = mon.stats()["overhead"]
        before_n = mon.stats()["counts"]["predictions"]
        steps0 = mon.stats()["counters"]["flushes"]
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for x in texts:
                model.predict(x)
                t0 = pc()
                wrapped.predict(x)
                lat.append(pc() - t0)
                n += 1
        # the flusher thread takes the last records (within store_interval_s when records ran
        # the steps)
        time.sleep(mon.config.store_interval_s + 2 * mon.config.flush_interval_s)
        after = mon.stats()
    finally:
        wrapped.close()
    ov = after["overhead"]
    cpu = ov["monitor_cpu_s"] - before["monitor_cpu_s"]
    model_s = ov["model_s"] - before["model_s"]
    steps = after["counters"]["flushes"] - steps0
    flusher = ov["flusher_cpu_s"] - before["flusher_cpu_s"]
    q = np.quantile(np.asarray(lat, dtype=np.float64), [0.5, 0.99, 0.999]) / 1e3
    return {
        "monitor_ns": cpu / n * 1e9,
        "monitor_pct": 100.0 * cpu / model_s,
        "step_us": flusher / max(steps, 1) * 1e6,
        "predictions": n,
        "taken": after["counts"]["predictions"] - before_n,
        "p50_us": float(q[0]),
        "p99_us": float(q[1]),
        "p999_us": float(q[2]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    X, y, test = _load_intents(200)
    original = _fit(X, y)
    texts = [[t] for t in test]
    models = {"original": original, "compact": to_compact(original)[0]}
    runs: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for variant, model in models.items():
            for k, v in _wake_cost(model, texts, args.seconds / 2).items():
                runs.setdefault(f"{variant}_{k}", []).append(v)
            order = ("thread", "record") if r % 2 == 0 else ("record", "thread")
            for where in order:
                got = _monitor_cost(model, texts, args.seconds, where == "record")
                for k, v in got.items():
                    runs.setdefault(f"{variant}_{where}_{k}", []).append(v)
    out: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
    out["runs"] = runs
    for variant in models:
        out[f"{variant}_thread_over_record"] = (
            out[f"{variant}_thread_monitor_ns"] / out[f"{variant}_record_monitor_ns"]
        )
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
