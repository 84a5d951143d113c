"""A real server for the dashboard tests: uvicorn on 127.0.0.1 serving ``/dashboard``.

    python tests/dashboard/live_server.py --port P --dir DIR [--models intent] [--xss]

It fills DIR/store.db with a 50-minute monitored history (scenario.py), then serves live
monitors (real clock, background flushers, same store) fed by a traffic thread: real predictions
in micro-batches of varying size through a small harness cache, with delayed ground truth.
``--xss`` adds a model whose name and labels are markup, to prove they are escaped.
Prints "READY" once the port is open.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario
import uvicorn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from leanml._text import oov_analyzer
from leanml.dashboard.web import MonitorProvider, dashboard_app
from leanml.monitor import MonitorConfig, MonitorStore, monitored
from leanml.registry import ModelRegistry

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_LABEL = "<script>alert(1)</script>"


class Harness:
    """Traffic through a tiny cache and micro-batches, counted like a server would."""

    def __init__(self, name: str, est: Any, texts: list[str], truth: list[str]) -> None:
        self.name, self.est, self.texts, self.truth = name, est, texts, truth
        self.cache: dict[str, str] = {}
        self.hits = self.misses = self.evictions = 0
        self.batches: Counter[int] = Counter()
        self.waits: list[float] = []
        self.pending: list[tuple[float, str, str]] = []

    def step(self, rng: random.Random) -> None:
        k = rng.choice([1, 2, 4, 8, 8, 16])
        idx = [rng.randrange(len(self.texts)) for _ in range(k)]
        todo = []
        for i in idx:
            if self.texts[i] in self.cache:
                self.hits += 1
            else:
                self.misses += 1
                todo.append(i)
        if todo:
            self.batches[len(todo)] += 1
            self.waits.append(rng.uniform(0.0002, 0.002))
            del self.waits[:-500]
            batch = [self.texts[i] for i in todo]
            labels, ids = self.est.predict_with_ids(batch)
            for i, lab, pid in zip(todo, labels, ids, strict=True):
                if len(self.cache) >= 200:
                    self.cache.pop(next(iter(self.cache)))
                    self.evictions += 1
                self.cache[self.texts[i]] = str(lab)
                if rng.random() < 0.6:
                    self.pending.append((time.time() + 2.0, pid, self.truth[i]))
        now = time.time()
        for item in [p for p in self.pending if p[0] <= now]:
            self.est.record_ground_truth(item[1], item[2])
        self.pending = [p for p in self.pending if p[0] > now]

    def extras(self) -> dict[str, Any]:
        waits = sorted(self.waits)
        return {
            "cache": {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "entries": len(self.cache),
                "max_entries": 200,
                "enabled": True,
            },
            "batching": {
                "batch_sizes": dict(self.batches),
                "queue_wait_p99_s": waits[int(0.99 * (len(waits) - 1))] if waits else None,
                "max_wait_ms": 2.0,
                "max_batch_size": 16,
            },
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--models", default="intent")
    ap.add_argument("--xss", action="store_true")
    ap.add_argument("--token", default="test-admin-token")
    ap.add_argument("--history-minutes", type=int, default=30)
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between traffic steps")
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    store_url = f"sqlite:///{args.dir / 'store.db'}"
    start = time.time() - (args.history_minutes + 5) * 60
    sc = scenario.run(
        store_url,
        args.dir / "models",
        start=start,
        names=names,
        normal_minutes=args.history_minutes * 2 // 3,
        drift_minutes=args.history_minutes // 3,
    )
    registry = ModelRegistry(args.dir / "models")
    store = MonitorStore(store_url, process_id=f"live:{os.getpid()}")
    cfg = MonitorConfig(
        window_s=60.0,
        store_interval_s=2.0,
        resource_interval_s=2.0,
        alert_rules=scenario.scenario_rules(),
    )
    monitors: dict[str, Any] = {}
    harnesses = []
    from leanml.datasets import load_dataset, load_email_intents

    for name in names:
        task = name if name in ("email", "sentiment") else "intent"
        ds = load_dataset(task) if task != "intent" else load_email_intents()
        pipe = sc.pipelines[name]
        vec = pipe.named_steps["tfidf"]
        ref = registry.manifest(name).extra["reference"]
        est = monitored(
            pipe,
            name,
            config=cfg,
            store=store,
            reference=ref,
            version="1",
            variant=registry.active_variant(name),
            analyzer=oov_analyzer(vec),
            vocabulary=vec.vocabulary_,
        )
        monitors[name] = est.monitor
        harnesses.append(Harness(name, est, list(ds.X_test), [str(y) for y in ds.y_test]))
    if args.xss:
        X = ["buy cheap pills now", "win money fast", "meeting notes attached", "lunch at noon"]
        y = [XSS_LABEL, XSS_LABEL, "ham", "ham"]
        pipe = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(X, y)
        est = monitored(pipe, XSS_NAME, config=cfg, store=store, version="1")
        monitors[XSS_NAME] = est.monitor
        harnesses.append(Harness(XSS_NAME, est, X * 5, y * 5))
        # its monitoring paused after a first step, as a server does: no traffic recorded since
        harnesses[-1].step(random.Random(0))
        est.monitor.set_paused(True)
    by_name = {h.name: h for h in harnesses}
    stop = threading.Event()

    def traffic() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            for h in harnesses:
                if not h.est.monitor.paused:
                    h.step(rng)
            stop.wait(args.interval)

    threading.Thread(target=traffic, daemon=True).start()
    provider = MonitorProvider(
        monitors, registry=registry, store=store, extras=lambda n: by_name[n].extras()
    )
    app = Starlette(
        routes=[
            Route("/", lambda r: PlainTextResponse("leanml test server")),
            Mount("/dashboard", app=dashboard_app(provider, admin_token=args.token, refresh_s=1.0)),
        ]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=lambda: (time.sleep(0.5), print("READY", flush=True))).start()
    try:
        server.run()
    finally:
        stop.set()
        for m in monitors.values():
            m.close()


if __name__ == "__main__":
    main()
