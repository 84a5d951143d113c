"""Cost and accuracy of leanml.monitor, measured in one run on this machine.

Usage (the machine is shared: serialize benchmark runs with the lock)::

    flock /tmp/bench.lock python benchmarks/monitor_overhead.py --json out.json [--quick]

Prints (and writes) JSON. The pass flags use TOTAL costs:

* ``total_single_ns`` / ``total_batch100_ns``: monitoring CPU per prediction, caller + background
  flusher + SQLite store writes (process CPU time), prediction ids included, texts given (CLINC150
  utterances), every setting at its default (20% detail sampling); single calls and batches of
  100. One repetition is 25,000 predictions (the CLINC150 texts in turn), those between two
  store writes at the defaults under load, then a forced flush; repetitions run back to back
  with the garbage collector as in production. ``caller_*_ns`` is the caller thread's share.
  ``total_batch100_collect_each_rep_ns``: the same with a full ``gc.collect()`` before each
  repetition (the earlier protocol; cold caches after it). ``detail_row_ns``: the cost of one
  stored detail row (batches at sampling 1.0 minus sampling 0.0).
* ``prometheus_pair_ns``: prometheus_client Counter.inc + Histogram.observe per prediction, same
  run; both totals must be below it.
* ``{email,intent}_{original,compact}_overhead_pct``: ``leanml.monitored`` vs plain single-text
  predict, paired on the same texts (targets: compact <= 5%, original <= 1%).
  ``..._monitor_ns`` and ``..._self_pct``: the monitor's own CPU (flusher thread + timed caller
  share) in that same loop, per prediction and over the model's time, once its flusher has
  taken the loop's records; ``..._monitor_caller_ns`` and ``..._monitor_flusher_ns`` split
  it. ``..._prometheus_pair_ns``: the prometheus_client pair timed in that same loop, after
  the plain predict (its clock read taken off), the like-for-like baseline. Higher than
  ``total_single_ns``: with a model between two records the monitor's data is out of the CPU
  caches, the flusher hands the GIL to the model's thread and back, and the work that runs
  on a clock (an alert round every 5 s, a flusher step every second) is spread over
  the loop's few thousand predictions a second (half of them monitored) instead of a tight
  loop's hundreds of thousands.
* ``reference_ns``: 93,738, the reference system's figure from the reference document (a
  constant, not measured here).
* also ``record_ns`` (the caller's share of ``record`` alone, no store, no texts), sketch accuracy
  and RSS growth over 10 M records (2 M with ``--quick``; both skipped by ``--skip-accuracy``).
Timings are the median of several repetitions; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from leanml._native import take_at
from leanml.demo.monitoring import settled_overhead
from leanml.groundtruth import GroundTruth
from leanml.monitor import LogSketch, ModelMonitor, monitored
from leanml.monitor.sketch import ReqSketch

REFERENCE_NS = 93_738
EMAILS = (
    Path(
        os.environ.get(
            "LEANML_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets"
        )
    )
    / "spamassassin"
    / "emails.jsonl.gz"
)
QS = (0.5, 0.95, 0.99, 0.999)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def bench_record(chunk: int, reps: int) -> dict[str, float]:
    """record(): hot path per call (median of reps), and total with the flusher's work."""
    m = ModelMonitor("bench", sinks=[])  # default config, background flusher running
    gen = GroundTruth()
    rec = m.record
    hot, total = [], []
    for _ in range(reps):
        ids = gen.issue(chunk)
        gc.collect()
        t0 = time.perf_counter_ns()
        for pid in ids:
            rec(pid, "ham", 0.93, 0.00042)
        t1 = time.perf_counter_ns()
        m.flush()
        t2 = time.perf_counter_ns()
        hot.append((t1 - t0) / chunk)
        total.append((t2 - t0) / chunk)
    drops = m.stats()["drops"]["record_buffer"]
    m.close()
    return {
        "record_ns": _median(hot),
        "record_total_ns": _median(total),
        "record_min_ns": min(hot),
        "record_dropped": drops,
    }


def bench_record_batch(batches: int, reps: int) -> dict[str, float]:
    m = ModelMonitor("bench", sinks=[])
    gen = GroundTruth()
    labels = np.array(["ham", "spam", "ham", "hard_ham"] * 25)
    conf = np.random.default_rng(0).uniform(0.5, 1.0, 100)
    lat = np.random.default_rng(1).lognormal(-8, 1, 100)
    rb = m.record_batch
    hot, total = [], []
    for _ in range(reps):
        id_lists = [gen.issue(100) for _ in range(batches)]
        gc.collect()
        t0 = time.perf_counter_ns()
        for ids in id_lists:
            rb(ids, labels, conf, lat)
        t1 = time.perf_counter_ns()
        m.flush()
        t2 = time.perf_counter_ns()
        hot.append((t1 - t0) / (100 * batches))
        total.append((t2 - t0) / (100 * batches))
    m.close()
    return {"record_batch100_ns": _median(hot), "record_batch100_total_ns": _median(total)}


def bench_prometheus(chunk: int, reps: int) -> dict[str, float]:
    c, h = _prometheus_pair()
    ids = GroundTruth().issue(chunk)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _pid in ids:
            c.inc()
            h.observe(0.00042)
        out.append((time.perf_counter_ns() - t0) / chunk)
    return {"prometheus_pair_ns": _median(out)}


def _exact_errors(sk: Any, x: np.ndarray) -> tuple[float, float]:
    """Max relative error vs numpy's interpolated quantile and vs the rank-floor value."""
    xs = np.sort(x)
    e_lin = e_rank = 0.0
    for q in QS:
        got = sk.quantile(q) if hasattr(sk, "quantile") else sk.get_quantile_value(q)
        lin = float(np.quantile(x, q))
        rank = float(xs[int(np.floor(q * (x.size - 1)))])
        e_lin = max(e_lin, abs(got - lin) / lin)
        e_rank = max(e_rank, abs(got - rank) / rank)
    return e_lin, e_rank


def bench_quantiles(n: int, trials: int) -> dict[str, Any]:
    from ddsketch import DDSketch

    res: dict[str, Any] = {"quantile_values": n, "quantile_trials": trials}
    worst = {
        "single": 0.0,
        "merged": 0.0,
        "single_rank": 0.0,
        "merged_rank": 0.0,
        "req_merged": 0.0,
        "ddsketch_pkg_merged": 0.0,
    }
    ingest = []
    for trial in range(trials):
        rng = np.random.default_rng(100 + trial)
        dists = {
            "lognormal": rng.lognormal(-7, 1.0, n),
            "pareto": (rng.pareto(1.5, n) + 1) * 2e-4,
            # 70/30 so that no reported quantile falls in the empty gap between the modes,
            # where an interpolated "exact" quantile is an arbitrary point between them
            "bimodal": np.concatenate(
                [rng.normal(3e-4, 3e-5, n * 7 // 10), rng.normal(0.04, 4e-3, n - n * 7 // 10)]
            ),
        }
        for x in dists.values():
            x = np.abs(x)
            one = LogSketch()
            t0 = time.perf_counter_ns()
            for part in np.array_split(x, max(1, x.size // 1000)):
                one.add_many(part)
            ingest.append((time.perf_counter_ns() - t0) / x.size)
            a, b = _exact_errors(one, x)
            worst["single"], worst["single_rank"] = (
                max(worst["single"], a),
                max(worst["single_rank"], b),
            )
            shards = [LogSketch() for _ in range(4)]
            reqs = [ReqSketch() for _ in range(4)]
            for sk, rq, part in zip(shards, reqs, np.array_split(x, 4), strict=True):
                sk.add_many(part)
                rq.add_many(part)
            merged = LogSketch.from_bytes(shards[0].to_bytes())
            for sk in shards[1:]:
                merged.merge(LogSketch.from_bytes(sk.to_bytes()))
            a, b = _exact_errors(merged, x)
            worst["merged"], worst["merged_rank"] = (
                max(worst["merged"], a),
                max(worst["merged_rank"], b),
            )
            rq = ReqSketch.from_bytes(reqs[0].to_bytes())
            for other in reqs[1:]:
                rq.merge(ReqSketch.from_bytes(other.to_bytes()))
            worst["req_merged"] = max(worst["req_merged"], _exact_errors(rq, x)[0])
            if trial == 0:  # the ddsketch package's pure-Python add: 50k values per shard
                dd = [DDSketch(0.01) for _ in range(4)]
                for d, part in zip(dd, np.array_split(x, 4), strict=True):
                    for v in part[:50_000]:
                        d.add(float(v))
                ddm = dd[0]
                for d in dd[1:]:
                    ddm.merge(d)
                sub = np.concatenate([p[:50_000] for p in np.array_split(x, 4)])
                worst["ddsketch_pkg_merged"] = max(
                    worst["ddsketch_pkg_merged"], _exact_errors(ddm, sub)[0]
                )
    res["quantile_max_rel_err"] = worst["single"]
    res["merged_quantile_max_rel_err"] = worst["merged"]
    res["quantile_max_rel_err_vs_rank"] = worst["single_rank"]
    res["merged_quantile_max_rel_err_vs_rank"] = worst["merged_rank"]
    res["req_merged_quantile_max_rel_err"] = worst["req_merged"]
    res["ddsketch_pkg_merged_quantile_max_rel_err"] = worst["ddsketch_pkg_merged"]
    res["sketch_ingest_ns_per_value_batch1000"] = _median(ingest)
    return res


def bench_rss(total: int, chunk: int = 50_000) -> dict[str, Any]:
    proc = psutil.Process()
    gc.collect()
    start = proc.memory_info().rss  # before the monitor exists: every buffer it fills counts
    m = ModelMonitor("rss", sinks=[])
    gen = GroundTruth()
    rec = m.record
    labels = ("ham", "spam", "hard_ham")
    for pid in gen.issue(chunk):  # warm-up: code paths, first window
        rec(pid, "ham", 0.9, 0.0004)
    m.flush()
    gc.collect()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    done = chunk
    while done < total:
        ids = gen.issue(chunk)
        for i, pid in enumerate(ids):
            rec(pid, labels[i % 3], 0.9, 0.0004)
        m.flush()
        done += chunk
    gc.collect()
    after = proc.memory_info().rss
    s = m.stats()
    m.close()
    return {
        "rss_records": done,
        "rss_growth_mb_10m": (after - start) / 2**20,
        "rss_growth_mb_after_warmup": (after - before) / 2**20,
        "rss_before_mb": before / 2**20,
        "rss_seconds": time.perf_counter() - t0,
        "rss_recorded": s["counts"]["recorded"],
        "rss_dropped": s["drops"]["record_buffer"],
        "rss_pending_evicted": s["drops"]["pending_evicted_capacity"],
    }


def _load_emails(limit: int | None) -> tuple[list[str], list[str]]:
    X, y = [], []
    with gzip.open(EMAILS, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            X.append(f"{r['subject']}\n{r['body']}")
            y.append(r["label"])
    if limit is not None and len(X) > limit:
        idx = np.random.default_rng(0).choice(len(X), limit, replace=False)
        X = [X[i] for i in idx]
        y = [y[i] for i in idx]
    return X, y


def _load_intents(limit: int) -> tuple[list[str], list[str], list[str]]:
    """CLINC150 (the intent demo's data): train texts, their labels, and test texts."""
    from leanml.datasets import load_intent

    d = load_intent()
    return list(d.X_train), list(d.y_train), list(d.X_test)[:limit]


def _ids_and_record(m: ModelMonitor, gt: GroundTruth, texts: list[str], batch: int) -> int:
    """What the monitored wrapper does per call once the model has answered: ids (with the
    ring entry), then record / record_batch, texts given. Returns the predictions made."""
    rec, rb, issue = m.record, m.record_batch, gt.issue
    if batch == 1:  # the wrapper's one-text path: issue_one, then record
        issue_one = gt.issue_one
        for t in texts:
            rec(issue_one(0, 3, 0.93), "ham", 0.93, 0.00042, t)
        return len(texts)
    classes = ["ham", "hard_ham", "spam"]  # the model's classes, as the wrapper holds them
    pred = np.array([0, 2, 0, 1] * (batch // 4 + 1), dtype=np.int64)[:batch]
    conf = np.random.default_rng(0).uniform(0.5, 1.0, batch)
    n = 0
    for s in range(0, len(texts) - batch + 1, batch):
        ids = issue(batch, 0, pred, conf)
        rb(ids, take_at(classes, pred), conf, 0.00042, texts[s : s + batch])
        n += batch
    return n


def rep_size(cfg: Any) -> int:
    """Predictions per repetition of the totals: those between two store writes at the
    defaults under load (a write when the detail queue is half full: 5,000 sampled rows, i.e.
    25,000 predictions at 20%)."""
    return int(cfg.detail_buffer_size / 2 / cfg.sampling_rate)


def bench_total(
    texts: list[str],
    batch: int,
    reps: int,
    sampling_rate: float | None = None,
    collect_each_rep: bool = False,
) -> dict[str, float]:
    """TOTAL monitoring CPU per prediction: ids + record on the caller's thread, the background
    flusher (windows, sketches, drift inputs, detail rows) and the SQLite store writes, with
    texts given and every setting at its default (20% detail sampling unless told).

    Measured as process CPU time (every thread of this process) from the first record to the
    end of a synchronous flush that writes the store; the caller's share is its thread CPU.
    The repetitions run back to back, as traffic does, the garbage collector running as it
    does in production. ``collect_each_rep``: a full ``gc.collect()`` before each one (the
    earlier protocol): the repetition after it then runs on cold caches and freshly mapped
    memory, ~1 ms more CPU that no production process pays per write.
    """
    from leanml.config import MonitorConfig

    cfg = MonitorConfig() if sampling_rate is None else MonitorConfig(sampling_rate=sampling_rate)
    with tempfile.TemporaryDirectory() as tmp:
        m = ModelMonitor("bench", sinks=[], config=cfg, store=f"sqlite:///{tmp}/m.db")
        gt = GroundTruth(cfg.pending_max_entries, cfg.pending_max_age_s)
        m.ground_truth = gt
        _ids_and_record(m, gt, texts[:2000], batch)  # warm-up: code paths, tables, first window
        m.flush()
        caller, total = [], []
        gc.collect()
        for _ in range(reps):
            if collect_each_rep:
                gc.collect()
            p0, c0 = time.process_time_ns(), time.thread_time_ns()
            n = _ids_and_record(m, gt, texts, batch)
            c1 = time.thread_time_ns()
            m.flush()
            p1 = time.process_time_ns()
            caller.append((c1 - c0) / n)
            total.append((p1 - p0) / n)
        s = m.stats()
        m.close()
    sampled = s["counts"].get("sampled", 0) if isinstance(s.get("counts"), dict) else 0
    return {"caller_ns": _median(caller), "total_ns": _median(total), "sampled": sampled}


def bench_totals(texts: list[str], reps: int) -> dict[str, Any]:
    from leanml.config import MonitorConfig

    n = rep_size(MonitorConfig())
    texts = (texts * (n // len(texts) + 1))[:n]  # the test texts in turn
    out: dict[str, Any] = {"total_texts": len(texts)}
    one = bench_total(texts, 1, reps)
    out["total_single_ns"], out["caller_single_ns"] = one["total_ns"], one["caller_ns"]
    b = bench_total(texts, 100, reps)
    out["total_batch100_ns"], out["caller_batch100_ns"] = b["total_ns"], b["caller_ns"]
    old = bench_total(texts, 100, reps, collect_each_rep=True)
    out["total_batch100_collect_each_rep_ns"] = old["total_ns"]
    # the cost of one stored detail row: every prediction sampled vs none, same batches
    # (8,000 texts: under the detail queue's bound of 10,000, so no sampled row is dropped)
    full = bench_total(texts[:8000], 100, reps, sampling_rate=1.0)
    none = bench_total(texts[:8000], 100, reps, sampling_rate=0.0)
    out["total_batch100_sampling0_ns"] = none["total_ns"]
    out["total_batch100_sampling1_ns"] = full["total_ns"]
    out["detail_row_ns"] = full["total_ns"] - none["total_ns"]
    return out


def _prometheus_pair() -> tuple[Any, Any]:
    """A prometheus_client Counter and Histogram child, in a registry of their own."""
    import prometheus_client as pc

    reg = pc.CollectorRegistry()
    c = pc.Counter("preds", "p", ["model"], registry=reg).labels("bench")
    h = pc.Histogram("lat", "l", ["model"], registry=reg).labels("bench")
    return c, h


def _paired(model: Any, wrapped: Any, texts: list[list[str]], rounds: int) -> dict[str, float]:
    """Single-text predict, plain vs monitored, paired on the same text, order alternating (the
    drift of the shared machine cancels out): median paired difference over median plain.
    After each plain predict, the prometheus_client pair (``Counter.inc`` and
    ``Histogram.observe`` of its latency) is timed where a user would call it, on the caches
    the model leaves, like the monitor's figures of this loop; its clock read is timed alone
    at the same place and taken off."""
    pc = time.perf_counter_ns
    count, hist = _prometheus_pair()
    pair_ns = clock_ns = 0
    diffs: list[int] = []
    singles: list[int] = []
    for t in texts[:20]:  # warm-up both paths
        model.predict(t)
        wrapped.predict(t)
    wrapped.monitor.flush()  # the monitor's start-up (first windows, first alert round)
    before = wrapped.monitor.stats()
    for r in range(rounds):
        for i, t in enumerate(texts):
            if (i + r) % 2 == 0:
                t0 = pc()
                model.predict(t)
                t1 = pc()
                count.inc()
                hist.observe((t1 - t0) * 1e-9)
                t3 = pc()
                wrapped.predict(t)
                t2 = pc()
                a, b = t1 - t0, t2 - t3
                pair_ns += t3 - t1
                clock_ns += pc() - t2  # a clock read alone, timed back to back
            else:
                t0 = pc()
                wrapped.predict(t)
                t1 = pc()
                model.predict(t)
                t2 = pc()
                count.inc()
                hist.observe((t2 - t1) * 1e-9)
                t3 = pc()
                b, a = t1 - t0, t2 - t1
                pair_ns += t3 - t2
                clock_ns += pc() - t3  # idem
            diffs.append(b - a)
            singles.append(a)
    own = settled_overhead(wrapped.monitor, before)
    return {
        "predict_ns": _median(singles),
        "added_ns": _median(diffs),
        "overhead_pct": 100.0 * _median(diffs) / _median(singles),
        # the monitor's own CPU in this loop (flusher + timed caller share), once its flusher
        # has taken the loop's records: per prediction and over the model's time
        "monitor_ns": own["monitor_cpu_per_prediction_us"] * 1e3,
        "monitor_caller_ns": own["caller_cpu_per_prediction_us"] * 1e3,
        "monitor_flusher_ns": own["flusher_cpu_per_prediction_us"] * 1e3,
        "self_pct": own["self_measured_overhead_pct"],
        "prometheus_pair_ns": (pair_ns - clock_ns) / len(diffs),
    }


def _fit(X: list[str], y: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=1000),
    ).fit(X, y)


def bench_end_to_end(limit: int | None, rounds: int, per_round: int) -> dict[str, Any]:
    """Overhead of ``leanml.monitored`` on single-text predict, original and compact models of
    the email and intent tasks (texts recorded, default config, flusher running)."""
    from sklearn.model_selection import train_test_split

    from leanml.compress import to_compact

    X, y = _load_emails(limit)
    Xtr, Xte, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    itr, iy, ite = _load_intents(per_round)
    tasks = {"email": (_fit(Xtr, ytr), Xte[:per_round]), "intent": (_fit(itr, iy), ite)}
    out: dict[str, Any] = {}
    for task, (model, test) in tasks.items():
        compact = to_compact(model)[0]
        for kind, mdl in (("original", model), ("compact", compact)):
            wrapped = monitored(mdl, name=f"{task}-{kind}", sinks=[])
            r = _paired(mdl, wrapped, [[t] for t in test], rounds)
            wrapped.close()
            for k, v in r.items():
                out[f"{task}_{kind}_{k}"] = v
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    ap.add_argument(
        "--skip-accuracy", action="store_true", help="costs only: no sketch accuracy, no RSS run"
    )
    args = ap.parse_args(argv)
    quick = args.quick
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "quick": quick,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        # the seed's figure for the reference system, from the reference document (not measured)
        "reference_ns": REFERENCE_NS,
    }
    out.update(bench_record(chunk=20_000, reps=5 if quick else 15))
    out.update(bench_record_batch(batches=200, reps=5 if quick else 15))
    out.update(bench_prometheus(chunk=20_000, reps=5 if quick else 15))
    out.update(bench_totals(_load_intents(0)[0], reps=3 if quick else 9))
    out.update(
        bench_end_to_end(
            limit=1500 if quick else None,
            rounds=6 if quick else 20,
            per_round=100 if quick else 200,
        )
    )
    if not args.skip_accuracy:
        out.update(bench_quantiles(n=200_000 if quick else 1_000_000, trials=1 if quick else 3))
        out.update(bench_rss(total=2_000_000 if quick else 10_000_000))
    out["speedup_vs_reference"] = REFERENCE_NS / out["total_single_ns"]
    prom = out["prometheus_pair_ns"]
    out["pass"] = {
        "total_single_le_1500ns": out["total_single_ns"] <= 1500,
        "total_batch100_le_600ns": out["total_batch100_ns"] <= 600,
        "total_single_below_prometheus_pair": out["total_single_ns"] < prom,
        "total_batch100_below_prometheus_pair": out["total_batch100_ns"] < prom,
        **{
            f"overhead_{t}_{k}_le_{lim}pct": out[f"{t}_{k}_overhead_pct"] <= lim
            for t in ("email", "intent")
            for k, lim in (("compact", 5), ("original", 1))
        },
    }
    if not args.skip_accuracy:
        out["pass"].update(
            {
                "quantiles_within_1pct": out["quantile_max_rel_err"] <= 0.01,
                "merged_quantiles_within_1pct": out["merged_quantile_max_rel_err"] <= 0.01,
                "rss_growth_lt_50mb": out["rss_growth_mb_10m"] < 50,
            }
        )
    out["all_pass"] = all(out["pass"].values())
    out["seconds"] = time.perf_counter() - t_start
    text = json.dumps(out, indent=2, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
