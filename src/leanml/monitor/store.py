"""Persistent monitoring store: SQLAlchemy Core on SQLite (WAL, the default) or PostgreSQL.

Tables (all names prefixed by ``table_prefix`` so several stores can share one database):

* ``snapshots``: one row per (model, variant, process, time window): counts, per-label counts,
  errors, joined/correct label counts, confidence sums, drift scores and the serialized latency
  :class:`~leanml.monitor.sketch.LogSketch`. A process only ever writes its own rows (upsert on
  each store flush), so processes never contend for a row.
* ``detail_blocks``: sampled predictions in detail (id, time, model, version, variant, label,
  confidence, latency, input text or its hash, why it was sampled), many per row in the block
  format of :mod:`~leanml.monitor._blocks`; read them with :meth:`MonitorStore.read_details`
  (or ``read_table("predictions")``).
* ``labels``: joined ground truth (id, true and predicted label, confidence, both times).
* ``resources`` and ``alerts``: time series of process resources and alert transitions.
* ``erasures``: erase requests (a prediction id, or a cut-off time), recorded by
  :meth:`MonitorStore.erase_details`. Every writer of detail rows applies them at write time
  (:meth:`MonitorStore.write`), so a prediction another process still held in its queue when
  the erasure was requested is stored without its text (see "Erasure across processes").
* ``feedback`` and ``idspaces``: the durable ground-truth log of :mod:`leanml.groundtruth`
  (labels with what their prediction was; the id prefixes in use). :meth:`MonitorStore.merged`
  takes the joined/correct counts from it whenever it holds labels of the model, so they equal
  the log even after a process died before flushing its windows.
* ``schema_version``: the versioned, in-place migrations of :mod:`leanml.monitor._migrate` run
  when a store is opened (a store written by leanml 0.1.0 is upgraded).

Readers merge across processes and hosts: :meth:`MonitorStore.merged` sums the counters and merges
the sketches of every process's rows, so the p99 of 4 worker processes is the p99 of all their
predictions, within the sketch's relative-error contract.

Erasure across processes: :meth:`~MonitorStore.erase_details` records its request and clears the
rows already stored in one transaction (it rewrites the blocks holding them);
:meth:`~MonitorStore.write` blanks the text and hash of the rows it inserts that match an
erasure it knows of, then, after the insert and in the same transaction, reads the erasures
recorded since it last looked and clears the rows they match. On SQLite one writer at a time
holds the database: an erasure committed before the write is read after its insert, one
committed after it finds the rows stored. On PostgreSQL (read committed) the write takes
``erasures`` in SHARE mode and an erasure takes it in SHARE ROW EXCLUSIVE mode, which gives the
same two orders. A process reads the erasures requested from a minute before it opened the
store, then only new ones (by id; erasures are serialized, so ids commit in order).

Retention (:meth:`MonitorStore.apply_retention`) deletes rows older than ``max_age_s`` and
detail rows beyond the newest ``max_rows`` (a block partly past the cut is rewritten with the
rest), then reclaims space (SQLite: WAL checkpoint + ``VACUUM``; PostgreSQL: ``VACUUM FULL`` of
the touched tables, which locks each table briefly, or plain ``VACUUM`` which makes space
reusable without returning it) and reports the bytes freed.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from leanml._intervals import wilson
from leanml._validation import check_choice
from leanml.errors import ConfigError, MonitorError
from leanml.groundtruth.log import log_counts
from leanml.monitor import _blocks
from leanml.monitor._blocks import PREDICTION_COLUMNS
from leanml.monitor._migrate import migrate
from leanml.monitor._schema import define_tables
from leanml.monitor.sketch import LogSketch

__all__ = [
    "FROZEN_AFTER_S",
    "LATE_CHECK_S",
    "LOG_SETTLE_S",
    "PREDICTION_COLUMNS",
    "MonitorStore",
    "default_process_id",
]

_QUANTILES = (0.5, 0.95, 0.99, 0.999)
#: snapshot rows of windows that started this long before the newest window are final: the
#: lifetime view folds them once (the open window and the last few are read on every call)
FROZEN_AFTER_S = 300.0
#: how often (s) the lifetime view looks for rows written late into its folded range (a scan)
LATE_CHECK_S = 60.0
#: feedback rows received this long ago (s, wall clock) are summed once by the lifetime view
LOG_SETTLE_S = 60.0
#: what identifies a snapshot row (one process's window of one model variant)
_SNAPSHOT_KEY = ("model", "variant", "process", "window_start")
#: the logical table of detail rows: read_table / count_rows / retention's "deleted" name it
#: so (its rows live in detail_blocks)
_DETAILS = "predictions"


def default_process_id() -> str:
    """``host:pid:random`` - unique per process start, stable for its lifetime."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MonitorStore:
    """SQLite/PostgreSQL persistence of monitor snapshots and records (see module docstring)."""

    def __init__(
        self,
        url: str = "sqlite:///leanml-monitor.db",
        *,
        table_prefix: str = "leanml_",
        process_id: str | None = None,
        create: bool = True,
        engine: sa.engine.Engine | None = None,
    ) -> None:
        if not table_prefix.replace("_", "").isalnum():
            raise ConfigError(f"table_prefix must be alphanumeric/underscore, got {table_prefix!r}")
        self.process_id = process_id or default_process_id()
        self.prefix = table_prefix
        try:
            self.engine = engine or _make_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"cannot open monitor store {url!r}: {exc}") from exc
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.dialect = self.engine.dialect.name
        self._md = sa.MetaData()
        t = define_tables(self._md, table_prefix)
        self.snapshots: sa.Table = t.snapshots
        self.detail_blocks: sa.Table = t.detail_blocks
        self.labels: sa.Table = t.labels
        self.resources: sa.Table = t.resources
        self.alerts: sa.Table = t.alerts
        self.feedback: sa.Table = t.feedback
        self.idspaces: sa.Table = t.idspaces
        self.erasures: sa.Table = t.erasures
        # erasures this process knows of (see "Erasure across processes")
        self._erased_ids: set[str] = set()
        self._erased_before = -math.inf
        self._erasures_seen: int | None = None  # the newest erasure id read; None: none yet
        self._opened_at = time.time()
        self.migrated_from: int | None = None
        self._folds: dict[tuple[str | None, str | None], _Fold] = {}
        self._fold_lock = threading.RLock()  # _folded starts over by calling itself
        self._merged_cache: dict[tuple[str | None, str | None], tuple[Any, dict[str, Any]]] = {}
        self._log_folds: dict[tuple[str | None, str | None], _LogFold] = {}
        self._snapshot_sql: dict[tuple[str, ...], tuple[str, str]] = {}
        # the statements every store write runs, as driver SQL: through SQLAlchemy's
        # statement layer each cost ~0.5-1 ms of CPU per write
        self._ph = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        cols = ", ".join(f'"{c}"' for c in _blocks.Block._fields)
        self._insert_blocks_sql = (
            f'INSERT INTO "{self.detail_blocks.name}" ({cols}) '
            f"VALUES ({', '.join([self._ph] * len(_blocks.Block._fields))})"
        )
        self._insert_sql: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._write_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            *_driver_errors(self.engine),
        )
        self._erasures_since_sql = (
            f'SELECT id, prediction_id, cutoff FROM "{self.erasures.name}" '
            f"WHERE id > {self._ph} ORDER BY id"
        )
        if create:
            self.create()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _store_after_fork(ref))

    # -- schema --------------------------------------------------------------------------------
    def create(self) -> None:
        # Workers started together race to create the same tables: each checks, then creates
        # them one by one, so the loser fails with "already exists" while the winner is still
        # creating the rest. Back off so the winner can finish (immediate retries lost the race
        # three times in a row about once in ten two-process starts on SQLite).
        attempts = 8
        for attempt in range(attempts):
            try:
                self.migrated_from = migrate(self.engine, self._md, self.prefix)[0]
                self._compress_blocks_with_lz4()
                return
            except SQLAlchemyError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.02 * 2**attempt)

    def _compress_blocks_with_lz4(self) -> None:
        """PostgreSQL 14+: the detail blocks' bodies compressed with lz4 rather than the default
        pglz (a block of 5,000 short texts: 10 ms to write instead of 19, 10% larger). Set
        once, by the first process that finds it unset; a server without lz4 keeps pglz."""
        if self.dialect != "postgresql":
            return
        table = self.detail_blocks.name
        with self.engine.begin() as conn:
            version = conn.dialect.server_version_info
            if version is None or version < (14,):
                return
            now = conn.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute "
                f"WHERE attrelid = '{table}'::regclass AND attname = 'body'"
            ).scalar()
            if now == "l":
                return
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(
                        f'ALTER TABLE "{table}" ALTER COLUMN body SET COMPRESSION lz4'
                    )
            except SQLAlchemyError:  # built without lz4
                return

    def drop_all(self) -> None:
        self._md.drop_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes --------------------------------------------------------------------------------
    def write(
        self,
        snapshots: Sequence[Mapping[str, Any]] = (),
        predictions: Sequence[Mapping[str, Any] | tuple] = (),
        labels: Sequence[Mapping[str, Any]] = (),
        resources: Sequence[Mapping[str, Any]] = (),
        alerts: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Write one flush's worth of rows in a single transaction.

        ``predictions`` (sampled detail rows) are tuples in :data:`PREDICTION_COLUMNS` order
        (their ``process`` is written as given), mappings with those keys (written as this
        process) or :class:`~leanml.monitor._blocks.Columns` chunks (the monitor's queue);
        they are stored as one block per (model, version, variant, process).
        """
        proc = self.process_id
        rows = [
            r if type(r) in (tuple, _blocks.Columns) else _as_tuple(r, proc)  # type: ignore[arg-type]
            for r in predictions
        ]
        try:
            with self.engine.begin() as conn:
                # the statements of a write go to the driver's cursor, inside SQLAlchemy's
                # transaction: its execution layer cost ~10-20 us per statement, twice that
                # with cold caches (a flush runs every second, after other work)
                cur = conn.connection.cursor()
                try:
                    if rows:
                        self._lock_erasures(conn, "SHARE")
                        blocks = _blocks.blocks_of(self._blank(rows))
                        if blocks:
                            cur.executemany(self._insert_blocks_sql, blocks)
                    for row in snapshots:
                        self._upsert_snapshot(cur, {**row, "process": proc})
                    for table, dicts in (
                        (self.labels, labels),
                        (self.resources, resources),
                        (self.alerts, alerts),
                    ):
                        if dicts:
                            self._insert(cur, table, dicts)
                    if rows:  # erasures recorded since this process last looked
                        new = self._read_erasures(conn, cur)
                        if new:
                            self._clear(conn, [i for i, _ in new if i], [b for _, b in new if b])
                finally:
                    cur.close()
        except self._write_errors as exc:
            raise MonitorError(f"monitor store write failed: {exc}") from exc

    def _insert(self, cur: Any, table: sa.Table, dicts: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (mappings with the table's columns but ``id``; ``process`` is this
        process) with the driver's cursor, the statement built once per table."""
        sql, cols = self._insert_sql.get(table.name) or self._build_insert(table)
        proc = self.process_id
        cur.executemany(
            sql, [tuple(proc if c == "process" else r.get(c) for c in cols) for r in dicts]
        )

    def _build_insert(self, table: sa.Table) -> tuple[str, tuple[str, ...]]:
        cols = tuple(c.name for c in table.columns if c.name != "id")
        names = ", ".join(f'"{c}"' for c in cols)
        sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([self._ph] * len(cols))})'
        self._insert_sql[table.name] = (sql, cols)
        return sql, cols

    # -- erasure at write time -----------------------------------------------------------------
    def _lock_erasures(self, conn: sa.Connection, mode: str) -> None:
        """PostgreSQL: lock ``erasures`` in ``mode`` for the transaction (SQLite: one writer
        holds the whole database already)."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f'LOCK TABLE "{self.erasures.name}" IN {mode} MODE')

    def _read_erasures(
        self, conn: sa.Connection, cur: Any
    ) -> list[tuple[str | None, float | None]]:
        """The erasures recorded since the last call (the first call: those requested from a
        minute before the store was opened), added to what this process knows; ``cur`` a
        driver cursor in ``conn``'s transaction."""
        t = self.erasures
        seen = self._erasures_seen
        if seen is None:
            q = sa.select(t.c.id, t.c.prediction_id, t.c.cutoff).order_by(t.c.id)
            rows = conn.execute(q.where(t.c.ts >= self._opened_at - 60.0)).all()
            self._erasures_seen = 0
        else:
            cur.execute(self._erasures_since_sql, (seen,))
            rows = cur.fetchall()
        out: list[tuple[str | None, float | None]] = []
        for rid, pid, before in rows:
            self._erasures_seen = max(self._erasures_seen or 0, int(rid))
            if pid is not None:
                self._erased_ids.add(str(pid))
            if before is not None:
                self._erased_before = max(self._erased_before, float(before))
            out.append((pid, before))
        return out

    def _blank(self, rows: list[Any]) -> list[Any]:
        """The rows (tuples or column chunks) with the text and hash blanked where a known
        erasure matches them."""
        ids, before = self._erased_ids, self._erased_before
        if not ids and before == -math.inf:
            return rows
        out: list[Any] = []
        for r in rows:
            if type(r) is tuple:
                out.append(r[:9] + (None, None) + r[11:] if (r[0] in ids or r[1] < before) else r)
                continue
            pid, ts, *rest = r.body
            hit = [
                i for i, (p, t) in enumerate(zip(pid, ts, strict=True)) if p in ids or t < before
            ]
            if hit:
                text, digest = list(rest[3]), list(rest[4])
                for i in hit:
                    text[i] = digest[i] = None
                r = r._replace(body=[pid, ts, *rest[:3], text, digest, rest[5]])
            out.append(r)
        return out

    def _clear(self, conn: sa.Connection, ids: Sequence[str], befores: Sequence[float]) -> int:
        """Set the text and hash of the matching detail rows to None, rewriting the blocks that
        hold them: how many rows held one. By id every block still holding a text or hash is
        read (an erasure is rare; the store keeps no index of prediction ids)."""
        t = self.detail_blocks
        wanted = {str(i) for i in ids}
        before = max(befores) if befores else -math.inf
        q = sa.select(t.c.id, t.c.body).where(t.c.held > 0)
        if not wanted:
            q = q.where(t.c.ts_min < before)
        erased = 0
        changed = []
        for bid, body in conn.execute(q.order_by(t.c.id)).all():
            cols = _blocks.decode(body)
            texts, hashes = cols["input_text"], cols["input_hash"]
            hit = 0
            for i, (pid, ts) in enumerate(zip(cols["prediction_id"], cols["ts"], strict=True)):
                if (pid in wanted or ts < before) and (
                    texts[i] is not None or hashes[i] is not None
                ):
                    texts[i] = hashes[i] = None
                    hit += 1
            if hit:
                erased += hit
                changed.append((bid, cols))
        for bid, cols in changed:
            self._rewrite(conn, bid, cols)
        return erased

    def _rewrite(self, conn: sa.Connection, block_id: int, cols: dict[str, list[Any]]) -> None:
        """Store ``cols`` as block ``block_id`` (deleted when no row is left)."""
        t = self.detail_blocks
        if not cols["ts"]:
            conn.execute(t.delete().where(t.c.id == block_id))
            return
        ts_min, ts_max, n, held, body = _blocks.encode_columns(
            [cols[c] for c in _blocks.BODY_COLUMNS]
        )
        conn.execute(
            t.update()
            .where(t.c.id == block_id)
            .values(ts_min=ts_min, ts_max=ts_max, rows=n, held=held, body=body)
        )

    def _upsert_snapshot(self, cur: Any, row: dict[str, Any]) -> None:
        """Update the window's row (its key: :data:`_SNAPSHOT_KEY`), or insert it, with the
        driver's cursor; the two statements built once per set of columns."""
        cols = tuple(row)
        sql = self._snapshot_sql.get(cols)
        if sql is None:
            sql = self._snapshot_sql[cols] = self._build_upsert(cols)
        update, insert = sql
        values = tuple(row.values())
        cur.execute(update, values + tuple(row[k] for k in _SNAPSHOT_KEY))
        if cur.rowcount == 0:
            cur.execute(insert, values)

    def _build_upsert(self, cols: tuple[str, ...]) -> tuple[str, str]:
        t, ph = self.snapshots.name, self._ph
        unknown = set(cols) - set(self.snapshots.c.keys())
        if unknown:
            raise MonitorError(f"snapshot rows have no column {sorted(unknown)}")
        sets = ", ".join(f'"{c}" = {ph}' for c in cols)
        where = " AND ".join(f'"{k}" = {ph}' for k in _SNAPSHOT_KEY)
        names = ", ".join(f'"{c}"' for c in cols)
        return (
            f'UPDATE "{t}" SET {sets} WHERE {where}',
            f'INSERT INTO "{t}" ({names}) VALUES ({", ".join([ph] * len(cols))})',
        )

    # -- reads ---------------------------------------------------------------------------------
    def read_snapshots(
        self,
        model: str | None = None,
        variant: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        t = self.snapshots
        q = sa.select(t).order_by(t.c.window_start, t.c.process)
        if model is not None:
            q = q.where(t.c.model == model)
        if variant is not None:
            q = q.where(t.c.variant == variant)
        if since is not None:
            q = q.where(t.c.window_start + t.c.window_s > since)
        if until is not None:
            q = q.where(t.c.window_start < until)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def merged(
        self,
        model: str | None = None,
        variant: str | None = None,
        since: float | None = None,
        until: float | None = None,
        quantiles: Iterable[float] = _QUANTILES,
    ) -> dict[str, Any]:
        """Counters summed and latency sketches merged over every process and window.

        Without ``since`` / ``until`` (the lifetime view ``/stats`` and ``/metrics`` read) the
        merge is incremental: rows of windows that started more than :data:`FROZEN_AFTER_S`
        before the newest window are folded once into a running total kept by this object,
        and each call reads and merges only the newer rows, so its cost does not grow with
        how much is retained. Rows written into the folded range later (a lagging process)
        are looked for every :data:`LATE_CHECK_S` and folded; a folded row rewritten, or
        retention run here, starts the fold over.
        """
        qs = list(quantiles)
        if since is None and until is None:
            fold, sig = self._folded(model, variant)
            logged = self._log_totals(model, variant)
            key = (sig, logged, tuple(qs))
            with self._fold_lock:
                cached = self._merged_cache.get((model, variant))
            if cached is not None and cached[0] == key:
                return _copy_merged(cached[1])
            out = self._merged_out(model, variant, fold, logged, qs)
            with self._fold_lock:
                self._merged_cache[(model, variant)] = (key, out)
            return _copy_merged(out)
        fold = _Fold()
        fold.add(self.read_snapshots(model, variant, since, until))
        logged = log_counts(self.engine, self.feedback, model, variant, since, until)
        return self._merged_out(model, variant, fold, logged, qs)

    def _merged_out(
        self,
        model: str | None,
        variant: str | None,
        fold: _Fold,
        logged: tuple[int, int],
        qs: list[float],
    ) -> dict[str, Any]:
        sketch = fold.sketch
        out: dict[str, Any] = {
            "model": model,
            "variant": variant,
            "windows": len(fold.starts),
            "processes": sorted(fold.processes),
            "count": fold.count,
            "errors": fold.errors,
            "joined": fold.joined,
            "correct": fold.correct,
        }
        conf_sum, conf_n = fold.conf_sum, fold.conf_n
        out["label_counts"] = fold.labels
        out["ground_truth_source"] = "snapshots"
        if logged[0]:  # the durable log is the truth whenever it holds labels of the model
            out["joined"], out["correct"] = logged
            out["ground_truth_source"] = "log"
        out["realized_accuracy"] = out["correct"] / out["joined"] if out["joined"] else None
        out["realized_accuracy_lower"], out["realized_accuracy_upper"] = wilson(
            out["correct"], out["joined"]
        )
        # the windows keep the sum of the predictions' P(correct), not its variance: the
        # binomial bound (Wilson at the estimate) is the conservative interval
        out["estimated_accuracy"] = conf_sum / conf_n if conf_n else None
        out["estimated_accuracy_lower"], out["estimated_accuracy_upper"] = wilson(conf_sum, conf_n)
        if sketch is not None and sketch.count:
            vals = sketch.quantiles(qs)
            out["latency"] = {
                "count": sketch.count,
                "avg": sketch.mean,
                "min": sketch.min,
                "max": sketch.max,
                **{_qname(q): float(v) for q, v in zip(qs, vals, strict=True)},
            }
        else:
            out["latency"] = {"count": 0}
        out["sketch"] = sketch
        return out

    def _folded(self, model: str | None, variant: str | None) -> tuple[_Fold, tuple[Any, ...]]:
        """The lifetime fold of (model, variant): the running total of the frozen rows plus
        the rows of the newest :data:`FROZEN_AFTER_S` (see :meth:`merged`), and a signature
        that changes whenever the result does. One statement per call (driver SQL built
        once): the rows not folded yet and any written into the folded range since
        (``updated_at`` newer than the newest folded). Live rows are parsed once per
        ``updated_at``; an unchanged set of live rows returns the previous result as is
        (callers do not modify it)."""
        key = (model, variant)
        with self._fold_lock:
            fold = self._folds.get(key)
            if fold is None:
                fold = self._folds[key] = _Fold()
            now = time.monotonic()
            check = now - fold.late_checked >= LATE_CHECK_S
            if check:
                fold.late_checked = now
            sql, params = self._fold_sql(model, variant, check)
            params = (*params, max(fold.frozen_until, -1e300))
            with self.engine.connect() as conn:
                got = conn.exec_driver_sql(sql, (*params, fold.seen_at) if check else params)
                rows = [dict(r) for r in got.mappings()]
            late = [r for r in rows if r["window_start"] < fold.frozen_until]
            if any(r["id"] in fold.ids for r in late):  # a folded row changed: start over
                del self._folds[key]
                self._merged_cache.pop(key, None)
                return self._folded(model, variant)
            if late:
                fold.add(late, keep=True)
            live = [r for r in rows if r["window_start"] >= fold.frozen_until]
            if rows:
                edge = max(r["window_start"] for r in rows) - FROZEN_AFTER_S
                if edge > fold.frozen_until:
                    fold.add([r for r in live if r["window_start"] < edge], keep=True)
                    fold.frozen_until = edge
                    live = [r for r in live if r["window_start"] >= edge]
            sig = (id(fold), fold.version, tuple((r["id"], r["updated_at"]) for r in live))
            if fold.result is not None and fold.result[0] == sig:
                return fold.result[1], sig
            parsed = fold.parsed
            now_parsed: dict[int, tuple[Any, _Row]] = {}
            for r in live:
                hit = parsed.get(r["id"])
                if hit is None or hit[0] != r["updated_at"]:
                    hit = (r["updated_at"], _parse(r))
                now_parsed[r["id"]] = hit
            fold.parsed = now_parsed  # only the live rows stay parsed
            out = fold.copy()
            out.add_parsed([p for _, p in now_parsed.values()])
            fold.result = (sig, out)
            return out, sig

    def _log_totals(self, model: str | None, variant: str | None) -> tuple[int, int]:
        """(joined, correct) of the whole feedback log of (model, variant), incrementally.

        Rows up to a watermark are summed once; each call counts only the rows above it (and
        the few below it still ``forwarded`` then: the owner may join them later). Every
        :data:`LATE_CHECK_S` the watermark moves up to the newest row received more than
        :data:`LOG_SETTLE_S` ago (a transaction that allocated a lower id would have to stay
        open that long to be missed) and the pending rows are looked up again."""
        key = (model, variant)
        with self._fold_lock:
            lf = self._log_folds.get(key)
            if lf is None:
                lf = self._log_folds[key] = _LogFold()
            now = time.monotonic()
            if now - lf.advanced >= LATE_CHECK_S:
                self._advance_log(lf, model, variant)
                lf.advanced = now
            upto, joined, correct = lf.upto, lf.joined, lf.correct
            pending = sorted(lf.pending)
        sql, params = self._log_sql(model, variant, "id > {ph}")
        with self.engine.connect() as conn:
            n, c = conn.exec_driver_sql(sql, (*params, upto)).one()
            joined, correct = joined + int(n or 0), correct + int(c or 0)
            if pending:
                n, c = self._log_in(conn, model, variant, pending)
                joined, correct = joined + n, correct + c
        return joined, correct

    def _advance_log(self, lf: _LogFold, model: str | None, variant: str | None) -> None:
        ph = self._ph
        name = self.feedback.name
        src = f"{name} NOT INDEXED" if self.dialect == "sqlite" else name  # the id range
        settled = time.time() - LOG_SETTLE_S
        with self.engine.connect() as conn:
            upto = conn.exec_driver_sql(
                f"SELECT MAX(id) FROM {src} WHERE id > {ph} AND ts < {ph}", (lf.upto, settled)
            ).scalar()
            if lf.pending:  # rows still forwarded when folded: joined since?
                ids = sorted(lf.pending)
                got = conn.exec_driver_sql(
                    f"SELECT id FROM {name} WHERE id IN ({', '.join([ph] * len(ids))}) "
                    "AND status <> 'forwarded'",
                    tuple(ids),
                ).all()
                done = sorted(int(r[0]) for r in got)
                if done:
                    n, c = self._log_in(conn, model, variant, done)
                    lf.joined, lf.correct = lf.joined + n, lf.correct + c
                    lf.pending.difference_update(done)
            if upto is None:
                return
            upto = int(upto)
            sql, params = self._log_sql(model, variant, f"id > {ph} AND id <= {ph}")
            n, c = conn.exec_driver_sql(sql, (*params, lf.upto, upto)).one()
            cond, model_params = self._log_where(model, None)
            fwd = conn.exec_driver_sql(
                f"SELECT id FROM {src} WHERE {' AND '.join(cond)} AND id > {ph} AND id <= {ph} "
                "AND status = 'forwarded'",
                (*model_params, lf.upto, upto),
            ).all()
        lf.joined, lf.correct = lf.joined + int(n or 0), lf.correct + int(c or 0)
        lf.pending.update(int(r[0]) for r in fwd)
        lf.upto = upto

    def _log_in(
        self, conn: sa.Connection, model: str | None, variant: str | None, ids: list[int]
    ) -> tuple[int, int]:
        ph = self._ph
        sql, params = self._log_sql(model, variant, f"id IN ({', '.join([ph] * len(ids))})")
        n, c = conn.exec_driver_sql(sql, (*params, *ids)).one()
        return int(n or 0), int(c or 0)

    def _log_where(self, model: str | None, variant: str | None) -> tuple[list[str], list[Any]]:
        ph = self._ph
        cond, params = ["1 = 1"], []
        for col, value in (("model", model), ("variant", variant)):
            if value is not None:
                cond.append(f"{col} = {ph}")
                params.append(value)
        return cond, params

    def _log_sql(
        self, model: str | None, variant: str | None, ids: str
    ) -> tuple[str, tuple[Any, ...]]:
        """(joined, correct) over the rows ``ids`` selects (as :func:`log_counts` counts);
        on SQLite the id range is read by rowid, never through the model index (whose scan
        would grow with the log)."""
        ph = self._ph
        name = self.feedback.name
        src = f"{name} NOT INDEXED" if self.dialect == "sqlite" and ">" in ids else name
        cond, params = self._log_where(model, variant)
        where = " AND ".join(
            [*cond, "status = 'joined'", "predicted IS NOT NULL", ids.format(ph=ph)]
        )
        sql = (
            "SELECT COUNT(*), SUM(CASE WHEN label = predicted THEN 1 ELSE 0 END) "
            f"FROM {src} WHERE {where}"
        )
        return sql, tuple(params)

    def _fold_sql(
        self, model: str | None, variant: str | None, late: bool
    ) -> tuple[str, tuple[Any, ...]]:
        ph = self._ph
        t = self.snapshots
        cond, params = [], []
        for col, value in (("model", model), ("variant", variant)):
            if value is not None:
                cond.append(f"{col} = {ph}")
                params.append(value)
        cols = ", ".join(c.name for c in t.columns)
        recent = f"(window_start >= {ph} OR updated_at > {ph})" if late else f"window_start >= {ph}"
        where = " AND ".join([*cond, recent])
        return f"SELECT {cols} FROM {t.name} WHERE {where}", tuple(params)

    def read_table(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The rows of a table in the order written (``predictions``: the detail rows, read
        from their blocks)."""
        check_choice(
            name,
            "name",
            "MonitorStore.read_table",
            ("snapshots", _DETAILS, "labels", "resources", "alerts"),
        )
        if name == _DETAILS:
            return list(itertools.islice(self.read_details(), limit))
        t: sa.Table = getattr(self, name)
        q = sa.select(t).order_by(t.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def count_rows(self, name: str) -> int:
        """Rows in a table (``predictions``: the detail rows in every block)."""
        if name == _DETAILS:
            t = self.detail_blocks
            q = sa.select(sa.func.coalesce(sa.func.sum(t.c.rows), 0))
        else:
            table: sa.Table = getattr(self, name)
            q = sa.select(sa.func.count()).select_from(table)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def read_details(
        self,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        newest_first: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The sampled detail rows (dicts with the keys of :data:`PREDICTION_COLUMNS`) of
        ``model`` (every model: None) made in ``[since, until)``, in the order written (or
        the reverse). Streamed a block at a time."""
        t = self.detail_blocks
        q = sa.select(t)
        if model is not None:
            q = q.where(t.c.model == model)
        if since is not None:
            q = q.where(t.c.ts_max >= since)
        if until is not None:
            q = q.where(t.c.ts_min < until)
        q = q.order_by(t.c.id.desc() if newest_first else t.c.id)
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with self.engine.connect() as conn:
            for block in conn.execution_options(stream_results=True, yield_per=16).execute(q):
                rows = _blocks.rows_of(block._mapping)
                if newest_first:
                    rows = reversed(list(rows))
                for r in rows:
                    if lo <= r["ts"] < hi:
                        yield r

    # -- erasure -------------------------------------------------------------------------------
    def erase_details(self, *, ids: Iterable[str] = (), before: float | None = None) -> int:
        """Erase the input text and its hash from the detail rows of the prediction ``ids`` and
        of every prediction made before ``before`` (a ``time.time()``); either or both.

        Only ``input_text`` and ``input_hash`` are cleared (set to NULL): every count, window,
        sketch and the rest of each detail row (id, time, label, confidence, latency) stay, so
        totals and accuracy do not change. Returns how many rows still held a text or a hash
        and were erased (erasing again erases 0). The request is recorded in ``erasures``:
        rows another process writes later (queued before the call) are stored blank.
        """
        wanted = list(dict.fromkeys(str(i) for i in ids))
        now = time.time()
        rows = [{"ts": now, "prediction_id": i, "cutoff": None} for i in wanted]
        if before is not None:
            rows.append({"ts": now, "prediction_id": None, "cutoff": float(before)})
        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                self._lock_erasures(conn, "SHARE ROW EXCLUSIVE")
                conn.execute(self.erasures.insert(), rows)
                erased = self._clear(conn, wanted, [before] if before is not None else [])
        except SQLAlchemyError as exc:
            raise MonitorError(f"cannot erase in the monitor store {self.url}: {exc}") from exc
        return erased

    # -- retention -----------------------------------------------------------------------------
    def disk_usage(self) -> int | None:
        """Bytes on disk: SQLite file + WAL (not the fixed 32 KB shared-memory index), or the
        PostgreSQL tables with their indexes and TOAST."""
        if self.dialect == "sqlite":
            path = self.engine.url.database
            if not path or path == ":memory:":
                return None
            return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        if self.dialect == "postgresql":
            names = [t.name for t in self._md.sorted_tables]
            q = sa.text(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relname = ANY(:names) AND c.relkind = 'r'"
            )
            with self.engine.connect() as conn:
                return int(conn.execute(q, {"names": names}).scalar_one())
        return None

    def apply_retention(
        self,
        now: float,
        *,
        max_age_s: float | None = None,
        max_rows: int | None = None,
        reclaim: str = "full",
    ) -> dict[str, Any]:
        """Delete old rows, reclaim disk space, report rows deleted and bytes freed."""
        check_choice(reclaim, "reclaim", "MonitorStore.apply_retention", ("full", "plain", "none"))
        before = self.disk_usage()
        deleted: dict[str, int] = {}
        with self.engine.begin() as conn:
            if max_age_s is not None:
                cutoff = now - max_age_s
                deleted[self.prefix + _DETAILS] = self._cut_details_before(conn, cutoff)
                for t in (
                    self.labels,
                    self.resources,
                    self.alerts,
                    self.erasures,  # requested before the cut-off: their rows are gone too
                ):
                    deleted[t.name] = conn.execute(t.delete().where(t.c.ts < cutoff)).rowcount
                s = self.snapshots
                deleted[s.name] = conn.execute(
                    s.delete().where(s.c.window_start + s.c.window_s < cutoff)
                ).rowcount
            if max_rows is not None:
                n = self._keep_newest_details(conn, max_rows)
                key = self.prefix + _DETAILS
                deleted[key] = deleted.get(key, 0) + n
                for t in (self.labels, self.resources, self.alerts):
                    edge = conn.execute(
                        sa.select(t.c.id).order_by(t.c.id.desc()).offset(max_rows).limit(1)
                    ).scalar()
                    if edge is not None:
                        n = conn.execute(t.delete().where(t.c.id <= edge)).rowcount
                        deleted[t.name] = deleted.get(t.name, 0) + n
        with self._fold_lock:  # the lifetime view is what is retained
            self._folds.clear()
            self._merged_cache.clear()
            self._log_folds.clear()
        if reclaim != "none" and sum(deleted.values()) > 0:
            self._reclaim(reclaim)
        after = self.disk_usage()
        freed = before - after if before is not None and after is not None else None
        return {
            "deleted": deleted,
            "bytes_before": before,
            "bytes_after": after,
            "bytes_freed": freed,
        }

    def _cut_details_before(self, conn: sa.Connection, cutoff: float) -> int:
        """Delete the detail rows made before ``cutoff`` (blocks wholly before it are deleted,
        a block across it is rewritten with its newer rows): how many."""
        t = self.detail_blocks
        n = self._delete_blocks(conn, t.c.ts_max < cutoff)
        across = conn.execute(sa.select(t.c.id, t.c.body).where(t.c.ts_min < cutoff)).all()
        for bid, body in across:
            cols = _blocks.decode(body)
            ts = cols["ts"]
            kept = _blocks.keep_at(cols, [i for i, x in enumerate(ts) if x >= cutoff])
            n += len(ts) - len(kept["ts"])
            self._rewrite(conn, bid, kept)
        return n

    def _delete_blocks(self, conn: sa.Connection, where: sa.ColumnElement[bool]) -> int:
        """Delete the blocks ``where`` holds for: how many detail rows they held."""
        t = self.detail_blocks
        rows = sa.select(sa.func.coalesce(sa.func.sum(t.c.rows), 0)).where(where)
        n = int(conn.execute(rows).scalar_one())
        conn.execute(t.delete().where(where))
        return n

    def _keep_newest_details(self, conn: sa.Connection, max_rows: int) -> int:
        """Delete the detail rows beyond the newest ``max_rows`` (in the order written): how
        many."""
        t = self.detail_blocks
        kept = 0
        edge: tuple[int, int] | None = None  # the block across the cut, and its rows to keep
        for bid, rows in conn.execute(sa.select(t.c.id, t.c.rows).order_by(t.c.id.desc())):
            if kept + rows > max_rows:
                edge = (bid, max_rows - kept)
                break
            kept += rows
        if edge is None:
            return 0
        bid, keep = edge
        n = self._delete_blocks(conn, t.c.id < bid)
        cols = _blocks.decode(conn.execute(sa.select(t.c.body).where(t.c.id == bid)).scalar_one())
        size = len(cols["ts"])
        self._rewrite(conn, bid, _blocks.keep_at(cols, list(range(size - keep, size))))
        return n + size - keep

    def _reclaim(self, mode: str) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                if mode == "full":
                    conn.exec_driver_sql("VACUUM")
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            elif self.dialect == "postgresql":
                kw = "VACUUM FULL" if mode == "full" else "VACUUM"
                for t in self._md.sorted_tables:
                    conn.exec_driver_sql(f'{kw} "{t.name}"')


class _Row(NamedTuple):
    """A snapshot row parsed: what a fold sums of it."""

    n: int
    errors: int
    joined: int
    correct: int
    conf_sum: float
    conf_n: int
    labels: dict[str, int]
    start: float
    process: str
    sketch: LogSketch | None


def _parse(r: Mapping[str, Any]) -> _Row:
    blob = r["sketch"]
    return _Row(
        int(r["count"]),
        int(r["errors"]),
        int(r["joined"]),
        int(r["correct"]),
        float(r["confidence_sum"]),
        int(r["confidence_count"]),
        {str(k): int(v) for k, v in json.loads(r["label_counts"]).items()},
        r["window_start"],
        r["process"],
        LogSketch.from_bytes(bytes(blob)) if blob else None,
    )


class _Fold:
    """Running sums of snapshot rows: counters, label counts, confidence sums, windows,
    processes and the merged latency sketch (with the ids folded, to notice a rewrite)."""

    def __init__(self) -> None:
        self.count = self.errors = self.joined = self.correct = 0
        self.conf_sum = 0.0
        self.conf_n = 0
        self.labels: dict[str, int] = {}
        self.starts: set[float] = set()
        self.processes: set[str] = set()
        self.sketch: LogSketch | None = None
        self.ids: set[int] = set()
        self.seen_at = -1e300  # newest updated_at folded
        self.frozen_until = -math.inf  # rows of windows starting before this are folded
        self.late_checked = -math.inf  # when rows written late into that range were looked for
        self.version = 0  # bumped whenever rows are folded
        self.parsed: dict[int, tuple[Any, _Row]] = {}  # live row id -> (updated_at, parsed)
        self.result: tuple[tuple[Any, ...], _Fold] | None = None  # (signature, fold + live)

    def add(self, rows: Iterable[Mapping[str, Any]], keep: bool = False) -> None:
        for r in rows:
            self.add_parsed((_parse(r),))
            if keep:
                self.ids.add(r["id"])
                self.seen_at = max(self.seen_at, float(r["updated_at"]))
                self.version += 1

    def add_parsed(self, rows: Iterable[_Row]) -> None:
        labels = self.labels
        for r in rows:
            self.count += r.n
            self.errors += r.errors
            self.joined += r.joined
            self.correct += r.correct
            self.conf_sum += r.conf_sum
            self.conf_n += r.conf_n
            for lab, c in r.labels.items():
                labels[lab] = labels.get(lab, 0) + c
            self.starts.add(r.start)
            self.processes.add(r.process)
            if r.sketch is not None:
                if self.sketch is None:
                    self.sketch = r.sketch.copy()  # parsed rows are kept: never merged into
                else:
                    self.sketch.merge(r.sketch)

    def copy(self) -> _Fold:
        out = _Fold()
        out.count, out.errors, out.joined, out.correct = (
            self.count,
            self.errors,
            self.joined,
            self.correct,
        )
        out.conf_sum, out.conf_n = self.conf_sum, self.conf_n
        out.labels = dict(self.labels)
        out.starts = set(self.starts)
        out.processes = set(self.processes)
        out.sketch = self.sketch.copy() if self.sketch is not None else None
        return out


class _LogFold:
    """(joined, correct) of the feedback rows with ids up to ``upto``, all final (see
    :meth:`MonitorStore._log_totals`)."""

    def __init__(self) -> None:
        self.joined = self.correct = 0
        self.upto = 0
        self.advanced = -math.inf
        self.pending: set[int] = set()  # ids up to ``upto`` still forwarded when folded


def _copy_merged(out: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cached :meth:`MonitorStore.merged` answer that callers may modify."""
    sketch = out["sketch"]
    return {
        **out,
        "processes": list(out["processes"]),
        "label_counts": dict(out["label_counts"]),
        "latency": dict(out["latency"]),
        "sketch": sketch.copy() if sketch is not None else None,
    }


def _store_after_fork(ref: weakref.ReferenceType[MonitorStore]) -> None:
    """A forked child gets its own process id and never reuses the parent's connections."""
    st = ref()
    if st is not None:
        st.process_id = default_process_id()
        st.engine.dispose(close=False)


def _qname(q: float) -> str:
    return "p" + f"{q * 100:g}".replace(".", "")


def _make_engine(url: str) -> sa.engine.Engine:
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite":
        return sa.create_engine(u, pool_pre_ping=True, future=True)
    memory = not u.database or u.database == ":memory:"
    if memory:
        engine = sa.create_engine(
            u, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        os.makedirs(os.path.dirname(os.path.abspath(str(u.database))), exist_ok=True)
        engine = sa.create_engine(u, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not memory:
            # 16 KiB pages for a new file (an existing one keeps its own): a sampled e-mail
            # (~1.4 KB of text) costs half the CPU to write, checkpoints included
            # (4 KiB: ~12 us a row; short texts the same either way)
            cur.execute("PRAGMA page_size=16384")
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _driver_errors(engine: sa.engine.Engine) -> tuple[type[BaseException], ...]:
    """The errors of the engine's driver (PEP 249's ``Error``): a statement run on its cursor
    raises them unwrapped."""
    err = getattr(engine.dialect.dbapi, "Error", None)
    return (err,) if isinstance(err, type) and issubclass(err, BaseException) else ()


def _as_tuple(row: Mapping[str, Any], process: str) -> tuple:
    """A detail row given as a mapping, as a PREDICTION_COLUMNS tuple written as ``process``."""
    return tuple(process if c == "process" else row.get(c) for c in PREDICTION_COLUMNS)
