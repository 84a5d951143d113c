"""The shadow check's part of the monitor store: its tables, merged counts, decision and figures.

The check itself (:class:`leanml.serving.shadow.ShadowGuard`) runs in each serving process; what
it shares goes through the store, and every reader (the guard of another process, ``leanml
models show``, the dashboard and the report) reads it here:

* ``shadow_counts``: one row per (model, version, epoch, process) with that process's counts
  :data:`COUNTS` (shadowed predictions, label agreements, the sum of top-class probability
  differences, ground-truth joins and each variant's correct ones);
* ``shadow_state``: one row per (model, version): the current epoch, whether the check fell back
  to the original and why, and ``figures`` (JSON: the threshold the guard tests against).

:func:`merged_counts` sums every process's counts of one epoch; :func:`shadow_figures` turns
counts into the figures shown everywhere (agreement, realized accuracies, each with its 95%
Wilson interval and sample size); :func:`read_decision` reads both for one model version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leanml._intervals import wilson
from leanml.monitor.store import MonitorStore

__all__ = [
    "COUNTS",
    "clear_fallback",
    "default_threshold",
    "fallback_reason",
    "merged_counts",
    "read_decision",
    "shadow_figures",
    "shadow_tables",
]

#: The counts each process publishes (summed across processes by :func:`merged_counts`).
COUNTS = ("n", "agree", "diff_sum", "joined", "correct_compact", "correct_original")

_tables_cache: dict[tuple[int, str], tuple[sa.Table, sa.Table]] = {}


def shadow_tables(store: MonitorStore) -> tuple[sa.Table, sa.Table]:
    """The store's ``shadow_counts`` and ``shadow_state`` tables (created when missing)."""
    key = (id(store.engine), store.prefix)
    if key in _tables_cache:
        return _tables_cache[key]
    md = sa.MetaData()
    p = store.prefix
    counts = sa.Table(
        f"{p}shadow_counts",
        md,
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("process", sa.String(200), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("agree", sa.BigInteger, nullable=False),
        sa.Column("diff_sum", sa.Float, nullable=False),
        sa.Column("joined", sa.BigInteger, nullable=False),
        sa.Column("correct_compact", sa.BigInteger, nullable=False),
        sa.Column("correct_original", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    state = sa.Table(
        f"{p}shadow_state",
        md,
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("fallen_back", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("figures", sa.Text, nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
    )
    md.create_all(store.engine, checkfirst=True)
    _tables_cache[key] = (counts, state)
    return counts, state


def default_threshold(configured: float | None, guard: Mapping[str, Any] | None) -> float:
    """The agreement the compact variant must keep: ``configured`` when set, else the
    compression guard's ``min_agreement`` (0.99 when unknown) minus 0.02."""
    if configured is not None:
        return configured
    return round(float((guard or {}).get("min_agreement", 0.99)) - 0.02, 6)


def fallback_reason(agreement: float, lower: float, upper: float, threshold: float, n: int) -> str:
    """Why the shadow check fell back (the ``reason`` of its state row and alert)."""
    return (
        f"live agreement {agreement:.3f} [{lower:.3f}, {upper:.3f}] < {threshold:g} "
        f"over {n:,} shadowed predictions"
    )


def merged_counts(
    conn: sa.Connection, counts: sa.Table, model: str, version: str, epoch: int
) -> dict[str, float]:
    """Every process's :data:`COUNTS` of ``model`` v``version`` in ``epoch``, summed."""
    total = conn.execute(
        sa.select(*[sa.func.coalesce(sa.func.sum(counts.c[k]), 0) for k in COUNTS]).where(
            counts.c.model == model, counts.c.version == version, counts.c.epoch == epoch
        )
    ).one()
    return {k: float(v) for k, v in zip(COUNTS, total, strict=True)}


def shadow_figures(merged: Mapping[str, float]) -> dict[str, Any]:
    """The figures of summed :data:`COUNTS`: label agreement over the shadowed predictions, the
    mean top-class probability difference, and both variants' realized accuracy over those whose
    ground truth joined, each proportion with its 95% Wilson interval (None without data)."""
    n, k, j = int(merged["n"]), int(merged["agree"]), int(merged["joined"])
    lo, hi = wilson(k, n)
    ac_lo, ac_hi = wilson(merged["correct_compact"], j)
    ao_lo, ao_hi = wilson(merged["correct_original"], j)
    return {
        "shadowed": n,
        "agreement": k / n if n else None,
        "agreement_lower": lo,
        "agreement_upper": hi,
        "proba_diff_mean": merged["diff_sum"] / n if n else None,
        "joined": j,
        "accuracy_compact": merged["correct_compact"] / j if j else None,
        "accuracy_compact_lower": ac_lo,
        "accuracy_compact_upper": ac_hi,
        "accuracy_original": merged["correct_original"] / j if j else None,
        "accuracy_original_lower": ao_lo,
        "accuracy_original_upper": ao_hi,
    }


def clear_fallback(store: MonitorStore | None, name: str, version: int | str) -> bool:
    """End a shadow fallback of ``name`` v``version`` for every process (a new epoch: fresh
    counts, a fresh test); True when there was one."""
    if store is None:
        return False
    _, state = shadow_tables(store)
    with store.engine.begin() as conn:
        res = conn.execute(
            state.update()
            .where(state.c.model == name, state.c.version == str(version))
            .values(epoch=state.c.epoch + 1, fallen_back=0, reason=None, ts=time.time())
        )
    return bool(res.rowcount)


def read_decision(store: MonitorStore, name: str, version: int | str) -> dict[str, Any] | None:
    """The shadow check's state of ``name`` v``version`` in ``store`` (any process's view):
    epoch, whether the test fired (``alarm``) and why, whether that made the processes serve
    the original (``fallen_back``: ``fallback = "auto"``), the threshold it tests against
    (None when the guard did not publish one) and the merged figures of the current epoch
    (:func:`shadow_figures`); None when no shadow check ever ran on it."""
    if not sa.inspect(store.engine).has_table(f"{store.prefix}shadow_state"):
        return None
    counts, state = shadow_tables(store)
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(state).where(state.c.model == name, state.c.version == str(version))
        ).first()
        if row is None:
            return None
        merged = merged_counts(conn, counts, name, str(version), int(row.epoch))
    try:
        published = json.loads(row.figures) if row.figures else {}
    except ValueError:
        published = {}
    if not isinstance(published, dict):
        published = {}
    threshold = published.get("threshold")
    mode = published.get("fallback", "auto")  # rows written before it was published: "auto"
    alarm = bool(row.fallen_back)  # the test fired; the processes switch only when "auto"
    return {
        "version": version,
        "epoch": int(row.epoch),
        "alarm": alarm,
        "fallback": mode,
        "fallen_back": alarm and mode == "auto",
        "reason": row.reason,
        "ts": row.ts,
        "threshold": float(threshold) if isinstance(threshold, int | float) else None,
        **shadow_figures(merged),
    }
