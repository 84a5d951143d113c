"""Where the shadow check re-scores: on its own thread, or on the event loop that serves.

    flock /tmp/bench.lock python benchmarks/shadow_where.py [--rate 0.1] [--interval 0.5]

In one process, an event loop serves the serving benchmark's compact e-mail model in batches
of 10 real test e-mails (``predict_top``, as ``leanml serve`` does) and offers each batch to
a real :class:`~leanml.serving.shadow.ShadowGuard` (no store; the original loaded, its lossless
conversion re-scoring). Three modes, each run for ``--segment`` seconds, in forward and reverse
order by turns:

* ``none``: no check;
* ``thread``: the guard's own thread re-scores (how it was before it asked the loop: the
  benchmark turns the loop off for this guard);
* ``loop``: the guard asks the serving loop, which re-scores between batches (the default).

Per served text: the process's CPU (every thread), the serving thread's, and the check's own
(what it measures: its thread's and its re-scoring on the loop). ``cost`` is a mode's process
CPU over ``none``'s, minus one (medians over the repetitions). The default ``--rate 0.1`` is ten
times ``leanml serve``'s default so that the cost stands out of this machine's noise; the
work per re-scored text is the same. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from leanml._predict import predict_top
from leanml.config import ServingConfig
from leanml.registry import ModelRegistry
from leanml.serving.shadow import ShadowGuard
from serving import CACHE, prepare_models, texts_file  # the serving benchmark's registry

MODES = ("none", "thread", "loop")


def _guard(reg: ModelRegistry, version: int, rate: float, interval: float) -> ShadowGuard:
    cfg = ServingConfig(shadow_rate=rate, shadow_interval_s=interval, shadow_budget=100.0)
    guard = ShadowGuard(reg, "email", cfg, None, seed=0)
    guard.follow(version, "compact", "compact")
    if not guard.wait_loaded(300) or guard.original is None:
        raise RuntimeError("the shadow check did not load the original")
    return guard


async def _serve(model: Any, texts: list[str], guard: ShadowGuard | None, seconds: float) -> int:
    """Predict batches of 10 for ``seconds``, each offered to ``guard``; texts served."""
    rng = random.Random(0)
    classes = list(model.classes_)
    served = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i = rng.randrange(len(texts) - 10)
        batch = texts[i : i + 10]
        t0 = time.perf_counter()
        top, conf, _ = predict_top(model, batch)
        model_s = time.perf_counter() - t0
        ids = [f"r{served + k}" for k in range(len(batch))]  # a server has them in every mode
        labels = [classes[k] for k in top]
        if guard is not None:
            guard.offer(batch, ids, labels, conf, model_s)
        served += len(batch)
        await asyncio.sleep(0)  # the loop's turn: what a server does between batches
    return served


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--segment", type=float, default=4.0, help="seconds per mode and repetition")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    work = CACHE / "serving"
    work.mkdir(parents=True, exist_ok=True)
    models, _, _ = prepare_models(work)
    texts = [json.loads(line) for line in texts_file(work).read_text().splitlines()]
    reg = ModelRegistry(models)
    compact = reg.load("email", variant="compact")
    guards = {m: _guard(reg, compact.version, args.rate, args.interval) for m in MODES[1:]}
    guards["thread"]._score_on_loop = lambda: False  # type: ignore[method-assign]
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    loop = asyncio.new_event_loop()
    try:
        for rep in range(args.reps):
            for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                guard = guards.get(mode)
                own0 = (guard.thread_cpu_s + guard.loop_cpu_s) if guard else 0.0
                p0, s0 = time.process_time(), time.thread_time()
                n = loop.run_until_complete(_serve(compact.model, texts, guard, args.segment))
                # the last tick's re-scoring in the figures (the loop running, as in a server)
                loop.run_until_complete(asyncio.sleep(args.interval * 1.5))
                p1, s1 = time.process_time(), time.thread_time()
                own = (guard.thread_cpu_s + guard.loop_cpu_s - own0) if guard else 0.0
                rows[mode].append(
                    {
                        "process": (p1 - p0) / n * 1e6,
                        "serving": (s1 - s0) / n * 1e6,
                        "check": own / n * 1e6,
                    }
                )
    finally:
        loop.close()
        for g in guards.values():
            g.close()
    base = [r["process"] for r in rows["none"]]
    out: dict[str, Any] = {"rate": args.rate, "interval_s": args.interval, "reps": args.reps}
    for mode in MODES:
        med = {k: round(statistics.median(r[k] for r in rows[mode]), 2) for k in rows[mode][0]}
        costs = [r["process"] / b - 1 for r, b in zip(rows[mode], base, strict=True)]
        out[mode] = {"us_per_text": med, "cost": round(statistics.median(costs), 4)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
