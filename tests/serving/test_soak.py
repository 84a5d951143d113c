"""A 3-minute soak of ``leanml serve`` under steady load (issue #20, point 4).

Predictions (repeated and new texts), feedback for their ids and ``/metrics`` + ``/stats``
scrapes, at a steady pace for 3 minutes. The server's resident memory may grow while its
caches and buffers fill; after the first 30 s it must grow by less than 20 MB. Every answer
is 200 (a few feedback ids may already have a label: 200 ``duplicate`` too).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from .conftest import running

NAME = "intent"
DURATION_S = float(os.environ.get("LEANML_SOAK_S", "180"))
WARMUP_S = 30.0
MAX_GROWTH = 20 * 1024 * 1024
PACE_S = 0.01  # between a client's requests: a steady load, not a saturating one
# The prediction cache is bounded (entries and bytes) but at this pace (~90 new texts/s) the
# default 10,000 entries fill at about 110 s, after the warm-up: a smaller cache fills within
# it, so what grows afterwards is not a bounded cache filling up.
CACHE_ENTRIES = 2_000


@pytest.mark.slow
def test_soak_memory_is_flat(models_dir: Path, tmp_path: Path, intent_texts: list[str]) -> None:
    env = {"LEANML_SERVING_CACHE_MAX_ENTRIES": str(CACHE_ENTRIES)}
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    with running(models_dir, store, tmp_path, env=env) as srv:
        proc = psutil.Process(srv.proc.pid)
        stop = threading.Event()
        codes: Counter[tuple[str, int]] = Counter()
        errors: list[str] = []

        def predict_and_label(seed: int) -> None:
            i = 0
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                while not stop.is_set():
                    i += 1
                    texts = [intent_texts[(seed + i) % len(intent_texts)], f"soak {seed} {i}"]
                    r = c.post(f"/v1/models/{NAME}/predict", json={"inputs": texts})
                    codes["predict", r.status_code] += 1
                    if r.status_code != 200:
                        errors.append(r.text[:200])
                        continue
                    pid = r.json()["predictions"][i % 2]["id"]
                    f = c.post(f"/v1/models/{NAME}/feedback", json={"id": pid, "label": "reply"})
                    codes["feedback", f.status_code] += 1
                    if f.status_code != 200:
                        errors.append(f.text[:200])
                    time.sleep(PACE_S)

        def scrape() -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                while not stop.wait(1.0):
                    for path in ("/metrics", f"/v1/models/{NAME}/stats"):
                        r = c.get(path)
                        codes[path, r.status_code] += 1

        threads = [threading.Thread(target=predict_and_label, args=(k * 17,)) for k in range(2)]
        threads.append(threading.Thread(target=scrape))
        for t in threads:
            t.start()
        rss: list[tuple[float, int]] = []
        t0 = time.monotonic()
        try:
            while (now := time.monotonic() - t0) < DURATION_S:
                rss.append((now, proc.memory_info().rss))
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        log = srv.log.read_text(errors="replace")

    assert not errors, errors[:5]
    assert "Traceback" not in log, log[-3000:]
    base = max(r for t, r in rss if t <= WARMUP_S)  # the high mark of the first 30 s
    end = max(r for t, r in rss[-5:])
    growth = end - base
    figures = {
        "duration_s": DURATION_S,
        "requests": dict(Counter({f"{k[0]} {k[1]}": v for k, v in codes.items()})),
        "rss_mb": {
            "start": round(rss[0][1] / 2**20, 1),
            "at_30s_max": round(base / 2**20, 1),
            "end": round(end / 2**20, 1),
            "max": round(max(r for _, r in rss) / 2**20, 1),
        },
        "growth_after_30s_mb": round(growth / 2**20, 2),
        "rss_mb_every_30s": [round(r / 2**20, 1) for t, r in rss if int(t) % 30 == 0],
    }
    print(json.dumps(figures))
    assert growth < MAX_GROWTH, figures
