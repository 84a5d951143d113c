"""Table definitions of the monitoring store (see :mod:`leanml.monitor.store`)."""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from leanml.groundtruth.log import define_log_tables
from leanml.monitor._blocks import define_block_table
from leanml.monitor._migrate import version_table

__all__ = ["define_tables"]


def define_tables(md: sa.MetaData, p: str) -> SimpleNamespace:
    """snapshots, detail blocks (sampled predictions), labels, resources, alerts and erasures, and
    the ground-truth log's feedback and idspaces
    (:func:`leanml.groundtruth.log.define_log_tables`), named with prefix ``p``."""
    t = SimpleNamespace()
    t.snapshots = sa.Table(
        f"{p}snapshots",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(100), nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("window_s", sa.Float, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("joined", sa.BigInteger, nullable=False),
        sa.Column("correct", sa.BigInteger, nullable=False),
        sa.Column("confidence_sum", sa.Float, nullable=False),
        sa.Column("confidence_count", sa.BigInteger, nullable=False),
        sa.Column("label_counts", sa.Text, nullable=False),
        sa.Column("drift", sa.Text, nullable=True),
        sa.Column("sketch", sa.LargeBinary, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "variant", "process", "window_start"),
        sa.Index(f"{p}snapshots_mw", "model", "window_start"),
    )
    t.detail_blocks = define_block_table(md, p)  # sampled predictions, many per row
    t.labels = sa.Table(
        f"{p}labels",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(200), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("pred_ts", sa.Float, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(100), nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("true_label", sa.String(200), nullable=True),
        sa.Column("predicted_label", sa.String(200), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Index(f"{p}labels_ts", "ts"),
    )
    t.resources = sa.Table(
        f"{p}resources",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("rss_bytes", sa.BigInteger, nullable=False),
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("disk_bytes", sa.BigInteger, nullable=True),
        sa.Column("gc", sa.Text, nullable=False),
        sa.Index(f"{p}resources_ts", "ts"),
    )
    t.alerts = sa.Table(
        f"{p}alerts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(100), nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("previous", sa.String(20), nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Index(f"{p}alerts_ts", "ts"),
    )
    t.erasures = sa.Table(  # erase requests, applied by every writer of detail rows
        f"{p}erasures",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),  # when the erasure was requested
        sa.Column("prediction_id", sa.String(200), nullable=True),  # erase this id ...
        sa.Column("cutoff", sa.Float, nullable=True),  # ... or every prediction made before it
        sa.Index(f"{p}erasures_ts", "ts"),
    )
    log = define_log_tables(md, p)
    t.feedback, t.idspaces = log.feedback, log.idspaces
    t.schema_version = version_table(md, p)
    return t
