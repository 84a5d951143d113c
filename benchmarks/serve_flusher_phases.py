"""Where the monitor's flusher spends its CPU inside a loaded ``leanml serve`` (issue #17).

    flock /tmp/bench.lock python benchmarks/serve_flusher_phases.py [--duration 20] [--json F]

Starts one ``leanml serve`` at the defaults (the compact e-mail model, cache off, its own
SQLite store; as ``serve_monitor_cpu.py``) with a ``sitecustomize`` that wraps the flusher's
step functions (``leanml.monitor._flush``, ``_ingest``, ``_details``, ``_windows``, the resource
sample, the store's block encoding) in timers of the calling thread's CPU time. After a
warm-up load, the timers are reset, a measured load runs (closed loop, single-text requests of
real test-split e-mails, ``--concurrency`` clients), and the script prints each phase's CPU
per prediction served, calls and CPU per call, beside the monitor's own figure
(``stats()["overhead"]``) and the server's CPU per request.

The phases nest (``step`` holds ``drain`` and ``due``; ``drain`` holds ``take``,
``keep_details`` ...): read them as a tree, not a sum. Each timer reads the thread CPU clock
twice per call (~1 us with cold caches): per-step phases are exact enough, but do not wrap
per-prediction functions with it. Only this script's server loads the wrappers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import CACHE, leanml_server, prepare_models, texts_file  # the serving helpers

#: (module, function, phase name) timed in the server's flusher
PHASES = (
    ("leanml.monitor._flush", "_step", "step"),
    ("leanml.monitor._flush", "_drain", "drain"),
    ("leanml.monitor._ingest", "take_batches", "take"),
    ("leanml.monitor._ingest", "keep_details", "keep_details"),
    ("leanml.monitor._details", "detail_fields", "detail_fields"),
    ("leanml.monitor._ingest", "_add_to_windows", "add_windows"),
    ("leanml.monitor._ingest", "_count_seconds", "count_seconds"),
    ("leanml.monitor._ingest", "_count_labels", "count_labels"),
    ("leanml.monitor._ingest", "_oov", "oov"),
    ("leanml.monitor._flush", "_due_work", "due"),
    ("leanml.monitor._flush", "evaluate_alerts", "alerts"),
    ("leanml.monitor._windows", "rolling_drift", "rolling_drift"),
    ("leanml.monitor._windows", "metric_table", "metric_table"),
    ("leanml.monitor._flush", "_sample_resources", "resources"),
    ("leanml.monitor._flush", "collect_rows", "collect"),
    ("leanml.monitor._flush", "write_rows", "write"),
    ("leanml.monitor._blocks", "encode_columns", "encode_blocks"),
    ("leanml.monitor._flush", "evict_windows", "evict"),
    ("leanml.monitor._flush", "_retention", "retention"),
)

SITE = """
import importlib, json, os, threading
from time import thread_time_ns

acc, calls = {}, {}
out, reset = os.environ["LEANML_PHASES_OUT"], os.environ["LEANML_PHASES_OUT"] + ".reset"


def _wrap(mod, name, key):
    f = getattr(mod, name)

    def timed(*a, **k):
        t = thread_time_ns()
        try:
            return f(*a, **k)
        finally:
            acc[key] = acc.get(key, 0) + thread_time_ns() - t
            calls[key] = calls.get(key, 0) + 1

    setattr(mod, name, timed)


for m, fn, key in json.loads(os.environ["LEANML_PHASES"]):
    _wrap(importlib.import_module(m), fn, key)


def _dump():
    while True:
        threading.Event().wait(0.25)
        if os.path.exists(reset):
            acc.clear()
            calls.clear()
            os.unlink(reset)
        with open(out + ".tmp", "w") as fh:
            json.dump({"ns": acc, "calls": calls}, fh)
        os.replace(out + ".tmp", out)


threading.Thread(target=_dump, daemon=True, name="phase-dump").start()
"""


def _local(url: str) -> dict[str, Any]:
    stats = httpx.get(f"{url}/v1/models/email/stats", timeout=30).json()
    return {"local": stats["local"], "served": stats["serving"]["predictions"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of measured load")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = CACHE / "serving"
    work.mkdir(parents=True, exist_ok=True)
    models, _, model_info = prepare_models(work)
    texts = texts_file(work)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "sitecustomize.py").write_text(SITE)
        out = Path(tmp, "phases.json")
        os.environ["LEANML_PHASES"] = json.dumps(PHASES)
        os.environ["LEANML_PHASES_OUT"] = str(out)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [tmp, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        with leanml_server(work, models, "phases", ["--no-cache"]) as srv:
            srv.run(texts, duration=5.0, warmup=0.5, concurrency=args.concurrency)
            before = _local(srv.url)
            Path(f"{out}.reset").touch()
            while Path(f"{out}.reset").exists():
                time.sleep(0.05)
            run = srv.run(texts, duration=args.duration, warmup=0.0, concurrency=args.concurrency)
            after = _local(srv.url)
            time.sleep(0.5)  # the next dump holds every step of the run
            got = json.loads(out.read_text())
    n = after["served"] - before["served"]
    own = after["local"]["overhead"]["monitor_cpu_s"] - before["local"]["overhead"]["monitor_cpu_s"]
    phases = {
        key: {
            "us_per_prediction": round(ns / n / 1e3, 3),
            "calls": got["calls"][key],
            "us_per_call": round(ns / got["calls"][key] / 1e3, 1),
        }
        for key, ns in sorted(got["ns"].items(), key=lambda kv: -kv[1])
    }
    result = {
        "metric": "the monitor's flusher CPU per prediction served, by phase (nested: read as a "
        "tree), inside one loaded leanml serve at the defaults",
        "predictions": n,
        "server_cpu_us_per_request": run.get("server_cpu_us_per_request"),
        "monitor_us_per_prediction": round(own / n * 1e6, 3) if n else None,
        "phases": phases,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "model": model_info,
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
