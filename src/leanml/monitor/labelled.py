"""A model's labelled predictions, read back from a monitor store: the next training file.

Every label the ground-truth path joined is a ``feedback`` row with status ``joined`` that holds
what its prediction was (predicted class, confidence, prediction time, variant, version; see
:mod:`leanml.groundtruth.log`). Its input text is not there: the text of a prediction is kept
only in the ``predictions`` detail row of a *sampled* prediction (``sampling_rate``, plus those
below ``sample_below_confidence``), and only as ``store_inputs`` says (``text`` as sent,
``redacted`` with personal data masked; ``hash`` and ``none`` keep no text). So
:func:`labelled_predictions` joins each label with that row by prediction id, and a label whose
prediction was not sampled, or whose text was not kept, comes back with ``text`` None.

Labels of a prediction id that the log holds twice (a label sent again is ``duplicate``, not
``joined``) cannot occur; a prediction id with two detail rows yields one row. The rows are
streamed in batches (a large log is never held in memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from leanml.monitor.store import MonitorStore

__all__ = ["LABELLED_COLUMNS", "labelled_predictions", "store_models"]

#: the keys of each row :func:`labelled_predictions` returns, in the order a file shows them
LABELLED_COLUMNS = (
    "text",
    "label",
    "predicted",
    "confidence",
    "predicted_at",
    "labelled_at",
    "variant",
    "version",
    "id",
)


def labelled_predictions(
    store: MonitorStore, model: str, since: float | None = None, *, batch_rows: int = 5_000
) -> Iterator[dict[str, Any]]:
    """The joined labels of ``model`` (labelled at or after ``since``, epoch seconds), in label
    time order, each with the keys of :data:`LABELLED_COLUMNS` (times in epoch seconds; ``text``
    None when the store kept no text of the prediction).

    Streamed: the rows are fetched ``batch_rows`` at a time while the caller consumes them, so
    memory does not grow with the log (a connection stays open until the iterator ends)."""
    f, p = store.feedback, store.predictions
    detail = (p.c.prediction_id == f.c.prediction_id) & (p.c.model == f.c.model)
    q = (
        sa.select(
            f.c.id,
            f.c.prediction_id,
            f.c.label,
            f.c.ts,
            f.c.predicted,
            f.c.confidence,
            f.c.pred_ts,
            f.c.variant,
            f.c.version,
            p.c.input_text,
        )
        .select_from(f.outerjoin(p, detail))
        .where((f.c.model == model) & (f.c.status == "joined"))
        .order_by(f.c.ts, f.c.id)
    )
    if since is not None:
        q = q.where(f.c.ts >= since)
    row: dict[str, Any] | None = None
    row_id = None
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(q)
        for r in result:
            if row is not None and r.id == row_id:  # a second detail row of one prediction id
                row["text"] = row["text"] or r.input_text
                continue
            if row is not None:
                yield row
            row_id = r.id
            row = {
                "text": r.input_text,
                "label": r.label,
                "predicted": r.predicted,
                "confidence": r.confidence,
                "predicted_at": r.pred_ts,
                "labelled_at": r.ts,
                "variant": r.variant,
                "version": r.version,
                "id": r.prediction_id,
            }
    if row is not None:
        yield row


def store_models(store: MonitorStore) -> set[str]:
    """The models the store holds windows or labels of (indexed columns: no table scan)."""
    names: set[str] = set()
    with store.engine.connect() as conn:
        for table in (store.snapshots, store.feedback):
            names.update(conn.execute(sa.select(table.c.model).distinct()).scalars())
    return names
