"""FeedbackLog: the one durable ground-truth log, and the join across processes.

Two tables in the monitor store (SQLite on one host, PostgreSQL across hosts), created and
migrated with the store's own tables (:mod:`leanml.monitor._migrate`):

* ``<prefix>feedback``: one row per label received, written *before* the label is
  acknowledged, by a group-commit writer thread (all rows queued while one transaction runs go
  into the next; on SQLite these transactions run with ``synchronous=FULL``). A joined row also
  holds what the prediction was (predicted label and class index, confidence, prediction time,
  model version and variant), so a restarted process rebuilds its joined counts and accuracy
  windows from the log alone (:meth:`FeedbackLog.joined_rows`, :meth:`FeedbackLog.counts`).
* ``<prefix>idspaces``: each :class:`~leanml.groundtruth.path.GroundTruth` prefix in use
  (model, process, heartbeat, closed). No secret is stored: a reader of the store cannot mint
  ids.

Ids of another worker: the receiving process finds the prefix here and stores the label as
``forwarded``; the owner's poller (every ``poll_interval_s``) verifies the tag with its own
secret, joins, and writes the outcome and the prediction into the row; the receiver waits for
it (at most its timeout, then answers ``stored``). An unregistered prefix is ``never_seen``; an
owner that stopped (closed, or no heartbeat for 3 periods) is ``expired``. A forged id with a
real prefix costs one row, answered ``never_seen`` by the owner.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from leanml._logging import limited
from leanml.errors import LeanMLError

__all__ = ["PREDICTION_FIELDS", "FeedbackLog", "Resolver", "define_log_tables", "log_counts"]

_log = limited("leanml.groundtruth")  # a store outage fails every write: bounded

#: what a joined row holds of its prediction
PREDICTION_FIELDS = ("predicted", "predicted_index", "confidence", "pred_ts", "variant", "version")

#: resolver(rows) -> (outcome, prediction fields or None) per row; rows are
#: (row id, prediction id, model, label)
Resolver = Callable[[list[tuple[int, str, str, str]]], list[tuple[str, dict[str, Any] | None]]]


def define_log_tables(md: sa.MetaData, p: str) -> SimpleNamespace:
    """The ``feedback`` and ``idspaces`` tables named with prefix ``p`` (schema version 2)."""
    t = SimpleNamespace()
    t.feedback = sa.Table(
        f"{p}feedback",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resolved_ts", sa.Float, nullable=True),
        sa.Column("variant", sa.String(100), nullable=True),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("predicted", sa.String(200), nullable=True),
        sa.Column("predicted_index", sa.Integer, nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("pred_ts", sa.Float, nullable=True),
        sa.Index(f"{p}feedback_owner", "owner", "status"),
        sa.Index(f"{p}feedback_pid", "prediction_id"),
        sa.Index(f"{p}feedback_model", "model", "status", "ts"),
    )
    t.idspaces = sa.Table(
        f"{p}idspaces",
        md,
        sa.Column("prefix", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
    )
    return t


class FeedbackLog:
    """Durable labels, id-space registry and cross-process join (see module docstring).

    ``engine`` is the monitor store's (open the :class:`~leanml.monitor.MonitorStore` first:
    it creates and migrates these tables).
    """

    def __init__(
        self,
        engine: sa.engine.Engine,
        process_id: str,
        *,
        table_prefix: str = "leanml_",
        poll_interval_s: float = 0.05,
        heartbeat_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.process_id = process_id
        self.poll_interval_s = poll_interval_s
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self.sqlite = engine.dialect.name == "sqlite"
        t = define_log_tables(sa.MetaData(), table_prefix)
        self.feedback: sa.Table = t.feedback
        self.spaces: sa.Table = t.idspaces
        self.own: dict[str, str] = {}  # prefix -> model
        self._owners: dict[str, dict[str, Any]] = {}
        self._q: queue.Queue[tuple[list[dict[str, Any]], Future[list[int]]] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name="leanml-fb")
        self._writer.start()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.counters = {"written": 0, "transactions": 0, "forwarded_joined": 0, "errors": 0}

    # ------------------------------------------------------------------ id spaces
    def register_space(self, prefix: str, model: str) -> None:
        now = self._clock()
        with self.engine.begin() as conn:
            conn.execute(
                self.spaces.insert().values(
                    prefix=prefix,
                    model=model,
                    process=self.process_id,
                    started=now,
                    heartbeat=now,
                    closed=False,
                )
            )
        self.own[prefix] = model

    def owner(self, prefix: str) -> dict[str, Any] | None:
        """The id space's row (cached once closed), or None when no process registered it."""
        cached = self._owners.get(prefix)
        if cached is not None and cached["closed"]:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.spaces).where(self.spaces.c.prefix == prefix)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        self._owners[prefix] = out
        return out

    def owner_alive(self, row: dict[str, Any]) -> bool:
        return not row["closed"] and self._clock() - row["heartbeat"] < 3 * self.heartbeat_s + 1

    # ------------------------------------------------------------------ durable writes
    def write(self, rows: list[dict[str, Any]]) -> Future[list[int]]:
        """Queue rows (prediction_id, model, label, owner, status[, prediction fields]) for the
        next group commit; the future resolves to their row ids once committed."""
        fut: Future[list[int]] = Future()
        now = self._clock()
        for r in rows:
            r.setdefault("ts", now)
            r.setdefault("received_by", self.process_id)
        self._q.put((rows, fut))
        return fut

    def write_sync(self, rows: list[dict[str, Any]], timeout: float = 30.0) -> list[int]:
        """:meth:`write` and wait for the commit (raises when it failed)."""
        return self.write(rows).result(timeout=timeout)

    def _write_loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while True:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._commit_jobs(jobs)
            if stop:
                return

    def _commit_jobs(self, jobs: list[tuple[list[dict[str, Any]], Future[list[int]]]]) -> None:
        try:
            ids = self._commit([r for rows, _ in jobs for r in rows])
        except Exception:
            self.counters["errors"] += 1
            _log.exception("feedback write failed")
            for _, fut in jobs:
                # the exception names the store (host, port, database): logged, not answered
                fut.set_exception(LeanMLError("feedback could not be stored: store unavailable"))
            return
        k = 0
        for rows, fut in jobs:
            fut.set_result(ids[k : k + len(rows)])
            k += len(rows)

    def _commit(self, rows: list[dict[str, Any]]) -> list[int]:
        if not rows:
            return []
        ids: list[int] = []
        with self.engine.begin() as conn:
            if self.sqlite:
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
            for r in rows:  # one statement per row to get the ids back on every backend
                res = conn.execute(self.feedback.insert().values(**r))
                pk = res.inserted_primary_key
                ids.append(int(pk[0]) if pk else -1)
        self.counters["written"] += len(rows)
        self.counters["transactions"] += 1
        return ids

    def statuses(self, row_ids: Sequence[int]) -> dict[int, str]:
        t = self.feedback
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.status).where(t.c.id.in_(list(row_ids))))
            return {int(r[0]): str(r[1]) for r in rows}

    def set_status(self, updates: Sequence[tuple[int, str, dict[str, Any] | None]]) -> None:
        """Write each row's outcome (and, when joined, its prediction fields)."""
        if not updates:
            return
        t = self.feedback
        now = self._clock()
        with self.engine.begin() as conn:
            if self.sqlite:
                conn.exec_driver_sql("PRAGMA synchronous=FULL")
            for row_id, status, fields in updates:
                values = {"status": status, "resolved_ts": now, **(fields or {})}
                conn.execute(t.update().where(t.c.id == row_id).values(**values))

    # ------------------------------------------------------------------ rebuilding
    def joined_rows(
        self, model: str, variant: str | None = None, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` joined rows of ``model`` (and ``variant``), oldest first."""
        t = self.feedback
        cols = [t.c.prediction_id, t.c.label, t.c.ts, *(t.c[f] for f in PREDICTION_FIELDS)]
        where = (t.c.model == model) & (t.c.status == "joined")
        if variant is not None:
            where &= t.c.variant == variant
        q = sa.select(*cols).where(where).order_by(t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        rows.reverse()
        return rows

    def counts(self, model: str) -> tuple[int, int]:
        """(joined, correct) labels of ``model`` in the whole log."""
        return log_counts(self.engine, self.feedback, model)

    # ------------------------------------------------------------------ owner side
    def start(self, resolve: Resolver) -> None:
        """Start the poller: join forwarded feedback for our ids, heartbeat our id spaces."""
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll_loop, args=(resolve,), daemon=True, name="leanml-fb-poll"
            )
            self._poller.start()

    def _poll_loop(self, resolve: Resolver) -> None:
        next_beat = 0.0
        while not self._stop.wait(self.poll_interval_s):
            try:
                now = self._clock()
                if now >= next_beat:
                    self.heartbeat(now)
                    next_beat = now + self.heartbeat_s
                self.poll_once(resolve)
            except Exception:
                self.counters["errors"] += 1
                _log.exception("feedback poller step failed")

    def heartbeat(self, now: float | None = None) -> None:
        if not self.own:
            return
        with self.engine.begin() as conn:
            conn.execute(
                self.spaces.update()
                .where(self.spaces.c.prefix.in_(list(self.own)))
                .values(heartbeat=self._clock() if now is None else now)
            )

    def poll_once(self, resolve: Resolver) -> int:
        if not self.own:
            return 0
        t = self.feedback
        q = (
            sa.select(t.c.id, t.c.prediction_id, t.c.model, t.c.label)
            .where(t.c.owner.in_(list(self.own)) & (t.c.status == "forwarded"))
            .order_by(t.c.id)
            .limit(10_000)
        )
        with self.engine.connect() as conn:
            rows = [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in conn.execute(q)]
        if not rows:
            return 0
        outcomes = resolve(rows)
        self.set_status([(r[0], s, f) for r, (s, f) in zip(rows, outcomes, strict=True)])
        self.counters["forwarded_joined"] += sum(1 for s, _ in outcomes if s == "joined")
        return len(rows)

    def close(self, resolve: Resolver | None = None) -> None:
        """Stop the poller, join what is still forwarded to us, commit every queued write."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if resolve is not None:
            try:
                self.poll_once(resolve)
            except Exception:
                _log.exception("final feedback poll failed")
        self._q.put(None)
        self._writer.join()
        if self.own:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        self.spaces.update()
                        .where(self.spaces.c.prefix.in_(list(self.own)))
                        .values(closed=True, heartbeat=self._clock())
                    )
            except Exception:
                _log.exception("could not mark id spaces closed")


def log_counts(
    engine: sa.engine.Engine,
    feedback: sa.Table,
    model: str | None = None,
    variant: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> tuple[int, int]:
    """(joined, correct) rows of the log, optionally of one model / variant / label-time range.

    Only rows that hold their prediction count (rows upgraded from 0.1.0 may not)."""
    t = feedback
    correct = sa.func.sum(sa.case((t.c.label == t.c.predicted, 1), else_=0))
    q = sa.select(sa.func.count(), correct).where(
        (t.c.status == "joined") & t.c.predicted.is_not(None)  # 0.1.0 rows may lack it
    )
    if model is not None:
        q = q.where(t.c.model == model)
    if variant is not None:
        q = q.where(t.c.variant == variant)
    if since is not None:
        q = q.where(t.c.ts >= since)
    if until is not None:
        q = q.where(t.c.ts < until)
    with engine.connect() as conn:
        n, c = conn.execute(q).one()
    return int(n or 0), int(c or 0)
