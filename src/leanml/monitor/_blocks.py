"""Sampled predictions stored in blocks: one store row holds many detail rows.

A store write turns the detail rows of one flush into one ``detail_blocks`` row per (model,
version, variant, process): those four values once, the block's time range (``ts_min``,
``ts_max``), its row count, how many of its rows still hold a text or a hash (``held``), and a
``body``: the other columns of :data:`~leanml.monitor.store.PREDICTION_COLUMNS` as JSON arrays,
``{"prediction_id": [...], "ts": [...], ...}``, in the order the rows were written.

Why: one SQLite row per sampled prediction cost 1.6-2.4 µs of CPU to insert (the row, the
parameter binding and two indexes), more than the rest of monitoring per sampled prediction;
one encoded block costs about 0.3 µs per detail row (``benchmarks/monitor_overhead.py``,
``detail_row_ns``). Readers get the rows back through :class:`~leanml.monitor.MonitorStore`
(``read_details``, ``read_table("predictions")``, ``count_rows("predictions")``); an erasure or
a retention cut rewrites the blocks it touches.

Floats round-trip exactly (shortest representation); a NaN is stored as ``null`` (read back as
None), as SQLite stored a NaN column.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson
import sqlalchemy as sa

__all__ = [
    "BODY_COLUMNS",
    "PREDICTION_COLUMNS",
    "Block",
    "Columns",
    "DetailQueue",
    "blocks_of",
    "decode",
    "define_block_table",
    "encode_columns",
    "group_rows",
    "keep_at",
    "rows_of",
]

#: column order of the detail-row tuples :meth:`~leanml.monitor.MonitorStore.write` accepts
PREDICTION_COLUMNS = (
    "prediction_id",
    "ts",
    "model",
    "version",
    "variant",
    "process",
    "label",
    "confidence",
    "latency_s",
    "input_text",
    "input_hash",
    "reason",
)
#: positions in a PREDICTION_COLUMNS tuple: the block's key, and the body's columns
KEY_AT = (2, 3, 4, 5)
_BODY_AT = tuple(i for i in range(len(PREDICTION_COLUMNS)) if i not in KEY_AT)
#: the columns a block's body holds (the other four are the block's own columns)
BODY_COLUMNS = tuple(PREDICTION_COLUMNS[i] for i in _BODY_AT)
_key = itemgetter(*KEY_AT)


def define_block_table(md: sa.MetaData, p: str) -> sa.Table:
    """The ``detail_blocks`` table (prefix ``p``)."""
    return sa.Table(
        f"{p}detail_blocks",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(100), nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        sa.Column("ts_min", sa.Float, nullable=False),
        sa.Column("ts_max", sa.Float, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),  # rows still holding a text or hash
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Index(f"{p}detail_blocks_ts", "ts_max"),
        sa.Index(f"{p}detail_blocks_model", "model", "ts_min"),
    )


class Columns(NamedTuple):
    """Detail rows of one (model, version, variant, process) as columns: what the monitor
    queues for the store (no per-row tuple is ever built)."""

    key: tuple[str, str, str, str]  # model, version, variant, process
    # the BODY_COLUMNS columns, of equal length: lists, or float64 arrays for the numbers
    body: list[Any]

    @property
    def rows(self) -> int:
        return len(self.body[1])

    def records(self) -> Iterator[tuple]:
        """The rows as PREDICTION_COLUMNS tuples."""
        pid, ts, label, conf, lat, text, digest, reason = map(_as_list, self.body)
        for r in zip(pid, ts, label, conf, lat, text, digest, reason, strict=True):
            yield (*r[:2], *self.key, *r[2:])


class DetailQueue:
    """The monitor's queue of detail rows waiting for the store, in column chunks; ``len`` is
    its number of rows."""

    def __init__(self) -> None:
        self.chunks: list[Columns] = []
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, chunk: Columns) -> None:
        self.chunks.append(chunk)
        self.n += chunk.rows

    def take(self) -> list[Columns]:
        """Every chunk queued (the queue is empty after)."""
        out, self.chunks, self.n = self.chunks, [], 0
        return out

    def records(self) -> Iterator[tuple]:
        for c in self.chunks:
            yield from c.records()


class Block(NamedTuple):
    """One ``detail_blocks`` row before it is written."""

    model: str
    version: str
    variant: str
    process: str
    ts_min: float
    ts_max: float
    rows: int
    held: int
    body: bytes


def group_rows(rows: Sequence[tuple]) -> list[tuple[tuple, list[tuple]]]:
    """The rows by (model, version, variant, process), each group in the order given."""
    keys = list(map(_key, rows))
    first = keys[0]
    if keys.count(first) == len(keys):  # the usual case: one monitor's flush
        return [(first, list(rows))]
    groups: dict[tuple, list[tuple]] = {}
    for k, r in zip(keys, rows, strict=True):
        groups.setdefault(k, []).append(r)
    return list(groups.items())


def blocks_of(rows: Sequence[tuple | Columns]) -> list[Block]:
    """The blocks of detail rows given as PREDICTION_COLUMNS tuples or :class:`Columns`
    chunks: one block per (model, version, variant, process)."""
    parts: dict[tuple, list[Sequence[Sequence[Any]]]] = {}
    tuples = [r for r in rows if type(r) is tuple]
    if tuples:
        for key, group in group_rows(tuples):
            cols = list(zip(*group, strict=True))
            parts.setdefault(key, []).append([cols[i] for i in _BODY_AT])
    for c in rows:
        if type(c) is Columns:
            parts.setdefault(c.key, []).append(c.body)
    out = []
    for (model, version, variant, process), chunks in parts.items():
        body = (
            chunks[0] if len(chunks) == 1 else [_concat(col) for col in zip(*chunks, strict=True)]
        )
        if len(body[1]):
            out.append(
                Block(str(model), str(version), str(variant), str(process), *encode_columns(body))
            )
    return out


def _as_list(col: Sequence[Any]) -> Sequence[Any]:
    """A column as Python values (the monitor queues its number columns as numpy arrays)."""
    return col.tolist() if isinstance(col, np.ndarray) else col


def _concat(parts: Sequence[Sequence[Any]]) -> Any:
    """One column of several chunks: an array when every part is one, else a list."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    out: list[Any] = []
    for p in parts:
        out.extend(_as_list(p))
    return out


def encode_columns(body: Sequence[Sequence[Any]]) -> tuple[float, float, int, int, bytes]:
    """(ts_min, ts_max, rows, held, body) of the BODY_COLUMNS columns ``body``."""
    ts, texts, hashes = body[1], body[5], body[6]
    n = len(ts)
    if hashes.count(None) == 0:
        held = n
    else:
        held = sum(1 for t, h in zip(texts, hashes, strict=True) if t is not None or h is not None)
    data = orjson.dumps(
        dict(zip(BODY_COLUMNS, body, strict=True)),
        option=orjson.OPT_SERIALIZE_NUMPY,  # the number columns as queued, written as floats
        default=_plain,
    )
    if isinstance(ts, np.ndarray):
        return float(ts.min()), float(ts.max()), n, held, data
    return float(min(ts)), float(max(ts)), n, held, data


def decode(body: bytes | memoryview | str) -> dict[str, list[Any]]:
    """The columns of a block's body."""
    cols: dict[str, list[Any]] = orjson.loads(bytes(body) if isinstance(body, memoryview) else body)
    return cols


def rows_of(block: Any, cols: dict[str, list[Any]] | None = None) -> Iterator[dict[str, Any]]:
    """The detail rows of a ``detail_blocks`` row (a mapping with its columns), as dicts with
    the keys of PREDICTION_COLUMNS."""
    cols = decode(block["body"]) if cols is None else cols
    const = {
        "model": block["model"],
        "version": block["version"],
        "variant": block["variant"],
        "process": block["process"],
    }
    names = BODY_COLUMNS
    for values in zip(*(cols[c] for c in names), strict=True):
        yield {**dict(zip(names, values, strict=True)), **const}


def keep_at(cols: dict[str, list[Any]], at: list[int]) -> dict[str, list[Any]]:
    """The columns of the rows at the positions ``at``."""
    return {c: [v[i] for i in at] for c, v in cols.items()}


def _plain(x: Any) -> Any:
    """What orjson cannot write itself: numpy scalars as their Python value, the rest as str."""
    item = getattr(x, "item", None)
    return item() if callable(item) else str(x)
