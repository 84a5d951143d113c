"""labelled_predictions: joined labels of one model with the stored text of their prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leanml.groundtruth import FeedbackLog
from leanml.monitor import MonitorStore
from leanml.monitor.labelled import LABELLED_COLUMNS, labelled_predictions, store_models

T0 = 1_700_000_000.0


def label(pid: str, lab: str, ts: float, *, model: str = "m", status: str = "joined") -> dict:
    row: dict[str, Any] = {
        "prediction_id": pid, "model": model, "label": lab, "owner": "p", "status": status,
        "ts": ts,
    }  # fmt: skip
    if status == "joined":
        row |= {
            "predicted": "a", "predicted_index": 0, "confidence": 0.75, "pred_ts": ts - 5,
            "variant": "compact", "version": "2",
        }  # fmt: skip
    return row


def detail(pid: str, text: str | None, *, model: str = "m", ts: float = T0) -> dict:
    """A detail row made at ``ts`` (a label's ``pred_ts`` is its prediction's time: the detail
    row of that prediction is looked up around it)."""
    return {
        "prediction_id": pid, "ts": ts, "model": model, "version": "2", "variant": "compact",
        "label": "a", "confidence": 0.75, "latency_s": 0.001, "input_text": text,
        "input_hash": None, "reason": "rate",
    }  # fmt: skip


def make_store(
    tmp_path: Path, labels: list[dict], details: list[dict], url: str = "", prefix: str = "leanml_"
) -> MonitorStore:
    st = MonitorStore(url or f"sqlite:///{tmp_path / 'store.db'}", table_prefix=prefix)
    log = FeedbackLog(st.engine, "test", table_prefix=prefix)
    log.write_sync(labels)
    log.close()
    st.write(predictions=details)
    return st


def list_of(st: MonitorStore, model: str, since: float | None = None) -> list[dict]:
    return list(labelled_predictions(st, model, since, batch_rows=2))  # several batches


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_each_joined_label_comes_with_its_prediction_and_stored_text(
    tmp_path, request, table_prefix, backend
):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    st = make_store(
        tmp_path,
        [
            label("p-1", "a", T0 + 1),
            label("p-2", "b", T0 + 2),  # its prediction was not sampled: no detail row
            label("p-3", "b", T0 + 3),  # sampled, but store_inputs kept no text
            label("p-1", "b", T0 + 4, status="duplicate"),  # not a label of the dataset
            label("p-4", "a", T0 + 5, status="forwarded"),  # not joined (yet)
            label("q-1", "a", T0 + 6, model="other"),
        ],
        [detail("p-1", "refund please"), detail("p-3", None), detail("q-1", "other text")],
        url,
        table_prefix,
    )
    rows = list_of(st, "m")
    assert [tuple(r) for r in rows] == [LABELLED_COLUMNS] * 3
    assert [(r["id"], r["text"], r["label"]) for r in rows] == [
        ("p-1", "refund please", "a"), ("p-2", None, "b"), ("p-3", None, "b"),
    ]  # fmt: skip
    first = rows[0]
    assert (first["predicted"], first["confidence"], first["variant"], first["version"]) == (
        "a", 0.75, "compact", "2",
    )  # fmt: skip
    assert (first["labelled_at"], first["predicted_at"]) == (T0 + 1, T0 - 4)
    assert store_models(st) == {"m", "other"}
    if backend == "postgres":
        st.drop_all()


def test_since_keeps_the_labels_received_from_then_on(tmp_path):
    labels = [label(f"p-{i}", "a", T0 + i) for i in range(10)]
    st = make_store(tmp_path, labels, [])
    assert [r["id"] for r in list_of(st, "m", since=T0 + 7)] == ["p-7", "p-8", "p-9"]
    assert list_of(st, "m", since=T0 + 100) == []


def test_a_prediction_with_two_detail_rows_gives_one_row_with_its_text(tmp_path):
    st = make_store(
        tmp_path, [label("p-1", "a", T0)], [detail("p-1", None), detail("p-1", "the text")]
    )
    assert [(r["id"], r["text"]) for r in list_of(st, "m")] == [("p-1", "the text")]


def test_the_text_is_found_in_the_blocks_around_the_prediction_time(tmp_path) -> None:
    """Texts are looked up in the detail blocks written within an hour of each label's
    prediction time (pred_ts = label time - 5 s here): one written a day away is not the
    text of that prediction (a store keeps no index of prediction ids)."""
    labels = [label(f"p-{i}", "a", T0 + 86_400 * i) for i in range(4)]
    st = make_store(
        tmp_path,
        labels,
        [detail(f"p-{i}", f"text {i}", ts=T0 + 86_400 * i - 4) for i in range(3)]
        + [detail("p-3", "a day early", ts=T0 + 86_400 * 2)],
    )
    st.write(predictions=[detail("p-1", "second row, later", ts=T0 + 86_400 - 3)])
    got = [(r["id"], r["text"]) for r in list_of(st, "m")]
    assert got == [("p-0", "text 0"), ("p-1", "text 1"), ("p-2", "text 2"), ("p-3", None)]
    st.close()
