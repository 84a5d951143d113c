"""FeedbackLog: durable ground truth and the cross-process join (no web code).

Every feedback item is written to ``<prefix>serving_feedback`` in the shared monitor store
(SQLite on one host, PostgreSQL across hosts) *before* the service answers, by a group-commit
writer thread (all items queued while one transaction runs go into the next; SQLite
transactions of this table run with ``synchronous=FULL``).

Prediction ids are ``<id-space prefix>-<counter>``; each process registers its id spaces in
``<prefix>serving_idspaces`` (model, process, heartbeat). The process that made a prediction
holds it in its monitor's pending-join table, so the join happens there:

* feedback reaching the owner is joined at once (status ``joined``);
* feedback reaching another process is stored with status ``forwarded``; the owner's poller
  (every ``poll_interval_s``) joins it and writes the outcome, which the receiving process waits
  for (at most ``timeout_s``; then it answers ``stored``: durable, join pending);
* an id whose space is unknown is ``never_seen``; one whose owner stopped (no heartbeat for
  3 intervals, or closed) is ``expired``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from leanml.errors import ServingError

__all__ = ["FeedbackLog", "Resolver"]

_log = logging.getLogger("leanml.serving")

#: resolver(rows) -> outcome per row; rows are (row id, prediction id, model, label)
Resolver = Callable[[list[tuple[int, str, str, str]]], list[str]]


class FeedbackLog:
    """Durable feedback, id-space registry and cross-process join (see module docstring)."""

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
        md = sa.MetaData()
        p = table_prefix
        self.feedback = sa.Table(
            f"{p}serving_feedback",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("prediction_id", sa.String(64), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("label", sa.String(200), nullable=False),
            sa.Column("owner", sa.String(64), nullable=False),
            sa.Column("received_by", sa.String(200), nullable=False),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("resolved_ts", sa.Float, nullable=True),
            sa.Index(f"{p}serving_feedback_owner", "owner", "status"),
            sa.Index(f"{p}serving_feedback_pid", "prediction_id"),
        )
        self.spaces = sa.Table(
            f"{p}serving_idspaces",
            md,
            sa.Column("prefix", sa.String(64), primary_key=True),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("process", sa.String(200), nullable=False),
            sa.Column("started", sa.Float, nullable=False),
            sa.Column("heartbeat", sa.Float, nullable=False),
            sa.Column("closed", sa.Boolean, nullable=False),
        )
        for attempt in range(3):  # several workers may create the tables at once
            try:
                md.create_all(engine, checkfirst=True)
                break
            except sa.exc.SQLAlchemyError:
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))
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
        """Queue rows (prediction_id, model, label, owner, status) for the next group commit;
        the future resolves to their row ids once committed."""
        fut: Future[list[int]] = Future()
        now = self._clock()
        for r in rows:
            r.setdefault("ts", now)
            r.setdefault("received_by", self.process_id)
        self._q.put((rows, fut))
        return fut

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
            try:
                ids = self._commit([r for rows, _ in jobs for r in rows])
            except Exception:
                self.counters["errors"] += 1
                _log.exception("feedback write failed")
                for _, fut in jobs:
                    # the exception names the store (host, port, database): logged, not answered
                    fut.set_exception(
                        ServingError("feedback could not be stored: store unavailable")
                    )
            else:
                k = 0
                for rows, fut in jobs:
                    fut.set_result(ids[k : k + len(rows)])
                    k += len(rows)
            if stop:
                return

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

    def set_status(self, updates: Sequence[tuple[int, str]]) -> None:
        if not updates:
            return
        t = self.feedback
        now = self._clock()
        with self.engine.begin() as conn:
            for row_id, status in updates:
                conn.execute(
                    t.update().where(t.c.id == row_id).values(status=status, resolved_ts=now)
                )

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
        self.set_status([(r[0], s) for r, s in zip(rows, outcomes, strict=True)])
        self.counters["forwarded_joined"] += sum(1 for s in outcomes if s == "joined")
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
