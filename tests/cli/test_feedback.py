"""``leanml feedback export``: formats, --since, rows without text, and every refusal."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
import time

import pytest
from tests.monitor.test_labelled import detail, label, make_store

from leanml.cli import main
from leanml.datasets import read_labelled

NOW = time.time()


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """Labels of model m received 0, 1, ... 5 hours ago; the text of all but p-1 is stored."""
    for var in ("LEANML_CONFIG", "LEANML_MODELS_DIR", "LEANML_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    labels = [label(f"p-{i}", "ab"[i % 2], NOW - 3600 * i) for i in range(6)]
    details = [
        detail(f"p-{i}", f"text {i}, with a comma", ts=NOW - 3600 * i - 5)
        for i in range(6)
        if i != 1
    ]
    make_store(tmp_path, labels, details).close()
    return f"sqlite:///{tmp_path / 'store.db'}"


def export(store: str, *args: str) -> int:
    return main(["feedback", "export", *args, "--store", store])


def test_csv_export_skips_the_rows_without_text_and_says_so(store, tmp_path, capsys):
    out = tmp_path / "out" / "m.csv"
    assert export(store, "m", "--out", str(out)) == 0
    said = capsys.readouterr().out
    assert f"wrote 5 labelled predictions of m to {out} (5 with their text)" in said
    assert "skipped 1 of the 6 labelled predictions: their text is not stored" in said
    assert "sampling_rate is 0.2" in said
    lines = out.read_text().splitlines()
    assert lines[0] == "text,label,predicted,confidence,predicted_at,labelled_at,variant,version,id"
    texts, labels = read_labelled(out)  # what leanml train --data reads
    assert texts == [f"text {i}, with a comma" for i in (5, 4, 3, 2, 0)]
    assert labels == ["b", "a", "b", "a", "a"]
    first = next(csv.DictReader(io.StringIO(out.read_text())))
    assert (first["confidence"], first["predicted_at"]) == ("0.75", _iso(NOW - 5 * 3600 - 5))
    assert (first["variant"], first["version"], first["id"]) == ("compact", "2", "p-5")


def test_keep_without_text_writes_every_label(store, tmp_path, capsys):
    out = tmp_path / "m.jsonl"
    assert export(store, "m", "--out", str(out), "--keep-without-text") == 0
    assert "kept 1 of them without a stored text (empty 'text')" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"p-{i}" for i in (5, 4, 3, 2, 1, 0)]
    assert rows[4]["text"] is None and rows[4]["label"] == "b"


@pytest.mark.parametrize("since,kept", [("90m", ["p-1", "p-0"]), ("iso", ["p-2", "p-1", "p-0"])])
def test_since_a_duration_or_an_iso_time(store, tmp_path, capsys, since, kept):
    if since == "iso":
        since = dt.datetime.fromtimestamp(NOW - 2.5 * 3600, dt.UTC).replace(tzinfo=None).isoformat()
    out = tmp_path / "m.parquet"
    assert export(store, "m", "--out", str(out), "--since", since, "--keep-without-text") == 0
    assert " labelled since " in capsys.readouterr().out
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(out).column("id").to_pylist() == kept


@pytest.mark.parametrize(
    "args,message",
    [
        (["nosuch", "--out", "x.csv"], "No model named 'nosuch' in the registry"),
        (["m", "--out", "x.csv", "--since", "yesterday"], "'since' parameter of leanml feedback"),
        (["m", "--out", "x.csv", "--since", "-5m"], "a duration (30m, 24h, 7d) or an ISO time"),
        (["m", "--out", "x.xlsx"], "'out' parameter of leanml feedback export must end with"),
        (["m", "--out", "store.db/x.csv"], "Cannot write store.db/x.csv (--out)"),
        (["m", "--out", "."], "must end with one of .csv"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(store, tmp_path, capsys, args, message):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert export(store, *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_unknown_model_message_names_the_known_ones(store, capsys):
    assert export(store, "nosuch", "--out", "x.csv") == 2
    assert "(models there: m)" in capsys.readouterr().err


def test_parquet_without_pyarrow_names_the_extra(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an install without it raises
    assert export(store, "m", "--out", str(tmp_path / "m.parquet")) == 2
    assert "pip install 'leanml[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "m.parquet").exists()


def test_nothing_to_export_exits_1(store, tmp_path, capsys):
    assert export(store, "m", "--out", "x.csv", "--since", "2099-01-01") == 1
    assert "No labelled predictions of m labelled since 2099-01-01T00:00:00.000+00:00" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "x.csv").exists()
    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    assert export(missing, "m", "--out", "x.csv") == 1
    assert "no monitor store at" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
