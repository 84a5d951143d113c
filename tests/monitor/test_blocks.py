"""Detail rows in blocks: encoding, grouping, and the store's reads, retention and erasure
through them (rows cut out of the middle of a block)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from leanml.monitor import MonitorStore
from leanml.monitor._blocks import (
    PREDICTION_COLUMNS,
    Columns,
    DetailQueue,
    blocks_of,
    decode,
    rows_of,
)


def _row(i: int, *, model: str = "m", process: str = "p", ts: float | None = None) -> tuple:
    return (
        f"id-{i}",
        1_700_000_000.0 + i / 7 if ts is None else ts,
        model,
        "1",
        "compact",
        process,
        "spam" if i % 3 else "ham",
        0.5 + i / 1000,
        0.001 * i,
        None if i % 5 == 0 else f"text {i} é 😀",
        None if i % 10 == 0 else f"{i:064x}",
        "rate" if i % 2 else "low_confidence",
    )


def test_blocks_round_trip_every_column_exactly_and_group_by_stream() -> None:
    rows = [_row(i, model="a" if i % 4 else "b") for i in range(50)]
    blocks = blocks_of(rows)
    assert [(b.model, b.rows) for b in blocks] == [("b", 13), ("a", 37)]  # first seen first
    back = [tuple(r[c] for c in PREDICTION_COLUMNS) for b in blocks for r in rows_of(b._asdict())]
    want = [r for r in rows if r[2] == "b"] + [r for r in rows if r[2] == "a"]
    assert back == want  # floats exact, None kept, non-ASCII text intact, order kept
    a = blocks[1]
    ts = [r[1] for r in rows if r[2] == "a"]
    assert (a.ts_min, a.ts_max) == (min(ts), max(ts))
    held = sum(1 for r in rows if r[2] == "a" and (r[9] is not None or r[10] is not None))
    assert a.held == held < a.rows


def test_a_nan_confidence_is_stored_as_none() -> None:
    row = (*_row(1)[:7], math.nan, *_row(1)[8:])
    (block,) = blocks_of([row])
    assert decode(block.body)["confidence"] == [None]


def test_column_chunks_of_one_stream_merge_into_one_block() -> None:
    q = DetailQueue()
    rows = [_row(i) for i in range(30)]
    for part in (rows[:10], rows[10:30]):
        cols = [list(c) for c in zip(*part, strict=True)]
        q.append(Columns(("m", "1", "compact", "p"), [cols[i] for i in (0, 1, 6, 7, 8, 9, 10, 11)]))
    assert len(q) == 30 and list(q.records()) == rows
    blocks = blocks_of(q.take())
    assert len(q) == 0 and len(blocks) == 1 and blocks[0].rows == 30
    assert decode(blocks[0].body)["prediction_id"] == [r[0] for r in rows]


def test_number_columns_queued_as_arrays_are_written_as_the_same_floats() -> None:
    """The monitor queues ts, confidence and latency as float64 arrays: alone, merged with
    another array chunk, or with a chunk of lists, they read back as the lists would."""
    rows = [(*_row(i)[:7], [0.1 * i, math.nan][i == 3], *_row(i)[8:]) for i in range(30)]
    at = (0, 1, 6, 7, 8, 9, 10, 11)

    def chunk(part: list[tuple], arrays: bool) -> Columns:
        cols = [list(c) for c in zip(*part, strict=True)]
        body = [cols[i] for i in at]
        if arrays:
            for k in (1, 3, 4):  # ts, confidence, latency
                body[k] = np.asarray(body[k], dtype=np.float64)
        return Columns(("m", "1", "compact", "p"), body)

    want = decode(blocks_of(rows)[0].body)
    assert want["confidence"][3] is None
    for kinds in ((True,), (True, True), (True, False), (False, True)):
        cut = [0, 10, 30] if len(kinds) == 2 else [0, 30]
        q = DetailQueue()
        for k, arrays in enumerate(kinds):
            q.append(chunk(rows[cut[k] : cut[k + 1]], arrays))
        got = list(q.records())  # Python floats again, NaN included
        assert [r[:7] + r[8:] for r in got] == [r[:7] + r[8:] for r in rows]
        assert all(type(r[7]) is float for r in got) and math.isnan(got[3][7])
        assert [r[7] for r in got if r is not got[3]] == [r[7] for r in rows if r is not rows[3]]
        (block,) = blocks_of(q.take())
        assert decode(block.body) == want and block.rows == 30, kinds
        assert (block.ts_min, block.ts_max) == (min(r[1] for r in rows), max(r[1] for r in rows))


@pytest.fixture
def store(tmp_path: Path) -> MonitorStore:
    st = MonitorStore(f"sqlite:///{tmp_path / 'blocks.db'}")
    yield st
    st.close()


def test_retention_by_age_cuts_inside_a_block(store: MonitorStore) -> None:
    rows = [_row(i, ts=1000.0 + i) for i in range(100)]  # one block: ts 1000 .. 1099
    store.write(predictions=rows)
    res = store.apply_retention(1000.0 + 40 + 3600, max_age_s=3600, reclaim="none")
    assert res["deleted"]["leanml_predictions"] == 40
    kept = store.read_table("predictions")
    assert [r["prediction_id"] for r in kept] == [f"id-{i}" for i in range(40, 100)]
    assert store.count_rows("predictions") == 60


def test_retention_by_rows_keeps_the_newest_across_blocks(store: MonitorStore) -> None:
    for k in range(3):  # three blocks of 40
        store.write(predictions=[_row(40 * k + i) for i in range(40)])
    res = store.apply_retention(2e9, max_rows=50, reclaim="none")
    assert res["deleted"]["leanml_predictions"] == 70
    ids = [r["prediction_id"] for r in store.read_table("predictions")]
    assert ids == [f"id-{i}" for i in range(70, 120)]
    assert (
        store.apply_retention(2e9, max_rows=50, reclaim="none")["deleted"].get("leanml_predictions")
        == 0
    )


def test_read_details_filters_model_and_time_and_reads_newest_first(store: MonitorStore) -> None:
    store.write(predictions=[_row(i, model="a" if i % 2 else "b", ts=100.0 + i) for i in range(20)])
    got = list(store.read_details("a", since=105.0, until=115.0, newest_first=True))
    assert [r["prediction_id"] for r in got] == [f"id-{i}" for i in (13, 11, 9, 7, 5)]
    assert all(r["model"] == "a" and r["process"] == "p" for r in got)


def test_erasure_rewrites_only_the_rows_it_matches(store: MonitorStore) -> None:
    store.write(predictions=[_row(i, ts=100.0 + i) for i in range(1, 30)])
    # id-10 and id-20 hold neither a text nor a hash (see _row): erasing them erases nothing
    assert store.erase_details(ids=["id-3", "id-10"]) == 1
    assert store.erase_details(before=105.0) == 3  # id-1, id-2, id-4 (ts 101-104)
    assert store.erase_details(before=105.0) == 0
    rows = {r["prediction_id"]: r for r in store.read_details()}
    assert len(rows) == 29
    blank = {k for k, r in rows.items() if r["input_text"] is None and r["input_hash"] is None}
    assert blank == {"id-1", "id-2", "id-3", "id-4", "id-10", "id-20"}
    assert rows["id-11"]["input_text"] == "text 11 é 😀"
    assert rows["id-3"]["label"] == "ham" and rows["id-3"]["confidence"] == 0.503


@pytest.mark.postgres
def test_postgresql_compresses_the_blocks_with_lz4(pg_url: str, table_prefix: str) -> None:
    st = MonitorStore(pg_url, table_prefix=table_prefix)
    try:
        with st.engine.connect() as conn:
            method = conn.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute WHERE attname = 'body' "
                f"AND attrelid = '{table_prefix}detail_blocks'::regclass"
            ).scalar()
        assert method == "l"
        st.write(predictions=[_row(i) for i in range(500)])
        assert st.count_rows("predictions") == 500
        again = MonitorStore(pg_url, table_prefix=table_prefix)  # finds it set: no ALTER
        assert [r["prediction_id"] for r in again.read_details()][:2] == ["id-0", "id-1"]
        again.close()
    finally:
        st.drop_all()
        st.close()
