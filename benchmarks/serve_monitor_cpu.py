"""Cost inside ``leanml serve`` as server CPU per request, on vs off: monitoring (#17) or the
shadow check (#19, ``--what shadow``).

    flock /tmp/bench.lock python benchmarks/serve_monitor_cpu.py [--quick] [--json out.json]
    flock /tmp/bench.lock python benchmarks/serve_monitor_cpu.py --what shadow --together \
        --concurrency 16 --reps 64 --blocks 16

Two ``leanml serve`` processes on the same registry (the email model: the compact variant the
registry serves by default, cache off, each with its own SQLite store), one at the defaults
(monitoring: 20% detail sampling, texts stored redacted, SQLite store writes; the shadow check
at 1%), the other with ``--no-monitoring`` or, for ``--what shadow``, ``shadow = "off"``.
Their load runs alternate (closed loop, ``leanml bench http``, single-text requests of real
test-split emails), forward order on even repetitions and reverse on odd ones. Each run reports
the server's process CPU time (every thread: the event loop, the monitor's flusher, the shadow
thread, the store writes) over the measured window divided by the requests answered.

``--what aa`` starts two identical servers (both at the defaults): its ``cost_cpu`` is what the
method reads when nothing differs (its offset and spread), to read the other two against.

Two figures:

* ``cost_cpu``: the median over repetitions of the paired ratio ``cpu_on / cpu_off - 1`` (the
  targets: monitoring <= 3%, shadow <= 1%), with its spread (quartiles, extremes) and a
  bootstrap 95% interval of the median (``pair_costs_median_ci95`` resamples pairs;
  ``median_ci95_by_blocks`` resamples whole blocks, the honest one when blocks differ): on this
  shared 2-core machine one pair moves by +-10% or more when the runs alternate, +-3% with
  ``--together``, so read the interval;
* ``self_measured``: the low-noise view from inside the server that has it on, per repetition
  (from before its first run to after its last): the monitor's own CPU (its flusher thread's
  CPU time, the ``stats()["overhead"]`` figure, plus the caller-side ``record_batch`` cost the
  handle times on one batch in 64), or the shadow check's (its thread's CPU time and its
  re-scoring on the event loop, ``loop_cpu_s``), over the server's process CPU in the same
  interval, and per prediction. It leaves out indirect costs (GIL hand-overs,
  caches), so it is a floor of the paired figure.

``--together`` loads both servers at once in each repetition (one client each): the rest of
the machine's load then hits both runs of a pair alike (narrower pairs on a shared machine),
at the price of the two servers sharing the cores. The repetitions run in ``--blocks`` blocks
(default 2), each with freshly started servers, every other block started in the opposite
order: a pair of processes carries an offset of its own (being the first or the second process,
where the memory landed: the server started first cost ~1.5 points more in 16-block runs, and
an A/A run had pairs from -3% to +3%), which only more blocks average out. For a cost near 1%,
use many short blocks (``--blocks 16 --reps 64``: 12 minutes).

``--what shadow --crossover`` removes that offset instead of averaging it: both servers start at
the defaults; in each repetition the check runs in one and is paused in the other
(``PUT /v1/models/email/shadow``: nothing sampled or re-scored, the original released), both
loaded at once, and the roles swap at the next repetition. A process's offset ``o`` enters one
repetition's ratio as ``1 + o`` and the next one's as ``1 / (1 + o)``, so the geometric mean of
the two (a swap) holds the check's cost alone. Resuming reloads the original; a short unmeasured
load then runs until the lossless conversion is chosen again, so a measured run never holds the
load. A paused check still reads the decision row every tick (``paused_thread_cpu_share``),
which a server started with ``shadow = "off"`` does not: that share is left out of the cost.

    flock /tmp/bench.lock python benchmarks/serve_monitor_cpu.py --what shadow --crossover \
        --concurrency 16 --reps 48 --blocks 6

``--what monitoring --crossover`` does the same for monitoring: in each repetition one server
records its predictions and the other has its monitoring paused (``PUT
/v1/models/email/monitoring``: ids still issued, nothing recorded). Each repetition's CPU per
prediction is its process CPU from just before its load to 6 s after it (past the store
interval, so the store writes of what a run recorded count in that run, not in the next one,
where the roles have swapped), over the predictions it served; the stats calls that read the
counts are made outside that interval.

    flock /tmp/bench.lock python benchmarks/serve_monitor_cpu.py --what monitoring --crossover \
        --concurrency 16 --reps 24 --blocks 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (  # the serving benchmark's helpers
    CACHE,
    LeanServer,
    leanml_server,
    prepare_models,
    safe,
    texts_file,
)

#: the admin token the servers get (``--crossover`` pauses and resumes their shadow check)
ADMIN = {"Authorization": "Bearer bench-admin-token"}


def own_figures(srv: LeanServer, what: str) -> tuple[float, float, int]:
    """(server process CPU s, the measured part's own CPU s, predictions served) right now:
    the monitor's flusher + timed caller share, or the shadow check's (its thread, and its
    re-scoring on the event loop)."""
    if what == "shadow":
        proc, _, own, served = _split(srv)
        return proc, own, served
    stats = httpx.get(f"{srv.url}/v1/models/email/stats", timeout=30).json()
    cpu = psutil.Process(srv.pid).cpu_times()
    local = stats["local"]
    return cpu.user + cpu.system, local["overhead"]["monitor_cpu_s"], local["counts"]["recorded"]


def quartiles(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {
        "min": round(min(xs), 4),
        "p25": round(q[0], 4),
        "median": round(statistics.median(xs), 4),
        "p75": round(q[2], 4),
        "max": round(max(xs), 4),
    }


def bootstrap_median(blocks: list[list[float]], n: int = 2000, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95% interval of the median of all values, resampling whole blocks
    (a block's pairs share its processes' offset: resampled one by one they would read as
    independent); blocks of one value resample the pairs."""
    blocks = [b for b in blocks if b]
    if len(blocks) < 2:
        return None
    rng = random.Random(seed)
    meds = sorted(
        statistics.median([x for b in rng.choices(blocks, k=len(blocks)) for x in b])
        for _ in range(n)
    )
    return [round(meds[int(0.025 * n)], 4), round(meds[int(0.975 * n) - 1], 4)]


def measured_run(
    srv: LeanServer, label: str, texts: Path, duration: float, concurrency: int
) -> dict[str, Any]:
    """One measured load run of ``srv`` (half a second of warm-up), its failure reported."""
    return safe(label, srv.run, texts, duration=duration, warmup=0.5, concurrency=concurrency)


def set_shadow(srv: LeanServer, on: bool, texts: Path) -> None:
    """Resume or pause the shadow check in ``srv`` and wait until it is in that state: paused,
    the original released; running, the original loaded and its scorer chosen."""
    url = f"{srv.url}/v1/models/email"
    r = httpx.put(
        f"{url}/shadow", json={"shadow": "on" if on else "off"}, headers=ADMIN, timeout=30
    )
    r.raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sh = httpx.get(f"{url}/stats", timeout=30).json().get("shadow") or {}
        loaded = sh.get("original_memory_bytes") is not None
        if (loaded and str(sh.get("scorer", "")).startswith("lossless")) if on else not loaded:
            return
        if on:  # the conversion is chosen once it matched the original on 32 shadowed texts
            safe("shadow warm-up", srv.run, texts, duration=1.5, warmup=0.1, concurrency=16)
        else:
            time.sleep(0.05)
    raise RuntimeError(f"the shadow check did not turn {'on' if on else 'off'} in 60 s")


def set_monitoring(srv: LeanServer, on: bool) -> None:
    """Resume or pause the monitoring of the e-mail model in ``srv`` (at once: the next
    prediction is recorded or not)."""
    r = httpx.put(
        f"{srv.url}/v1/models/email/monitoring",
        json={"monitoring": "on" if on else "off"},
        headers=ADMIN,
        timeout=30,
    )
    r.raise_for_status()


#: seconds a repetition waits after its load: past the store interval (5 s) and a flusher
#: step, so the store write of what the run recorded counts in the run, not in the next one
#: (where the roles have swapped)
SETTLE_S = 6.0


def _monitor_reading(srv: LeanServer, after: bool) -> tuple[float, float, int]:
    """(process CPU s, the monitor's own CPU s, predictions served) now. The stats call
    (which flushes the monitor and reads the store) is made outside the measured interval:
    before reading the CPU at its start, after it at its end."""

    def stats() -> dict[str, Any]:
        return dict(httpx.get(f"{srv.url}/v1/models/email/stats", timeout=30).json())

    s = None if after else stats()
    cpu = psutil.Process(srv.pid).cpu_times()
    s = stats() if s is None else s
    own = s["local"]["overhead"]["monitor_cpu_s"]
    return cpu.user + cpu.system, own, s["serving"]["predictions"]


def _split(srv: LeanServer) -> tuple[float, float, float, int]:
    """(process CPU s, its main thread's, the shadow check's, predictions served) now: the
    event loop runs on the main thread; the check's re-scoring runs there too and counts as
    the check's."""
    stats = httpx.get(f"{srv.url}/v1/models/email/stats", timeout=30).json()
    shadow = stats.get("shadow") or {}
    proc = psutil.Process(srv.pid)
    cpu = proc.cpu_times()
    main = next((t.user_time + t.system_time for t in proc.threads() if t.id == srv.pid), 0.0)
    on_loop = shadow.get("loop_cpu_s") or 0.0
    own = (shadow.get("thread_cpu_s") or 0.0) + on_loop
    return cpu.user + cpu.system, main - on_loop, own, stats["serving"]["predictions"]


def _per_prediction(
    a: tuple[float, float, float, int], b: tuple[float, float, float, int]
) -> dict[str, float] | None:
    """Microseconds per prediction between two :func:`_split` readings: the loop's thread (its
    re-scoring for the check left out), the check's own CPU, the rest of the process."""
    n = b[3] - a[3]
    if n <= 0:
        return None
    proc, loop, shadow = ((b[i] - a[i]) * 1e6 / n for i in range(3))
    return {"loop": loop, "shadow": shadow, "rest": proc - loop - shadow}


@dataclasses.dataclass
class _Crossover:
    """What both crossover modes share: settings, models, texts, the clock and the load."""

    args: argparse.Namespace
    reps: int
    duration: float
    blocks: int
    work: Path
    models: Path
    model_info: dict[str, Any]
    texts: Path
    load_before: float
    t0: float

    @classmethod
    def start(cls, args: argparse.Namespace) -> _Crossover:
        reps = args.reps or (8 if args.quick else 16)
        work = CACHE / "serving"
        work.mkdir(parents=True, exist_ok=True)
        models, _, model_info = prepare_models(work)
        os.environ["LEANML_ADMIN_TOKEN"] = ADMIN["Authorization"].split()[1]
        return cls(
            args,
            reps,
            args.duration or (3.0 if args.quick else 5.0),
            max(1, min(args.blocks, reps // 2)),
            work,
            models,
            model_info,
            texts_file(work),
            os.getloadavg()[0],
            time.monotonic(),
        )

    @contextlib.contextmanager
    def servers(self, block: int) -> Iterator[dict[str, LeanServer]]:
        """Two fresh servers at the defaults (started in alternating order), each loaded once."""
        names = ["a", "b"] if block % 2 == 0 else ["b", "a"]
        with contextlib.ExitStack() as stack:
            servers = {
                k: stack.enter_context(
                    leanml_server(self.work, self.models, f"cross-{k}-{block}", ["--no-cache"])
                )
                for k in names
            }
            for k in servers:  # a first load, not counted
                safe(f"{k} warm-up", servers[k].run, self.texts, duration=2.0, concurrency=16)
            yield servers

    def load(self, servers: dict[str, LeanServer], on: str, tag: str) -> dict[str, dict[str, Any]]:
        """One measured run of both servers at once (``on`` runs what is measured)."""
        with ThreadPoolExecutor(2) as pool:
            futures = {
                k: pool.submit(
                    measured_run,
                    servers[k],
                    f"{k} ({'on' if k == on else 'off'}) #{tag}",
                    self.texts,
                    self.duration,
                    self.args.concurrency,
                )
                for k in servers
            }
            return {k: f.result() for k, f in futures.items()}

    def report(self, out: dict[str, Any]) -> int:
        return report(
            out,
            self.args,
            self.reps,
            self.blocks,
            self.duration,
            self.model_info,
            self.load_before,
            self.t0,
        )


def _swap_summary(ratios: list[list[float]]) -> dict[str, Any]:
    """The cost over swaps of per-block repetition ratios ``on / off - 1``: a process's offset
    enters one repetition as 1 + o and the next as 1 / (1 + o), so the geometric mean of
    consecutive repetitions (a swap) cancels it."""
    swaps = [
        [math.sqrt((1 + b[i]) * (1 + b[i + 1])) - 1 for i in range(0, len(b) - 1, 2)]
        for b in ratios
    ]
    flat = [x for b in swaps for x in b]
    cost = statistics.median(flat) if flat else None
    return {
        "cost_cpu": None if cost is None else round(cost, 4),
        "swap_costs": [round(x, 4) for x in flat],
        "swap_costs_spread": quartiles(flat) if flat else None,
        "swap_costs_median_ci95": bootstrap_median([[x] for x in flat]),
        "median_ci95_by_blocks": bootstrap_median(swaps),
        "repetition_ratios": [[round(x, 4) for x in b] for b in ratios],
    }


def _medians(values: dict[str, list[float]], digits: int) -> dict[str, float | None]:
    return {k: round(statistics.median(v), digits) if v else None for k, v in values.items()}


def crossover(args: argparse.Namespace) -> int:
    """``--crossover``: see :func:`main`'s ``--crossover`` and the docstring."""
    if args.what == "monitoring":
        return crossover_monitoring(args)
    c = _Crossover.start(args)
    texts = c.texts
    ratios: list[list[float]] = []  # per block: cpu_on / cpu_off - 1 of each repetition
    thread: list[float] = []  # the running check's thread CPU over its process CPU
    paused_thread: list[float] = []  # the same, in the paused process (it still reads the store)
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    split: list[list[dict[str, float]]] = []  # per block: the threads' ratios, each repetition
    for block in range(c.blocks):
        split.append([])
        ratios.append([])
        with c.servers(block) as servers:
            for rep in range(c.reps // c.blocks):
                on, off = ("a", "b") if rep % 2 == 0 else ("b", "a")
                set_shadow(servers[off], False, texts)
                set_shadow(servers[on], True, texts)
                before = {k: _split(servers[k]) for k in servers}
                got = c.load(servers, on, f"{block}.{rep}")
                after = {k: _split(servers[k]) for k in servers}
                p_on = _per_prediction(before[on], after[on])
                p_off = _per_prediction(before[off], after[off])
                if p_on and p_off:
                    split[-1].append({p: p_on[p] / p_off[p] - 1 for p in ("loop", "rest")})
                    split[-1][-1]["shadow_us"] = p_on["shadow"]
                c_on = got[on].get("server_cpu_us_per_request")
                c_off = got[off].get("server_cpu_us_per_request")
                if c_on and c_off:
                    ratios[-1].append(c_on / c_off - 1)
                    cpu["on"].append(c_on)
                    cpu["off"].append(c_off)
                for k, share in ((on, thread), (off, paused_thread)):
                    d_cpu = after[k][0] - before[k][0]
                    if d_cpu > 0:
                        share.append((after[k][2] - before[k][2]) / d_cpu)
    summary = _swap_summary(ratios)
    by_thread: dict[str, Any] = {}
    for part in ("loop", "rest"):
        sw = [
            math.sqrt((1 + b[i][part]) * (1 + b[i + 1][part])) - 1
            for b in split
            for i in range(0, len(b) - 1, 2)
        ]
        by_thread[f"{part}_cost"] = round(statistics.median(sw), 4) if sw else None
    shadow_us = [r["shadow_us"] for b in split for r in b]
    by_thread["shadow_thread_us_per_prediction"] = (
        round(statistics.median(shadow_us), 3) if shadow_us else None
    )
    cost = summary["cost_cpu"]
    out: dict[str, Any] = {
        "metric": "server process CPU per request, shadow check running vs paused in the same "
        "processes (crossover: the roles swap every repetition; median over swaps)",
        "what": "shadow",
        "crossover": True,
        **summary,
        "by_thread": {
            **by_thread,
            "what": "CPU per prediction served, running vs paused, swaps as above: the event "
            "loop's thread (the request path, its re-scoring for the check left out), every "
            "other thread but the shadow check's (the monitor's flusher, the store), and the "
            "check's own CPU per prediction (its thread, its re-scoring on the loop)",
        },
        "server_cpu_us_per_request": _medians(cpu, 1),
        "self_measured": {
            "thread_cpu_share": quartiles(thread) if thread else None,
            "paused_thread_cpu_share": quartiles(paused_thread) if paused_thread else None,
            "what": "the shadow check's own CPU (its thread, its re-scoring on the loop) over "
            "its server's process CPU, same run: running, and paused (it still reads the "
            "decision row every tick)",
        },
        "pass": {"shadow_cpu_le_1pct": None if cost is None else cost <= 0.01},
    }
    return c.report(out)


def crossover_monitoring(args: argparse.Namespace) -> int:
    """``--what monitoring --crossover``: both servers at the defaults; in each repetition one
    records its predictions and the other has its monitoring paused (``PUT
    /v1/models/email/monitoring``), both loaded at once; the roles swap at the next repetition.
    A repetition's CPU per prediction is the server's process CPU from before its load to
    :data:`SETTLE_S` after it, over the predictions it served."""
    c = _Crossover.start(args)
    ratios: list[list[float]] = []  # per block: cpu_on / cpu_off - 1 of each repetition
    own: list[float] = []  # the recording server's monitor CPU over its process CPU
    own_us: list[float] = []  # the same per prediction
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    p99: dict[str, list[float]] = {"on": [], "off": []}  # each run's p99 latency (ms)
    for block in range(c.blocks):
        ratios.append([])
        with c.servers(block) as servers:
            for rep in range(c.reps // c.blocks):
                on, off = ("a", "b") if rep % 2 == 0 else ("b", "a")
                set_monitoring(servers[off], False)
                set_monitoring(servers[on], True)
                before = {k: _monitor_reading(servers[k], False) for k in servers}
                got = c.load(servers, on, f"{block}.{rep}")
                for k, r in got.items():
                    lat = r.get("latency_ms") or {}
                    if lat.get("p99") is not None:
                        p99["on" if k == on else "off"].append(lat["p99"])
                time.sleep(SETTLE_S)
                after = {k: _monitor_reading(servers[k], True) for k in servers}
                served = {k: after[k][2] - before[k][2] for k in servers}
                if served[on] > 0 and served[off] > 0:
                    c_on, c_off = (
                        (after[k][0] - before[k][0]) * 1e6 / served[k] for k in (on, off)
                    )
                    ratios[-1].append(c_on / c_off - 1)
                    cpu["on"].append(c_on)
                    cpu["off"].append(c_off)
                d_cpu = after[on][0] - before[on][0]
                n_on = after[on][2] - before[on][2]
                if d_cpu > 0 and n_on > 0:
                    own.append((after[on][1] - before[on][1]) / d_cpu)
                    own_us.append((after[on][1] - before[on][1]) * 1e6 / n_on)
    summary = _swap_summary(ratios)
    cost = summary["cost_cpu"]
    out: dict[str, Any] = {
        "metric": "server process CPU per prediction, monitoring recording vs paused in the "
        "same processes (crossover: the roles swap every repetition; median over swaps)",
        "what": "monitoring",
        "crossover": True,
        **summary,
        "server_cpu_us_per_prediction": _medians(cpu, 1),
        "p99_ms_median": _medians(p99, 3),
        "self_measured": {
            "monitor_cpu_share": quartiles(own) if own else None,
            "monitor_us_per_prediction": quartiles(own_us) if own_us else None,
            "what": "the recording server's monitor CPU (flusher thread and the timed caller "
            "share, stats()['overhead']) over its process CPU, and per prediction, same run",
        },
        "pass": {"monitoring_cpu_le_3pct": None if cost is None else cost <= 0.03},
    }
    return c.report(out)


def report(
    out: dict[str, Any],
    args: argparse.Namespace,
    reps: int,
    blocks: int,
    duration: float,
    model_info: dict[str, Any],
    load_before: float,
    t0: float,
) -> int:
    """Add the run's settings and the machine's load to ``out``; print it (and write it)."""
    out.update(
        {
            "reps": reps,
            "blocks": blocks,
            "together": args.together or args.crossover,
            "duration_s_per_run": duration,
            "concurrency": args.concurrency,
            "model": model_info,
            "loadavg_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "wall_s": round(time.monotonic() - t0, 1),
        }
    )
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="10 pairs of 3 s runs (--crossover: 8 repetitions)"
    )
    ap.add_argument("--reps", type=int, default=None, help="pairs (default 10 quick, 20)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--together",
        action="store_true",
        help="load both servers at once in each repetition (each with its own client) "
        "instead of one after the other",
    )
    ap.add_argument(
        "--what",
        choices=["monitoring", "shadow", "aa"],
        default="monitoring",
        help="what is on in one server and off in the other (shadow: the shadow check; aa: "
        "nothing, both servers at the defaults: the measurement's own offset)",
    )
    ap.add_argument(
        "--blocks",
        type=int,
        default=2,
        help="blocks of repetitions, each with freshly started servers (start order alternates)",
    )
    ap.add_argument(
        "--crossover",
        action="store_true",
        help="--what monitoring or shadow: two servers at the defaults, what is measured paused "
        "in one and running in the other (PUT /v1/models/email/monitoring or .../shadow), the "
        "roles swapped every repetition: each process is measured on and off, so its own "
        "offset cancels",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.crossover:
        if args.what not in ("shadow", "monitoring"):
            ap.error("--crossover pauses what it measures: --what monitoring or shadow")
        return crossover(args)
    reps = args.reps or (10 if args.quick else 20)
    duration = args.duration or (3.0 if args.quick else 5.0)
    work = CACHE / "serving"
    work.mkdir(parents=True, exist_ok=True)
    models, _, model_info = prepare_models(work)
    texts = texts_file(work)
    base = ["--no-cache"]
    if args.what == "shadow":  # on is the default; off through a config file
        off = work / "shadow-off.toml"
        off.write_text('[serving]\nshadow = "off"\n')
        configs = {"on": base, "off": [*base, "--config", str(off)]}
    elif args.what == "aa":  # two identical servers: what the method reads when nothing differs
        configs = {"on": base, "off": base}
    else:
        configs = {"on": base, "off": [*base, "--no-monitoring"]}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
    self_runs: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    # blocks, each with servers of its own, every other one started in the opposite order: what
    # comes of being the first or second process (ports, caches, memory placement) averages out
    n_blocks = max(1, min(args.blocks, reps))
    blocks = [list(configs)[:: 1 if b % 2 == 0 else -1] for b in range(n_blocks)]
    rep = 0
    pair_block: list[int] = []  # the block of each pair
    for block, start_order in enumerate(blocks):
        with contextlib.ExitStack() as stack:
            servers = {
                k: stack.enter_context(leanml_server(work, models, f"cpu-{k}-{block}", configs[k]))
                for k in start_order
            }

            def one(k: str, rep: int, servers: dict[str, LeanServer] = servers) -> dict[str, Any]:
                return measured_run(servers[k], f"{k} #{rep}", texts, duration, args.concurrency)

            # a first load, not counted: what loads lazily (the shadow's original) loads now
            for k in configs:
                one(k, -1)
            for _ in range(reps // len(blocks) + (block < reps % len(blocks))):
                before = own_figures(servers["on"], args.what)
                if args.together:  # both loads at once: the machine's other load hits both
                    with ThreadPoolExecutor(2) as pool:
                        futures = {k: pool.submit(one, k, rep) for k in configs}
                        for k, f in futures.items():
                            runs[k].append(f.result())
                else:
                    order = list(configs) if rep % 2 == 0 else list(configs)[::-1]
                    for k in order:
                        runs[k].append(one(k, rep))
                after = own_figures(servers["on"], args.what)
                cpu, mon, n = (a - b for a, b in zip(after, before, strict=True))
                if cpu > 0 and n > 0:
                    self_runs.append({"share": mon / cpu, "us_per_prediction": mon / n * 1e6})
                pair_block.append(block)
                rep += 1
    cpu = {k: [r.get("server_cpu_us_per_request") for r in v] for k, v in runs.items()}
    pairs = [
        (b, a / o - 1) for b, a, o in zip(pair_block, cpu["on"], cpu["off"], strict=True) if a and o
    ]
    ratios = [r for _, r in pairs]
    by_block = [[r for b, r in pairs if b == k] for k in range(n_blocks)]
    cost = statistics.median(ratios) if ratios else None
    med = {
        k: round(statistics.median([x for x in v if x]), 1) if any(v) else None
        for k, v in cpu.items()
    }
    shares = [r["share"] for r in self_runs]
    out: dict[str, Any] = {
        "metric": f"server process CPU per request, {args.what} on vs off (paired, median)",
        "what": args.what,
        "cost_cpu": None if cost is None else round(cost, 4),
        "pair_costs_spread": quartiles(ratios) if ratios else None,
        "pair_costs_median_ci95": bootstrap_median([[r] for r in ratios]),
        "pair_costs": [round(x, 4) for x in ratios],
        "block_medians": [round(statistics.median(v), 4) if v else None for v in by_block],
        "median_ci95_by_blocks": bootstrap_median(by_block),
        "cost_of_medians": (
            round(med["on"] / med["off"] - 1, 4) if med["on"] and med["off"] else None
        ),
        "server_cpu_us_per_request": med,
        "self_measured": {
            "own_cpu_share": quartiles(shares) if shares else None,
            "own_cpu_us_per_prediction": (
                quartiles([r["us_per_prediction"] for r in self_runs]) if self_runs else None
            ),
            "what": "the monitor's own CPU (flusher thread + sampled caller record_batch) or "
            "the shadow check's (thread + re-scoring on the loop), over the server's process "
            "CPU, same interval, per run",
        },
        "reps_cpu_us_per_request": cpu,
        "rps_median": {
            k: statistics.median([r["rps"] for r in v if r.get("rps")]) if v else None
            for k, v in runs.items()
        },
        "mean_batch_size": {
            k: round(statistics.median([r["mean_batch_size"] for r in v]), 2)
            for k, v in runs.items()
            if all(r.get("mean_batch_size") for r in v)
        },
        "variant": {k: v[0].get("variant") if v else None for k, v in runs.items()},
        "pass": {}
        if args.what == "aa"
        else {
            "monitoring_cpu_le_3pct" if args.what == "monitoring" else "shadow_cpu_le_1pct": (
                None if cost is None else cost <= (0.03 if args.what == "monitoring" else 0.01)
            )
        },
    }
    return report(out, args, reps, n_blocks, duration, model_info, load_before, t0)


if __name__ == "__main__":
    sys.exit(main())
