"""CPU cost of the shadow check inside ``leanml serve`` at the default rate (issue #19).

Usage (the machine is shared: serialize benchmark runs with the lock)::

    python -m leanml.cli train intent --models-dir /tmp/shadowreg
    python -m leanml.cli compress intent --models-dir /tmp/shadowreg
    flock /tmp/bench.lock python benchmarks/shadow_cost.py --models-dir /tmp/shadowreg

A server per run (one worker, SQLite store, prediction cache off so every request is a model
call), ``--requests`` single-text predict requests from one client, CLINC150 test utterances
made unique per request. The server's process CPU time (user + system, children included) is
read before and after the load; runs alternate shadow on / off for ``--pairs`` pairs. Prints
JSON: CPU per request on and off (medians), ``overhead_pct`` = on/off - 1 per pair and their
median, the shadowed counts (the rate actually applied) and ``self_measured_overhead_pct``:
the shadow thread's own CPU time (scoring and store syncs) over the off runs' CPU per request
(on a shared 2-core machine the paired difference is within the run-to-run spread).
Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from leanml.bench.http import ServerSampler
from leanml.datasets import load_email_intents


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(models: Path, shadow: str, texts: list[str], n: int, tmp: Path) -> dict[str, Any]:
    port = _free_port()
    cfg = tmp / f"serve-{port}.toml"
    cfg.write_text(f'[serving]\ncache_max_entries = 0\nshadow = "{shadow}"\n')
    cmd = [
        sys.executable, "-m", "leanml.cli", "serve", str(models), "--port", str(port),
        "--store", f"sqlite:///{tmp / f'm-{port}.db'}", "--config", str(cfg),
        "--workers", "1", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc = ServerSampler(server.pid)  # its CPU: the process and its children
        with httpx.Client(base_url=url, timeout=30) as c:
            path = "/v1/models/intent/predict"
            for i in range(300):  # warm-up, and the original loaded by the shadow thread
                c.post(path, json={"inputs": [f"{texts[i % len(texts)]} w{i}"]})
            time.sleep(2)
            sh0 = c.get("/v1/models/intent").json().get("shadow") or {}
            until = time.monotonic() + 60  # the original loaded before the count starts
            while sh0 and not sh0.get("original_memory_bytes") and time.monotonic() < until:
                time.sleep(1)
                sh0 = c.get("/v1/models/intent").json().get("shadow") or {}
            before, t0 = proc.cpu(), time.perf_counter()
            for i in range(n):
                r = c.post(path, json={"inputs": [f"{texts[i % len(texts)]} r{i}"]})
                r.raise_for_status()
            time.sleep(1.5)  # the shadow thread's last batch and sync belong to this run
            cpu, wall = proc.cpu() - before, time.perf_counter() - t0
            info = c.get("/v1/models/intent").json()
        sh = info.get("shadow") or {}
        return {
            "shadow": shadow,
            "variant": info["variant"],
            "cpu_us_per_request": cpu / n * 1e6,
            "wall_s": wall,
            "shadowed": (sh.get("local_shadowed") or 0) - (sh0.get("local_shadowed") or 0)
            if sh
            else None,
            # the shadow thread's own CPU (scoring, store syncs) per request of the load
            "shadow_thread_cpu_us_per_request": (
                (sh["thread_cpu_s"] - sh0["thread_cpu_s"]) / n * 1e6 if sh else None
            ),
            "original_memory_bytes": sh.get("original_memory_bytes"),
        }
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args(argv)
    texts = [str(t) for t in load_email_intents().X_test]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.pairs):
            for mode in ("on", "off"):
                runs.append(run(args.models_dir, mode, texts, args.requests, Path(d)))
    on = [r["cpu_us_per_request"] for r in runs if r["shadow"] == "on"]
    off = [r["cpu_us_per_request"] for r in runs if r["shadow"] == "off"]
    ratios = [a / b - 1 for a, b in zip(on, off, strict=True)]
    out = {
        "requests_per_run": args.requests,
        "pairs": args.pairs,
        "cpu_us_per_request_on": statistics.median(on),
        "cpu_us_per_request_off": statistics.median(off),
        "overhead_pct_paired": [round(100 * x, 2) for x in ratios],
        "overhead_pct_median": round(100 * statistics.median(ratios), 2),
        # the shadow thread's own CPU against the shadow-off server's CPU per request
        "self_measured_overhead_pct": round(
            100
            * statistics.median(
                [r["shadow_thread_cpu_us_per_request"] for r in runs if r["shadow"] == "on"]
            )
            / statistics.median(off),
            3,
        ),
        "runs": runs,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
