"""A model's labelled predictions, read back from a monitor store: the next training file.

Every label the ground-truth path joined is a ``feedback`` row with status ``joined`` that holds
what its prediction was (predicted class, confidence, prediction time, variant, version; see
:mod:`leanml.groundtruth.log`). Its input text is not there: the text of a prediction is kept
only in the detail row of a *sampled* prediction (``sampling_rate``, plus those
below ``sample_below_confidence``), and only as ``store_inputs`` says (``text`` as sent,
``redacted`` with personal data masked; ``hash`` and ``none`` keep no text). So
:func:`labelled_predictions` joins each label with that row by prediction id, and a label whose
prediction was not sampled, or whose text was not kept, comes back with ``text`` None.

Labels of a prediction id that the log holds twice (a label sent again is ``duplicate``, not
``joined``) cannot occur; a prediction id with two detail rows yields one row (the first text
written). The rows are streamed in batches (a large log is never held in memory); the texts of
each batch are read from the detail blocks written around its predictions' times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from leanml.monitor._blocks import decode
from leanml.monitor.store import MonitorStore

__all__ = ["LABELLED_COLUMNS", "labelled_predictions", "store_models"]

#: a detail row is the text of a label's prediction when its time is within this many seconds
#: of the label's prediction time (both are taken as the prediction is made, by one process on
#: one clock: the slack only absorbs the time between issuing the id and recording it)
_SLACK_S = 3600.0

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
    f = store.feedback
    q = (
        sa.select(
            f.c.prediction_id,
            f.c.label,
            f.c.ts,
            f.c.predicted,
            f.c.confidence,
            f.c.pred_ts,
            f.c.variant,
            f.c.version,
        )
        .where((f.c.model == model) & (f.c.status == "joined"))
        .order_by(f.c.ts, f.c.id)
    )
    if since is not None:
        q = q.where(f.c.ts >= since)
    with store.engine.connect() as conn:
        texts = _Texts(store, conn, model)
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(q)
        for part in result.partitions(batch_rows):
            found = texts.of(part)
            for r in part:
                yield {
                    "text": found.get(r.prediction_id),
                    "label": r.label,
                    "predicted": r.predicted,
                    "confidence": r.confidence,
                    "predicted_at": r.pred_ts,
                    "labelled_at": r.ts,
                    "variant": r.variant,
                    "version": r.version,
                    "id": r.prediction_id,
                }


class _Texts:
    """The stored texts of one model's sampled predictions, looked up for a batch of labels in
    the detail blocks around their prediction times (within :data:`_SLACK_S`), the blocks of the
    previous batch kept decoded."""

    def __init__(self, store: MonitorStore, conn: sa.Connection, model: str) -> None:
        self.t, self.conn, self.model = store.detail_blocks, conn, model
        self.decoded: dict[int, dict[str, tuple[float, str]]] = {}

    def of(self, part: Sequence[Any]) -> dict[str, str]:
        """prediction id -> stored text, for the labels ``part`` (an id without one: absent)."""
        t = self.t
        times = [r.pred_ts for r in part]
        q = sa.select(t.c.id).where((t.c.model == self.model) & (t.c.held > 0))
        if None not in times:  # a label without its prediction time: every block
            q = q.where(
                (t.c.ts_max >= min(times) - _SLACK_S) & (t.c.ts_min <= max(times) + _SLACK_S)
            )
        ids = self.conn.execute(q.order_by(t.c.id)).scalars().all()
        new = [i for i in ids if i not in self.decoded]
        for i in range(0, len(new), 100):
            chosen = sa.select(t.c.id, t.c.body).where(t.c.id.in_(new[i : i + 100]))
            for bid, body in self.conn.execute(chosen):
                cols = decode(body)
                self.decoded[bid] = {
                    p: (ts, x)
                    for p, ts, x in zip(
                        cols["prediction_id"], cols["ts"], cols["input_text"], strict=True
                    )
                    if x is not None
                }
        self.decoded = {i: self.decoded[i] for i in ids}
        made = {r.prediction_id: r.pred_ts for r in part}
        found: dict[str, str] = {}
        for block in self.decoded.values():  # in the order written: the first text of an id
            for pid in made.keys() & block.keys():
                ts, text = block[pid]
                at = made[pid]
                if pid not in found and (at is None or abs(ts - at) <= _SLACK_S):
                    found[pid] = text
        return found


def store_models(store: MonitorStore) -> set[str]:
    """The models the store holds windows or labels of (indexed columns: no table scan)."""
    names: set[str] = set()
    with store.engine.connect() as conn:
        for table in (store.snapshots, store.feedback):
            names.update(conn.execute(sa.select(table.c.model).distinct()).scalars())
    return names
