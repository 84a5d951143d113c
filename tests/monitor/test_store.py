from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from leanml.errors import ConfigError, MonitorError
from leanml.monitor import ModelMonitor, MonitorConfig, MonitorStore
from leanml.monitor.store import PREDICTION_COLUMNS

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from leanml.monitor import ModelMonitor, MonitorConfig, MonitorStore

    url, prefix, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(seed)
    lat = rng.lognormal(-7 + 0.3 * seed, 0.8, 30_000)
    np.save(out, lat)
    store = MonitorStore(url, table_prefix=prefix, process_id=f"worker{seed}")
    cfg = MonitorConfig(store_interval_s=0.05, flush_interval_s=0.01, sampling_rate=0.01)
    with ModelMonitor("email", store=store, config=cfg, sinks=[]) as m:
        for i in range(0, lat.size, 100):
            ids = [f"w{seed}-{j}" for j in range(i, i + 100)]
            m.record_batch(ids, ["ham"] * 100, np.full(100, 0.9), lat[i : i + 100])
    store.close()
    """
)


def _two_processes(url: str, prefix: str, tmp_path: Path, workers: int = 2) -> np.ndarray:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    seeds = range(1, workers + 1)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, prefix, str(seed), str(tmp_path / f"lat{seed}.npy")]
        )
        for seed in seeds
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    return np.concatenate([np.load(tmp_path / f"lat{s}.npy") for s in seeds])


def _check_merged(store: MonitorStore, exact: np.ndarray, workers: int = 2) -> None:
    merged = store.merged("email")
    assert merged["count"] == exact.size == merged["latency"]["count"]
    assert merged["processes"] == [f"worker{i}" for i in range(1, workers + 1)]
    assert merged["label_counts"] == {"ham": exact.size}
    xs = np.sort(exact)
    for q, key in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999")):
        rank_value = xs[int(np.floor(q * (xs.size - 1)))]
        got = merged["latency"][key]
        assert abs(got - rank_value) <= 0.005 * rank_value  # the sketch contract
        assert abs(got - np.quantile(exact, q)) <= 0.01 * np.quantile(exact, q)
    assert merged["latency"]["max"] == exact.max()
    assert store.count_rows("predictions") > 0


def test_two_processes_sqlite_merged_p99(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mon.db'}"
    exact = _two_processes(url, "lm_", tmp_path)
    store = MonitorStore(url, table_prefix="lm_")
    _check_merged(store, exact)
    store.close()


@pytest.mark.slow
def test_four_processes_sqlite_merged_p99(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mon4.db'}"
    exact = _two_processes(url, "lm_", tmp_path, workers=4)
    store = MonitorStore(url, table_prefix="lm_")
    _check_merged(store, exact, workers=4)
    store.close()


@pytest.mark.postgres
def test_two_processes_postgres_merged_p99(tmp_path: Path, pg_url: str, table_prefix: str) -> None:
    store = MonitorStore(pg_url, table_prefix=table_prefix)
    try:
        exact = _two_processes(pg_url, table_prefix, tmp_path)
        _check_merged(store, exact)
        assert store.disk_usage() > 0
        res = store.apply_retention(2e9, max_rows=10)
        assert res["deleted"][f"{table_prefix}predictions"] > 0
        assert store.count_rows("predictions") == 10
        assert res["bytes_freed"] is not None and res["bytes_freed"] > 0
    finally:
        store.drop_all()
        store.close()


def test_retention_deletes_and_frees_space(tmp_path: Path, clock) -> None:
    db = tmp_path / "ret.db"
    store = MonitorStore(f"sqlite:///{db}")
    cfg = MonitorConfig(
        sampling_rate=1.0, store_inputs="text", retention_max_age_s=None, retention_max_rows=None
    )
    m = ModelMonitor("m", store=store, config=cfg, clock=clock, start=False, sinks=[])
    text = "lorem ipsum " * 40
    for day in range(4):
        for i in range(500):
            m.record(f"d{day}-{i}", "a", 0.9, 0.001, text)
        m.flush()
        clock.advance(86_400)
    assert store.count_rows("predictions") == 2000
    res = store.apply_retention(clock(), max_age_s=1.5 * 86_400)
    assert res["deleted"]["leanml_predictions"] == 1500
    assert store.count_rows("predictions") == 500
    assert res["bytes_freed"] > 0
    assert res["bytes_after"] < res["bytes_before"]
    print(f"retention freed {res['bytes_freed']} bytes")
    res = store.apply_retention(clock(), max_rows=100)
    assert store.count_rows("predictions") == 100
    m.close()
    store.close()


def test_retention_runs_on_schedule_inside_the_monitor(tmp_path: Path, clock) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path / 's.db'}")
    cfg = MonitorConfig(
        sampling_rate=1.0,
        retention_max_rows=50,
        retention_max_age_s=None,
        retention_interval_s=60.0,
    )
    with ModelMonitor("m", store=store, config=cfg, clock=clock, start=False, sinks=[]) as m:
        for i in range(300):
            m.record(f"i{i}", "a", 0.9, 0.001)
        m.flush()
        assert store.count_rows("predictions") == 300
        clock.advance(61)
        m.flush()
        assert store.count_rows("predictions") == 50
        assert m.stats()["retention"]["deleted"]["leanml_predictions"] == 250
        assert m.stats()["counters"]["retention_runs"] == 1


def test_a_new_sqlite_store_has_16k_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    import sqlite3

    def page_size(path: Path) -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("PRAGMA page_size").fetchone()[0])

    MonitorStore(f"sqlite:///{tmp_path}/new.db").close()
    assert page_size(tmp_path / "new.db") == 16384
    with sqlite3.connect(tmp_path / "old.db") as conn:  # a store made before: 4 KiB pages
        conn.execute("CREATE TABLE t (x INTEGER)")
    assert page_size(tmp_path / "old.db") == 4096
    store = MonitorStore(f"sqlite:///{tmp_path}/old.db")
    store.write(
        predictions=[("p-1-0", 1.0, "m", "", "default", "w", "a", 0.9, 0.1, "x", "h", "rate")]
    )
    store.close()
    assert page_size(tmp_path / "old.db") == 4096


def test_store_tables_and_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        MonitorStore("sqlite:///x.db", table_prefix="bad;drop")
    with pytest.raises(ConfigError):
        MonitorStore("nosuchdialect://x")
    mem = MonitorStore("sqlite://")
    assert mem.disk_usage() is None
    assert mem.merged("none")["latency"] == {"count": 0}
    mem.write(
        alerts=[
            {
                "ts": 1.0,
                "model": "m",
                "variant": "v",
                "rule": "r",
                "previous": "ok",
                "level": "warning",
                "value": 1.0,
                "n": 3,
                "reason": "x",
            }
        ]
    )
    assert mem.read_table("alerts")[0]["process"] == mem.process_id
    mem.drop_all()
    # the statements run on the driver's cursor: its errors are MonitorErrors too
    with pytest.raises(MonitorError, match="store write failed"):
        mem.write(alerts=[{"ts": 2.0}])
    mem.close()


@pytest.mark.parametrize("n", [0, 1, 79, 80, 203])
def test_sampled_prediction_rows_written_in_chunks_round_trip(tmp_path: Path, n: int) -> None:
    """Tuple rows go in as multi-row INSERTs of 80 plus a remainder: every row, in order."""
    store = MonitorStore(f"sqlite:///{tmp_path / 'm.db'}")
    meta = ("email", "1", "compact", "proc", "ham")  # model, version, variant, process, label
    rows = [
        (f"p-{i:x}", 1000.0 + i, *meta, 0.5 + i / 1000, 0.001 * i, None, f"{i:064x}", "rate")
        for i in range(n)
    ]
    store.write(predictions=rows)
    got = store.read_table("predictions")
    assert [tuple(r[c] for c in PREDICTION_COLUMNS) for r in got] == rows
    store.close()


def _erase_case(store: MonitorStore, clock) -> None:  # type: ignore[no-untyped-def]
    """Texts and hashes erased by id and by age; counts, labels and the rest of each row stay."""
    cfg = MonitorConfig(sampling_rate=1.0, store_inputs="text", retention_max_age_s=None)
    m = ModelMonitor("m", store=store, config=cfg, clock=clock, start=False, sinks=[])
    for day in range(3):
        for i in range(50):
            m.record(f"d{day}-{i}", "a", 0.9, 0.001, f"mail jane{day}-{i}@example.com")
        m.flush()
        clock.advance(86_400)
    before = store.merged(model="m")["count"]
    rows0 = {r["prediction_id"]: r for r in store.read_table("predictions")}
    assert len(rows0) == 150 and all(r["input_text"] and r["input_hash"] for r in rows0.values())

    assert store.erase_details(ids=["d2-0", "d2-1", "never-made"]) == 2
    assert store.erase_details(ids=["d2-0"]) == 0  # already erased
    assert store.erase_details(before=clock() - 2.5 * 86_400) == 50  # day 0: 3 days ago
    assert store.erase_details(before=clock() - 1.5 * 86_400) == 50  # day 1
    rows = {r["prediction_id"]: r for r in store.read_table("predictions")}
    assert set(rows) == set(rows0)  # the rows stay, without text or hash
    kept = {k for k, r in rows.items() if r["input_text"] or r["input_hash"]}
    assert kept == {f"d2-{i}" for i in range(2, 50)}
    for k, r in rows.items():
        assert (r["label"], r["confidence"], r["ts"]) == (
            rows0[k]["label"],
            rows0[k]["confidence"],
            rows0[k]["ts"],
        )
    assert store.merged(model="m")["count"] == before == 150
    assert store.erase_details(ids=[f"d2-{i}" for i in range(1200)]) == 48  # chunks of 500
    m.close()


def test_erase_details_sqlite(tmp_path: Path, clock) -> None:  # type: ignore[no-untyped-def]
    store = MonitorStore(f"sqlite:///{tmp_path / 'erase.db'}")
    try:
        _erase_case(store, clock)
    finally:
        store.close()


@pytest.mark.postgres
def test_erase_details_postgres(pg_url: str, table_prefix: str, clock) -> None:  # type: ignore[no-untyped-def]
    store = MonitorStore(pg_url, table_prefix=table_prefix)
    try:
        _erase_case(store, clock)
    finally:
        store.drop_all()
        store.close()


def _row(pid: str, ts: float, proc: str) -> tuple:
    return (pid, ts, "m", "1", "original", proc, "a", 0.9, 0.001, f"text of {pid}", "h" * 64, "s")


def _erase_across_case(url: str, prefix: str) -> None:
    """An erasure recorded by one process applies to detail rows another process writes after
    it (queued before it: issue #20), by id and by cut-off; rows outside it keep their text."""
    a = MonitorStore(url, table_prefix=prefix, process_id="A")
    b = MonitorStore(url, table_prefix=prefix, process_id="B")
    try:
        now = 1_000_000.0
        b.write(predictions=[_row("b-0", now, "B")])  # b has looked at the erasures once
        assert a.erase_details(ids=["q-1"], before=now + 10) == 1  # b-0 (made before the cut)
        b.write(  # queued by b before the erasure, written after it
            predictions=[_row("q-1", now + 20, "B"), _row("q-2", now + 5, "B")]
            + [_row("q-3", now + 20, "B")]
        )
        b.write(predictions=[_row("q-4", now + 1, "B"), _row("q-5", now + 30, "B")])  # known
        c = MonitorStore(url, table_prefix=prefix, process_id="C")  # opened after the erasure
        try:
            c.write(predictions=[_row("q-1", now + 40, "C"), _row("q-6", now + 40, "C")])
        finally:
            c.close()
        rows = a.read_table("predictions")
        texts = {(r["prediction_id"], r["process"]): r["input_text"] for r in rows}
        hashes = {(r["prediction_id"], r["process"]): r["input_hash"] for r in rows}
        blank = {k for k in texts if texts[k] is None and hashes[k] is None}
        assert blank == {("b-0", "B"), ("q-1", "B"), ("q-2", "B"), ("q-4", "B"), ("q-1", "C")}
        assert all(texts[k] for k in texts if k not in blank)  # q-3, q-5, q-6 keep theirs
        assert len(rows) == 8  # every row is stored: only its text and hash go
    finally:
        a.close()
        b.close()


def test_erase_applies_to_rows_other_processes_write_later_sqlite(tmp_path: Path) -> None:
    _erase_across_case(f"sqlite:///{tmp_path / 'across.db'}", "leanml_")


@pytest.mark.postgres
def test_erase_applies_to_rows_other_processes_write_later_postgres(
    pg_url: str, table_prefix: str
) -> None:
    try:
        _erase_across_case(pg_url, table_prefix)
    finally:
        store = MonitorStore(pg_url, table_prefix=table_prefix)
        store.drop_all()
        store.close()


def test_lifetime_merge_is_incremental_and_equals_a_full_merge(tmp_path: Path) -> None:
    import leanml.monitor.store as store_mod
    from leanml.monitor.window import Window

    def rows(process: str, starts: range, n: int, at: float | None) -> list[dict]:
        out = []
        for i in starts:
            w = Window(60.0 * i, 60.0, 0.005, 10)
            rng = np.random.default_rng(i)
            w.add(rng.integers(0, 2, n), rng.uniform(0.5, 1, n), rng.lognormal(-7, 1, n), 2)
            now = 60.0 * i + 1 if at is None else at  # a late writer writes at its own now
            out.append({**w.row("m", "1", "default", ["a", "b"], now), "process": process})
        return out

    def write(process: str, starts: range, n: int = 50, at: float | None = None) -> None:
        s = MonitorStore(f"sqlite:///{tmp_path}/m.db", process_id=process)
        s.write(snapshots=rows(process, starts, n, at))
        s.close()

    def same(a: dict, b: dict) -> None:
        for k in ("count", "windows", "processes", "label_counts", "estimated_accuracy"):
            assert a[k] == b[k], k
        assert a["latency"]["p99"] == b["latency"]["p99"]

    write("p1", range(0, 100))
    store = MonitorStore(f"sqlite:///{tmp_path}/m.db", process_id="reader")
    first = store.merged("m")
    assert first["count"] == 100 * 50
    fold = store._folds[("m", None)]
    assert fold.frozen_until == 60.0 * 99 - store_mod.FROZEN_AFTER_S and len(fold.ids) == 94
    write("p1", range(100, 130))  # new windows: folded as they age
    same(store.merged("m"), store.merged("m", since=0.0))
    write("p2", range(10, 12), at=60.0 * 131)  # another process, late, into the folded range
    fold.late_checked = -1e9  # its periodic look for late rows is due
    same(store.merged("m"), store.merged("m", since=0.0))
    assert store.merged("m")["processes"] == ["p1", "p2"]
    write("p1", range(5, 6), n=80, at=60.0 * 132)  # a folded row rewritten: the fold starts over
    fold = store._folds[("m", None)]
    fold.late_checked = -1e9
    merged = store.merged("m")
    same(merged, store.merged("m", since=0.0))
    assert merged["count"] == 130 * 50 + 2 * 50 + 30
    store.close()


def _log_case(store: MonitorStore) -> None:
    """The lifetime (joined, correct) of the feedback log is summed incrementally and always
    equals a full count: new rows, forwarded rows joined after they were folded, variants."""
    from leanml.groundtruth.log import log_counts

    t = store.feedback
    old = 1_000.0  # received long ago: summed once

    def rows(start: int, n: int, status: str = "joined", ts: float = old) -> list[dict]:
        out = []
        for i in range(start, start + n):
            joined = status == "joined"
            out.append(
                {
                    "prediction_id": f"p{i}",
                    "model": "m" if i % 3 else "other",
                    "label": "a",
                    "owner": "o",
                    "received_by": "r",
                    "ts": ts,
                    "status": status,
                    "variant": ("v1" if i % 2 else "v2") if joined else None,
                    "predicted": ("a" if i % 5 else "b") if joined else None,
                }
            )
        return out

    def insert(r: list[dict]) -> None:
        with store.engine.begin() as conn:
            conn.execute(t.insert(), r)

    def check() -> None:
        for model, variant in (("m", None), ("m", "v1"), (None, None), ("other", "v2")):
            full = log_counts(store.engine, t, model, variant)
            assert store.merged(model, variant)["joined"] == full[0], (model, variant)
            assert store.merged(model, variant)["correct"] == full[1], (model, variant)
            assert full[0] > 0

    insert(rows(0, 300))
    insert(rows(300, 20, status="forwarded"))
    insert(rows(320, 30))
    check()
    lf = store._log_folds[("m", None)]
    assert lf.upto >= 350 and len(lf.pending) > 0  # summed once; the forwarded kept apart
    insert(rows(350, 40, ts=time.time() + 3600))  # recent: counted per call, not summed yet
    check()
    assert store._log_folds[("m", None)].upto < 360
    with store.engine.begin() as conn:  # the owner joins the forwarded rows
        conn.execute(
            t.update()
            .where(t.c.status == "forwarded")
            .values(status="joined", variant="v1", predicted="a")
        )
    check()  # counted per call before the next look
    for f in store._log_folds.values():
        f.advanced = -1e9
    check()
    assert not store._log_folds[("m", None)].pending


def test_lifetime_log_counts_are_incremental_sqlite(tmp_path: Path) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path}/m.db")
    try:
        _log_case(store)
    finally:
        store.close()


def test_lifetime_log_counts_are_incremental_postgres(pg_url: str, table_prefix: str) -> None:
    store = MonitorStore(pg_url, table_prefix=table_prefix)
    try:
        _log_case(store)
    finally:
        store.drop_all()
        store.close()
