"""Monitoring cost inside ``leanml serve`` as server CPU per request, monitoring on vs off (#17).

    flock /tmp/bench.lock python benchmarks/serve_monitor_cpu.py [--quick] [--json out.json]

Two ``leanml serve`` processes on the same registry (the email model: the compact variant the
registry serves by default, cache off, each with its own SQLite store), one with monitoring
on (defaults: store writes, 20% detail sampling is not forced: the server's own settings),
one with ``--no-monitoring``. Their load runs alternate (closed loop, ``leanml bench http``,
single-text requests of real test-split emails), forward order on even repetitions and
reverse on odd ones. Each run reports the server's process CPU time (every thread: the event
loop, the monitor's flusher, the store writes) over the measured window divided by the
requests answered. The cost is the median over repetitions of the paired ratio
``cpu_on / cpu_off - 1`` (the target: <= 3%); not a throughput ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (  # the serving benchmark's helpers
    CACHE,
    leanml_server,
    prepare_models,
    safe,
    texts_file,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 pairs of 2 s runs")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="seconds per run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    reps = args.reps or (6 if args.quick else 12)
    duration = args.duration or (2.0 if args.quick else 4.0)
    work = CACHE / "serving"
    work.mkdir(parents=True, exist_ok=True)
    models, _, model_info = prepare_models(work)
    texts = texts_file(work)
    base = ["--no-cache"]
    configs = {"on": base, "off": [*base, "--no-monitoring"]}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        servers = {
            k: stack.enter_context(leanml_server(work, models, f"cpu-{k}", extra))
            for k, extra in configs.items()
        }
        for rep in range(reps):
            order = list(configs) if rep % 2 == 0 else list(configs)[::-1]
            for k in order:
                runs[k].append(
                    safe(
                        f"{k} #{rep}",
                        servers[k].run,
                        texts,
                        duration=duration,
                        warmup=0.5,
                        concurrency=args.concurrency,
                    )
                )
    cpu = {k: [r.get("server_cpu_us_per_request") for r in v] for k, v in runs.items()}
    ratios = [a / b - 1 for a, b in zip(cpu["on"], cpu["off"], strict=True) if a and b]
    cost = statistics.median(ratios) if ratios else None
    out: dict[str, Any] = {
        "metric": "server process CPU per request, monitoring on vs off (paired, median)",
        "monitoring_cost_cpu": None if cost is None else round(cost, 4),
        "pair_costs": [round(x, 4) for x in ratios],
        "server_cpu_us_per_request": {
            k: round(statistics.median([x for x in v if x]), 1) if any(v) else None
            for k, v in cpu.items()
        },
        "reps_cpu_us_per_request": cpu,
        "rps_median": {
            k: statistics.median([r["rps"] for r in v if r.get("rps")]) if v else None
            for k, v in runs.items()
        },
        "mean_batch_size": {k: [r.get("mean_batch_size") for r in v] for k, v in runs.items()},
        "variant": {k: v[0].get("variant") if v else None for k, v in runs.items()},
        "pass": {"monitoring_cpu_le_3pct": None if cost is None else cost <= 0.03},
        "reps": reps,
        "duration_s_per_run": duration,
        "concurrency": args.concurrency,
        "model": model_info,
        "loadavg_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "wall_s": round(time.monotonic() - t0, 1),
    }
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
