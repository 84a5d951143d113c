"""Versioned, in-place migrations of the monitoring store (SQLite and PostgreSQL).

``<prefix>schema_version`` holds one row: the schema version the tables are at. Opening a
store (:meth:`~leanml.monitor.MonitorStore.create`) brings it to :data:`SCHEMA_VERSION`:

* no table at all: every table is created at the current version;
* tables but no version table: a store written by leanml 0.1.0 (version 1);
* then each step ``n -> n + 1`` runs in its own transaction, which also records ``n + 1``.

Every step checks what is there before it changes it, so a worker that lost a race with another
worker opening the same store (the store retries) finds the step done and moves on. Stop the
workers of the older release before upgrading: they write the tables a step renames.

Steps:

1 -> 2 (this release: one ground-truth path, :mod:`leanml.groundtruth`)
    ``serving_feedback`` becomes ``feedback`` with what each joined label's prediction was
    (``variant``, ``version``, ``predicted``, ``predicted_index``, ``confidence``,
    ``pred_ts``), backfilled from the ``labels`` rows of the same prediction ids where the
    monitor had written them; ``serving_idspaces`` becomes ``idspaces``; ``gt_inbox`` (labels
    forwarded between monitors, claimable for 60 s by a process of the old release) is dropped.

2 -> 3 (sampled predictions in blocks, :mod:`leanml.monitor._blocks`)
    the rows of ``predictions`` move into ``detail_blocks`` (in their order, up to 5,000 rows
    per block of one model, version, variant and process); ``predictions`` is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from leanml.monitor._blocks import PREDICTION_COLUMNS, blocks_of, define_block_table

__all__ = ["SCHEMA_VERSION", "migrate", "schema_version", "version_table"]

SCHEMA_VERSION = 3
#: detail rows per block when 2 -> 3 moves the rows of ``predictions``
_MOVE_BLOCK_ROWS = 5_000

_NEW_FEEDBACK_COLUMNS = (
    ("variant", "VARCHAR(100)"),
    ("version", "VARCHAR(100)"),
    ("predicted", "VARCHAR(200)"),
    ("predicted_index", "INTEGER"),
    ("confidence", "FLOAT"),
    ("pred_ts", "FLOAT"),
)


def version_table(md: sa.MetaData, p: str) -> sa.Table:
    return sa.Table(
        f"{p}schema_version",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def schema_version(conn: sa.Connection, p: str) -> int | None:
    """The store's schema version: None for an empty database, 1 for a 0.1.0 store."""
    names = set(sa.inspect(conn).get_table_names())
    if f"{p}schema_version" in names:
        t = version_table(sa.MetaData(), p)
        v = conn.execute(sa.select(t.c.version).where(t.c.id == 1)).scalar()
        if v is not None:
            return int(v)
    return 1 if f"{p}snapshots" in names else None


def _set_version(conn: sa.Connection, p: str, version: int) -> None:
    md = sa.MetaData()
    t = version_table(md, p)
    md.create_all(conn, checkfirst=True)
    done = conn.execute(t.update().where(t.c.id == 1).values(version=version, updated=time.time()))
    if done.rowcount == 0:
        conn.execute(t.insert().values(id=1, version=version, updated=time.time()))


def migrate(engine: sa.engine.Engine, md: sa.MetaData, p: str) -> tuple[int | None, int]:
    """Create or upgrade the tables of ``md`` (prefix ``p``): (version found, version now)."""
    with engine.begin() as conn:
        found = schema_version(conn, p)
    version = found
    if version is None:
        with engine.begin() as conn:
            md.create_all(conn, checkfirst=True)
            _set_version(conn, p, SCHEMA_VERSION)
        return None, SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        with engine.begin() as conn:
            _STEPS[version](conn, p)
            _set_version(conn, p, version + 1)
        version += 1
    with engine.begin() as conn:  # tables a later release added and this one reads
        md.create_all(conn, checkfirst=True)
    return found, version


def _v1_to_v2(conn: sa.Connection, p: str) -> None:
    names = set(sa.inspect(conn).get_table_names())
    q = conn.dialect.identifier_preparer.quote
    for old, new in (("serving_feedback", "feedback"), ("serving_idspaces", "idspaces")):
        if f"{p}{old}" in names and f"{p}{new}" not in names:
            conn.exec_driver_sql(f"ALTER TABLE {q(p + old)} RENAME TO {q(p + new)}")
    names = set(sa.inspect(conn).get_table_names())
    if f"{p}feedback" in names:
        have = {c["name"] for c in sa.inspect(conn).get_columns(f"{p}feedback")}
        for name, sql_type in _NEW_FEEDBACK_COLUMNS:
            if name not in have:
                table = q(p + "feedback")
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
        if f"{p}labels" in names:
            _backfill_predictions(conn, p)
    if f"{p}gt_inbox" in names:
        conn.exec_driver_sql(f"DROP TABLE {q(p + 'gt_inbox')}")


def _backfill_predictions(conn: sa.Connection, p: str) -> None:
    """Joined feedback rows take their prediction from the monitor's label row of that id."""
    md = sa.MetaData()
    fb = sa.Table(f"{p}feedback", md, autoload_with=conn)
    lab = sa.Table(f"{p}labels", md, autoload_with=conn)

    def first(col: sa.Column) -> sa.ScalarSelect:
        return (
            sa.select(col)
            .where(lab.c.prediction_id == fb.c.prediction_id)
            .order_by(lab.c.id)
            .limit(1)
            .scalar_subquery()
        )

    conn.execute(
        fb.update()
        .where((fb.c.status == "joined") & fb.c.predicted.is_(None))
        .values(
            predicted=first(lab.c.predicted_label),
            confidence=first(lab.c.confidence),
            pred_ts=first(lab.c.pred_ts),
            variant=first(lab.c.variant),
        )
    )


def _v2_to_v3(conn: sa.Connection, p: str) -> None:
    names = set(sa.inspect(conn).get_table_names())
    if f"{p}predictions" not in names:
        return
    blocks = define_block_table(sa.MetaData(), p)
    blocks.create(conn, checkfirst=True)
    old = sa.Table(f"{p}predictions", sa.MetaData(), autoload_with=conn)
    have = set(old.c.keys())
    cols = [old.c[c] if c in have else sa.null().label(c) for c in PREDICTION_COLUMNS]
    result = conn.execute(sa.select(*cols).order_by(old.c.id))
    while chunk := result.fetchmany(_MOVE_BLOCK_ROWS):
        rows = [tuple(r) for r in chunk]
        conn.execute(blocks.insert(), [b._asdict() for b in blocks_of(rows)])
    old.drop(conn)


_STEPS: dict[int, Callable[[sa.Connection, str], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
