"""Serving right after ``leanml serve`` reports ready, and around a shadow check's resume: the
loads that hold the GIL (the shadow check's scikit-learn original) against the requests.

    flock /tmp/bench.lock python benchmarks/serve_startup.py [--starts 2] [--resumes 3]

Each start: a fresh ``leanml serve`` on the serving benchmark's registry (the e-mail model, its
compact variant, cache off), then at once a 4 s closed-loop load (16 clients, real test
e-mails): seconds to ready, requests/s and p99 of those first seconds. Then, on the last
server, each resume: the check paused, then resumed 0.5 s into a 5 s load (the original loads
again meanwhile): requests/s, p99 and the load's seconds. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_monitor_cpu import ADMIN  # the benchmarks' own helpers
from serving import CACHE, leanml_server, prepare_models, texts_file


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    return {"rps": r.get("rps"), "p99_ms": (r.get("latency_ms") or {}).get("p99")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--resumes", type=int, default=3)
    args = ap.parse_args(argv)
    work = CACHE / "serving"
    work.mkdir(parents=True, exist_ok=True)
    models, _, _ = prepare_models(work)
    texts = texts_file(work)
    os.environ["LEANML_ADMIN_TOKEN"] = ADMIN["Authorization"].split()[1]
    starts: list[dict[str, Any]] = []
    resumes: list[dict[str, Any]] = []
    for i in range(args.starts):
        t0 = time.monotonic()
        with leanml_server(work, models, f"startup-{i}", ["--no-cache"]) as srv:
            ready = time.monotonic() - t0
            first = srv.run(texts, duration=4.0, warmup=0.0, concurrency=16)
            starts.append({"ready_s": round(ready, 2), **_figures(first)})
            if i < args.starts - 1:
                continue
            url = f"{srv.url}/v1/models/email"
            for _ in range(args.resumes):
                httpx.put(f"{url}/shadow", json={"shadow": "off"}, headers=ADMIN, timeout=30)
                time.sleep(3.0)  # released on the check's next wake
                got: dict[str, Any] = {}
                load = threading.Thread(
                    target=lambda out=got, s=srv: out.update(
                        s.run(texts, duration=5.0, warmup=0.2, concurrency=16)
                    )
                )
                load.start()
                time.sleep(0.5)
                t1 = time.monotonic()
                httpx.put(f"{url}/shadow", json={"shadow": "on"}, headers=ADMIN, timeout=30)
                while not (httpx.get(f"{url}/stats", timeout=30).json().get("shadow") or {}).get(
                    "original_memory_bytes"
                ):
                    time.sleep(0.05)
                loaded = time.monotonic() - t1
                load.join()
                resumes.append({"original_loaded_s": round(loaded, 2), **_figures(got)})
    print(json.dumps({"starts_first_4s": starts, "resumes_5s": resumes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
