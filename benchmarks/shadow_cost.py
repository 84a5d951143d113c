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

``--instructions``: the same on/off pair with the server under valgrind's callgrind, which
counts the instructions the server process executes (every thread) between the end of the
warm-up and the end of the load (``callgrind_control --zero`` / ``--dump``). Instruction counts
do not depend on what else the machine runs, so one pair resolves differences far below the
CPU-time spread. Under valgrind the server runs ~30x slower while the background threads keep
wall-clock intervals, so ``--dilate`` (default 30) multiplies the flusher's, the store's and
the shadow check's intervals in both runs to keep their work per request as in a native run.
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
import psutil

from leanml.datasets import load_email_intents


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _callgrind_total(path: Path) -> int:
    """The instruction total of a callgrind dump (its ``summary:``/``totals:`` line)."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run(
    models: Path,
    shadow: str,
    texts: list[str],
    n: int,
    tmp: Path,
    instructions: bool = False,
    dilate: float = 1.0,
) -> dict[str, Any]:
    port = _free_port()
    cfg = tmp / f"serve-{port}.toml"
    cfg.write_text(
        f'[serving]\ncache_max_entries = 0\nshadow = "{shadow}"\n'
        f"shadow_interval_s = {2.0 * dilate}\n"
        f"[monitor]\nflush_interval_s = {0.2 * dilate}\nstore_interval_s = {5.0 * dilate}\n"
    )
    out = tmp / f"callgrind-{port}.out"
    grind = (
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
        if instructions
        else []
    )
    cmd = [
        *grind, sys.executable, "-m", "leanml.cli", "serve", str(models), "--port", str(port),
        "--store", f"sqlite:///{tmp / f'm-{port}.db'}", "--config", str(cfg),
        "--workers", "1", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + (1800 if instructions else 120)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc = psutil.Process(server.pid)
        with httpx.Client(base_url=url, timeout=30) as c:
            path = "/v1/models/intent/predict"
            for i in range(300):  # warm-up, and the original loaded by the shadow thread
                c.post(path, json={"inputs": [f"{texts[i % len(texts)]} w{i}"]})
            time.sleep(2)
            sh0 = c.get("/v1/models/intent").json().get("shadow") or {}
            until = time.monotonic() + 60 * dilate  # the original loaded before the count
            while sh0 and not sh0.get("original_memory_bytes") and time.monotonic() < until:
                time.sleep(1)
                sh0 = c.get("/v1/models/intent").json().get("shadow") or {}
            if instructions:
                subprocess.run(["callgrind_control", "--zero", str(server.pid)], check=True)
            before, t0 = _cpu(proc), time.perf_counter()
            for i in range(n):
                r = c.post(path, json={"inputs": [f"{texts[i % len(texts)]} r{i}"]})
                r.raise_for_status()
            time.sleep(1.5 * dilate)  # the shadow thread's last batch and sync: this run's
            cpu, wall = _cpu(proc) - before, time.perf_counter() - t0
            instr = None
            if instructions:
                dumped = set(tmp.glob(f"callgrind-{port}.out*"))
                subprocess.run(["callgrind_control", "--dump", str(server.pid)], check=True)
                new = sorted(set(tmp.glob(f"callgrind-{port}.out*")) - dumped)
                instr = sum(_callgrind_total(f) for f in new)
            info = c.get("/v1/models/intent").json()
        sh = info.get("shadow") or {}
        return {
            "shadow": shadow,
            "variant": info["variant"],
            "cpu_us_per_request": cpu / n * 1e6,
            "instructions_per_request": instr / n if instr is not None else None,
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
        server.wait(600 if instructions else 60)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    ap.add_argument("--dilate", type=float, default=None, help="interval factor (see above)")
    args = ap.parse_args(argv)
    dilate = args.dilate if args.dilate is not None else (30.0 if args.instructions else 1.0)
    texts = [str(t) for t in load_email_intents().X_test]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.pairs):
            for mode in ("on", "off"):
                runs.append(
                    run(
                        args.models_dir,
                        mode,
                        texts,
                        args.requests,
                        Path(d),
                        args.instructions,
                        dilate,
                    )  # fmt: skip
                )
    on = [r["cpu_us_per_request"] for r in runs if r["shadow"] == "on"]
    off = [r["cpu_us_per_request"] for r in runs if r["shadow"] == "off"]
    ratios = [a / b - 1 for a, b in zip(on, off, strict=True)]
    out: dict[str, Any] = {
        "requests_per_run": args.requests,
        "dilate": dilate,
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
    if args.instructions:  # one count per run: paired ratios of instructions per request
        i_on = [r["instructions_per_request"] for r in runs if r["shadow"] == "on"]
        i_off = [r["instructions_per_request"] for r in runs if r["shadow"] == "off"]
        out["instructions_per_request_on"] = statistics.median(i_on)
        out["instructions_per_request_off"] = statistics.median(i_off)
        out["instructions_overhead_pct_paired"] = [
            round(100 * (a / b - 1), 3) for a, b in zip(i_on, i_off, strict=True)
        ]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
