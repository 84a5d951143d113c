"""Capacity of one shared monitor store: detail rows/s committed by several writer processes.

Usage (the machine is shared: serialize benchmark runs with the lock)::

    flock /tmp/bench.lock python benchmarks/store_capacity.py --seconds 20 --json out.json
    # --store URL (default: LEANML_TEST_POSTGRES_URL; a database is created and dropped on it)
    # --writers 1,2,4 --backends postgresql,sqlite --texts intent|email|synthetic
    # --sampling-rate, --detail-buffer-size, --store-interval-s, --store-inputs: [monitor]

Each writer is a process with one real :class:`~leanml.monitor.ModelMonitor` at its defaults
(20% detail sampling, texts given, ``store_inputs="redacted"``, its background flusher writing
the store every ``store_interval_s``), fed as a ``leanml serve`` worker feeds it: ids from a
:class:`~leanml.groundtruth.GroundTruth`, one ``record_batch`` per micro-batch of ``--batch``
texts, as fast as the process can (no model: the model's cost is not the store's). After
``--seconds`` each writer closes its monitor (the final flush writes what it still holds).

Per configuration it prints:

* ``committed_rows``: rows counted in the ``predictions`` table at the end, and
  ``committed_rows_per_s`` over the run (from the start signal to the last writer's close);
  ``written_rows``: what the monitors report written (sampled minus dropped detail rows), which
  must equal ``committed_rows``;
* ``offered_per_s`` (predictions handed to ``record_batch``), ``recorded_per_s`` (taken in by the
  monitors), and the monitors' drop counters (``batch_buffer``: predictions the flusher could not
  keep up with; ``detail_buffer``: sampled rows beyond ``detail_buffer_size`` per store write);
* ``store_write``: every ``MonitorStore.write`` timed in the writers (one transaction: the
  window rows plus the detail rows by COPY on PostgreSQL): count, rows per write, p50/p95/max
  seconds and the share of the run the writers spent in it;
* ``cpu``: the writers' CPU (cores), the PostgreSQL backends serving this database and the
  server's auxiliary processes (WAL writer, checkpointer, ...; those also serve other databases
  on a shared server), read with psutil; ``pg_rows_per_backend_cpu_s`` = committed rows per
  second of backend CPU, the figure to extrapolate from (an assumption: PostgreSQL's cost per
  row stays the same when it has a core to itself).

Then (PostgreSQL, ``--feedback-writers`` processes, 0: skipped) labels as ``leanml serve``
acknowledges them: ``--feedback-threads`` concurrent requests per process, one label each,
written through the process's :class:`~leanml.groundtruth.FeedbackLog` and waited for:
``committed_labels_per_s`` and ``pg_labels_per_backend_cpu_s``.

SQLite is single-host (one file, one writer at a time): its rows are the comparison with the
embedded default, not a cluster store. Nothing here is asserted in tests; the machinery is
(tests/benchmarks/test_store_capacity.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import sqlalchemy as sa

from leanml.groundtruth import GroundTruth
from leanml.monitor import ModelMonitor, MonitorConfig, MonitorStore

DATA = Path(
    os.environ.get("LEANML_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
LABELS = ["ham", "spam", "hard_ham"]


def load_texts(kind: str, n: int = 5_000) -> list[str]:
    """Texts the writers send: CLINC150 utterances, SpamAssassin mails (subject + body, as the
    demo model reads them) or synthetic sentences with an address and a number to redact."""
    if kind == "intent":
        rows = json.loads((DATA / "clinc150" / "data_full.json").read_text())["train"]
        return [r[0] for r in rows[:n]]
    if kind == "email":
        out = []
        with gzip.open(DATA / "spamassassin" / "emails.jsonl.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                out.append(f"{row['subject']}\n\n{row['body']}")
                if len(out) >= n:
                    break
        return out
    if kind == "synthetic":
        return [
            f"order {i} for user{i}@example.com shipped, call 555 0100 {i:05d}" for i in range(n)
        ]
    raise ValueError(f"unknown --texts {kind!r}")


def _timed_writes(store: MonitorStore, log: list[tuple[float, int]]) -> None:
    """Time every ``store.write`` the flusher makes (seconds, detail rows)."""
    write = store.write

    def timed(**rows: Any) -> None:
        t0 = time.perf_counter()
        write(**rows)
        log.append((time.perf_counter() - t0, len(rows.get("predictions", ()))))

    store.write = timed  # type: ignore[method-assign,assignment]


def _writer(
    url: str,
    seconds: float,
    batch: int,
    texts: list[str],
    overrides: dict[str, Any],
    ready: Any,
    go: Any,
    done: Any,
    results: Any,
) -> None:
    """One writer process: a monitor at its defaults (plus ``overrides``) on the shared store."""
    config = replace(MonitorConfig(), **overrides)
    store = MonitorStore(url, create=False)
    writes: list[tuple[float, int]] = []
    _timed_writes(store, writes)
    mon = ModelMonitor("capacity", version="1", config=config, store=store, sinks=[])
    gt = GroundTruth()
    rng = np.random.default_rng(os.getpid())
    chunks = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
    tops = [rng.integers(0, len(LABELS), batch) for _ in range(16)]
    confs = [rng.uniform(0.4, 1.0, batch) for _ in range(16)]
    labels = [[LABELS[j] for j in t.tolist()] for t in tops]
    record, issue = mon.record_batch, gt.issue
    proc = psutil.Process()
    ready.set()
    go.wait()
    cpu0, t0 = proc.cpu_times(), time.time()
    end, offered, i = time.perf_counter() + seconds, 0, 0
    while time.perf_counter() < end:
        k = i & 15
        ids = issue(batch, 0, tops[k], confs[k])
        record(ids, labels[k], confs[k].tolist(), 0.002, chunks[i % len(chunks)])
        offered += batch
        i += 1
    t_offer = time.time()
    mon.close()  # the final flush: what the monitor still holds is written now
    t_closed, cpu1 = time.time(), proc.cpu_times()
    drops = dict(mon.drops)
    results.put(
        {
            "pid": os.getpid(),
            "t0": t0,
            "t_offer_end": t_offer,
            "t_closed": t_closed,
            "offered": offered,
            "recorded": int(mon.total),
            "sampled": int(mon.sampled),
            "drops": drops,
            "written": int(mon.sampled) - drops["detail_buffer"] - drops["store_rows"],
            "written_by_writes": sum(n for _, n in writes),
            "store_writes": writes,
            "store_errors": int(mon.counters["store_errors"]),
            "flusher_cpu_s": mon.state.flusher_cpu_ns / 1e9,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        }
    )
    done.wait()  # keep the store's connection (its PostgreSQL backend) until the CPU is read
    store.close()


def _feedback_writer(
    url: str, seconds: float, threads: int, ready: Any, go: Any, done: Any, results: Any
) -> None:
    """One process acknowledging labels as ``leanml serve`` does: ``threads`` concurrent
    requests, each one label written through the process's :class:`FeedbackLog` (group commit,
    one INSERT per row) and waited for."""
    from leanml.groundtruth import FeedbackLog

    store = MonitorStore(url, create=False)
    log = FeedbackLog(store.engine, store.process_id, table_prefix=store.prefix)
    counts = [0] * threads
    proc = psutil.Process()

    def client(k: int, end: float) -> None:
        i = 0
        while time.perf_counter() < end:
            row = {
                "prediction_id": f"{os.getpid()}-{k}-{i}",
                "model": "capacity",
                "label": LABELS[i % 3],
                "owner": "bench",
                "status": "joined",
                "variant": "compact",
                "version": "1",
                "predicted": LABELS[(i + 1) % 3],
                "predicted_index": (i + 1) % 3,
                "confidence": 0.9,
                "pred_ts": time.time(),
            }
            log.write_sync([row])
            i += 1
        counts[k] = i

    ready.set()
    go.wait()
    cpu0, t0 = proc.cpu_times(), time.time()
    end = time.perf_counter() + seconds
    ts = [threading.Thread(target=client, args=(k, end)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_closed, cpu1 = time.time(), proc.cpu_times()
    results.put(
        {
            "t0": t0,
            "t_closed": t_closed,
            "acknowledged": sum(counts),
            "transactions": log.counters["transactions"],
            "errors": log.counters["errors"],
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        }
    )
    done.wait()
    log.close()
    store.close()


def run_feedback(url: str, writers: int, seconds: float, threads: int = 8) -> dict[str, Any]:
    """``writers`` processes acknowledging labels into the store at ``url`` (PostgreSQL)."""
    store = MonitorStore(url)
    before = store.count_rows("feedback")
    got, wall, pg_cpu = _run_processes(
        store, writers, seconds, _feedback_writer, (url, seconds, threads)
    )
    committed = store.count_rows("feedback") - before
    store.close()
    out: dict[str, Any] = {
        "backend": store.dialect,
        "what": "feedback",
        "writers": writers,
        "threads_per_writer": threads,
        "seconds": seconds,
        "wall_s": round(wall, 2),
        "committed_labels": committed,
        "acknowledged": sum(g["acknowledged"] for g in got),
        "committed_labels_per_s": round(committed / wall, 1),
        "labels_per_transaction": round(committed / max(1, sum(g["transactions"] for g in got)), 2),
        "errors": sum(g["errors"] for g in got),
        "cpu": {"writers_cores": round(sum(g["cpu_s"] for g in got) / wall, 2)},
    }
    if pg_cpu is not None:
        out["cpu"]["pg_backends_cores"] = round(pg_cpu["backends"] / wall, 3)
        out["cpu"]["pg_aux_cores"] = round(pg_cpu["aux"] / wall, 3)
        out["pg_labels_per_backend_cpu_s"] = (
            round(committed / pg_cpu["backends"]) if pg_cpu["backends"] > 0 else None
        )
    return out


# -- PostgreSQL ------------------------------------------------------------------------------
@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url``; yields its URL, drops it after."""
    db = f"leanml_capacity_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{db}"'))
    try:
        yield sa.make_url(admin_url).set(database=db).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


class PgCpu:
    """CPU seconds of the PostgreSQL processes serving ``db`` (backends) and of the server's
    auxiliary processes, between :meth:`start` and :meth:`stop` (read with psutil; a process
    that started in between counts whole, one that ended in between is missed)."""

    def __init__(self, engine: sa.engine.Engine, db: str) -> None:
        self.engine, self.db = engine, db
        self.before: dict[int, float] = {}

    def _pids(self) -> dict[str, list[int]]:
        with self.engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT pid, datname FROM pg_stat_activity "
                    "WHERE (datname = :d OR datname IS NULL) AND pid <> pg_backend_pid()"
                ),
                {"d": self.db},
            ).all()
        out: dict[str, list[int]] = {"backends": [], "aux": []}
        for pid, datname in rows:
            out["backends" if datname == self.db else "aux"].append(int(pid))
        return out

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return t.user + t.system

    def start(self) -> None:
        for pids in self._pids().values():
            for pid in pids:
                cpu = self._cpu(pid)
                if cpu is not None:
                    self.before[pid] = cpu

    def stop(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, pids in self._pids().items():
            total = 0.0
            for pid in pids:
                cpu = self._cpu(pid)
                if cpu is not None:
                    total += cpu - self.before.get(pid, 0.0)
            out[kind] = total
        return out


# -- one configuration -----------------------------------------------------------------------
def run_config(
    url: str,
    writers: int,
    seconds: float,
    *,
    batch: int = 12,
    texts: list[str],
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``writers`` processes against the store at ``url`` (its tables created here, empty)."""
    store = MonitorStore(url)  # create the tables once, before the writers race to
    backend = store.dialect
    before = store.count_rows("predictions")
    got, wall, pg_cpu, sys_cpu0, sys_cpu1 = _run_processes(
        store, writers, seconds, _writer, (url, seconds, batch, texts, overrides or {}), True
    )
    committed = store.count_rows("predictions") - before
    store.close()
    return _summary(
        backend, writers, seconds, batch, got, committed, wall, pg_cpu, sys_cpu0, sys_cpu1
    )


def _run_processes(
    store: MonitorStore,
    n: int,
    seconds: float,
    target: Any,
    args: tuple[Any, ...],
    machine: bool = False,
) -> Any:
    """Start ``n`` processes of ``target(*args, ready, go, done, results)``, let them go at
    once, collect their results; the PostgreSQL CPU is read before they let their connections
    go. (results, wall seconds from go to the last close, PostgreSQL CPU[, machine CPU times])."""
    ctx = mp.get_context("spawn")
    ready = [ctx.Event() for _ in range(n)]
    go, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*args, r, go, done, results), daemon=True) for r in ready
    ]
    for p in procs:
        p.start()
    pg = None
    try:
        for r in ready:
            if not r.wait(120):
                raise RuntimeError("a writer did not start within 120 s")
        if store.dialect == "postgresql":
            pg = PgCpu(store.engine, str(store.engine.url.database))
            pg.start()
        sys_cpu0, t0 = psutil.cpu_times(), time.time()
        go.set()
        got = [results.get(timeout=seconds + 600) for _ in procs]
        wall = max(g["t_closed"] for g in got) - t0
        pg_cpu = pg.stop() if pg is not None else None
        sys_cpu1 = psutil.cpu_times()
    finally:
        done.set()
        for p in procs:
            p.join(60)
    if machine:
        return got, wall, pg_cpu, sys_cpu0, sys_cpu1
    return got, wall, pg_cpu


def _summary(
    backend: str,
    writers: int,
    seconds: float,
    batch: int,
    got: list[dict[str, Any]],
    committed: int,
    wall: float,
    pg_cpu: dict[str, float] | None,
    sys0: Any,
    sys1: Any,
) -> dict[str, Any]:
    writes = [w for g in got for w in g["store_writes"]]
    durations = sorted(d for d, _ in writes)
    drops: dict[str, int] = {}
    for g in got:
        for k, v in g["drops"].items():
            drops[k] = drops.get(k, 0) + v
    busy = (sum(sys1) - sys1.idle - sys1.iowait) - (sum(sys0) - sys0.idle - sys0.iowait)
    out: dict[str, Any] = {
        "backend": backend,
        "writers": writers,
        "seconds": seconds,
        "batch": batch,
        "wall_s": round(wall, 2),
        "committed_rows": committed,
        "written_rows": sum(g["written"] for g in got),
        "committed_rows_per_s": round(committed / wall, 1),
        "offered_per_s": round(sum(g["offered"] for g in got) / seconds, 1),
        "recorded_per_s": round(sum(g["recorded"] for g in got) / wall, 1),
        "sampled": sum(g["sampled"] for g in got),
        "drops": {k: v for k, v in drops.items() if v},
        "store_errors": sum(g["store_errors"] for g in got),
        "store_write": {
            "count": len(writes),
            "rows_per_write": round(statistics.mean(n for _, n in writes), 1) if writes else 0,
            "p50_s": _rank(durations, 0.5),
            "p95_s": _rank(durations, 0.95),
            "max_s": round(durations[-1], 4) if writes else None,
            "busy_share": round(sum(durations) / (wall * writers), 4),
        },
        "cpu": {
            "machine_cores": psutil.cpu_count(),
            "machine_busy_cores": round(busy / wall, 2),
            "writers_cores": round(sum(g["cpu_s"] for g in got) / wall, 2),
            "flushers_cores": round(sum(g["flusher_cpu_s"] for g in got) / wall, 2),
        },
    }
    if pg_cpu is not None:
        out["cpu"]["pg_backends_cores"] = round(pg_cpu["backends"] / wall, 3)
        out["cpu"]["pg_aux_cores"] = round(pg_cpu["aux"] / wall, 3)
        out["pg_rows_per_backend_cpu_s"] = (
            round(committed / pg_cpu["backends"]) if pg_cpu["backends"] > 0 else None
        )
        total = pg_cpu["backends"] + pg_cpu["aux"]
        out["pg_rows_per_server_cpu_s"] = round(committed / total) if total > 0 else None
    return out


def _rank(sorted_xs: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of sorted values (None: no values)."""
    if not sorted_xs:
        return None
    return round(sorted_xs[max(0, math.ceil(q * len(sorted_xs)) - 1)], 4)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="load per configuration")
    ap.add_argument("--writers", default="1,2,4", help="writer processes, comma-separated")
    ap.add_argument("--backends", default="postgresql,sqlite")
    ap.add_argument("--store", default=os.environ.get("LEANML_TEST_POSTGRES_URL", ""))
    ap.add_argument("--batch", type=int, default=12, help="texts per record_batch")
    ap.add_argument("--texts", default="intent", choices=("intent", "email", "synthetic"))
    ap.add_argument("--sampling-rate", type=float, default=None)
    ap.add_argument("--detail-buffer-size", type=int, default=None)
    ap.add_argument("--store-interval-s", type=float, default=None)
    ap.add_argument("--store-inputs", default=None)
    ap.add_argument("--feedback-writers", type=int, default=4, help="0: no feedback run")
    ap.add_argument("--feedback-threads", type=int, default=8, help="concurrent requests each")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in (
            ("sampling_rate", args.sampling_rate),
            ("detail_buffer_size", args.detail_buffer_size),
            ("store_interval_s", args.store_interval_s),
            ("store_inputs", args.store_inputs),
        )
        if v is not None
    }
    texts = load_texts(args.texts)
    counts = [int(x) for x in args.writers.split(",")]
    out: dict[str, Any] = {
        "machine": _machine(),
        "texts": args.texts,
        "mean_text_chars": round(statistics.mean(len(t) for t in texts)),
        "config": {
            **{
                k: getattr(MonitorConfig(), k)
                for k in (
                    "sampling_rate",
                    "store_inputs",
                    "store_interval_s",
                    "detail_buffer_size",
                    "flush_interval_s",
                    "flush_batch_size",
                    "batch_buffer_size",
                )
            },
            **overrides,
        },
        "runs": [],
    }
    for backend in args.backends.split(","):
        for n in counts:
            if backend == "postgresql":
                if not args.store:
                    out["runs"].append({"backend": backend, "skipped": "no --store URL"})
                    continue
                with pg_database(args.store) as url:
                    res = run_config(
                        url, n, args.seconds, batch=args.batch, texts=texts, overrides=overrides
                    )
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    res = run_config(
                        f"sqlite:///{tmp}/store.db",
                        n,
                        args.seconds,
                        batch=args.batch,
                        texts=texts,
                        overrides=overrides,
                    )
            out["runs"].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    if args.feedback_writers and args.store and "postgresql" in args.backends.split(","):
        with pg_database(args.store) as url:
            res = run_feedback(url, args.feedback_writers, args.seconds, args.feedback_threads)
        out["runs"].append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
