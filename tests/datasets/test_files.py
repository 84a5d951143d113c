"""load_file: every supported kind, the split, and every bad-input case with its message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanml.datasets import load_file, read_texts
from leanml.errors import DataFileError

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "tickets.csv"

ROWS = [(f"text number {i} about {c}", c) for c in ("a", "b", "c") for i in range(10)]


def _csv(path: Path, rows=ROWS, header="text,label", sep=",") -> Path:
    lines = [header] + [f'"{t}"{sep}{y}' for t, y in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl(path: Path, rows=ROWS) -> Path:
    path.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows) + "\n")
    return path


def test_the_shipped_csv_splits_stratified_and_reproducibly():
    ds = load_file(TICKETS)
    assert ds.classes == ["account", "billing", "shipping", "technical"]
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (201, 29, 58)
    again = load_file(TICKETS)
    assert again.X_val == ds.X_val
    assert set(ds.y_val.tolist()) == set(ds.classes)  # stratified: every class in every split
    assert not set(ds.X_train) & set(ds.X_test)


@pytest.mark.parametrize("sep,suffix", [(",", ".csv"), ("\t", ".tsv"), (";", ".txt")])
def test_csv_delimiter_is_sniffed(tmp_path, sep, suffix):
    path = _csv(tmp_path / f"d{suffix}", header=f"text{sep}label", sep=sep)
    ds = load_file(path)
    assert len(ds.X_train) + len(ds.X_val) + len(ds.X_test) == 30
    assert ds.X_train[0].startswith("text number")


def test_jsonl_parquet_and_folders_read_the_same_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"body": [t for t, _ in ROWS], "y": [y for _, y in ROWS]}),
        tmp_path / "d.parquet",
    )
    for text, label in ROWS:
        folder = tmp_path / "tree" / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{abs(hash(text))}.txt").write_text(text)
    expected = sorted(t for t, _ in ROWS)
    for ds in (
        load_file(_jsonl(tmp_path / "d.jsonl")),
        load_file(tmp_path / "d.parquet", text_column="body", label_column="y"),
        load_file(tmp_path / "tree"),
    ):
        assert sorted(ds.X_train + ds.X_val + ds.X_test) == expected
        assert ds.classes == ["a", "b", "c"]


def test_utf8_bom_is_dropped_and_other_encodings_need_encoding(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv(tmp_path / "x.csv").read_bytes())
    assert "text" in read_texts(path)[0][0]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(_csv(tmp_path / "y.csv").read_bytes().replace(b"about", b"caf\xe9"))
    with pytest.raises(DataFileError, match=r"latin.csv is not valid UTF-8: byte offset 29 "):
        load_file(latin)
    ds = load_file(latin, encoding="latin-1")
    assert any("café" in t for t in ds.X_train)


def test_explicit_validation_and_test_files(tmp_path):
    train = _csv(tmp_path / "train.csv", ROWS[:5] + ROWS[10:15] + ROWS[20:25])
    val = _csv(tmp_path / "val.csv", ROWS[5:7] + ROWS[15:17] + ROWS[25:27])
    test = _jsonl(tmp_path / "test.jsonl", ROWS[7:10] + ROWS[17:20] + ROWS[27:30])
    ds = load_file(train, validation=val, test=test)
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (15, 6, 9)
    only_val = load_file(train, validation=val)  # the test split comes from train
    assert len(only_val.X_val) == 6 and len(only_val.X_train) + len(only_val.X_test) == 15


@pytest.mark.parametrize(
    "content,message",
    [
        ("", r"empty.csv holds no rows"),
        ("text,label\n", r"empty.csv holds no rows"),
        ("body,label\nhi,a\n", r"has no column 'text' \(columns found: 'body', 'label'\)"),
        ("text,label\nhi,a\n  ,b\n", r"empty.csv, line 3, column 'text': the text is empty"),
        ("text,label\nhi,a\nho,\n", r"empty.csv, line 3, column 'label': the label is missing"),
        ("text,label\n" + "x,a\n" * 5 + "y,b\n" * 2, r"class 'b' has 2 examples"),
        ("text,label\n" + "x,a\n" * 5, r"every row has the label 'a'"),
    ],
)
def test_bad_csv_names_file_row_and_column(tmp_path, content, message):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as info:
        load_file(path)
    assert info.value.exit_code == 2


def test_bad_jsonl_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\nnot json\n')
    with pytest.raises(DataFileError, match=r"d.jsonl, line 2: not valid JSON"):
        load_file(path)
    path.write_text('{"text": 3, "label": "x"}\n')
    with pytest.raises(DataFileError, match=r"line 1, column 'text': the text must be a string"):
        load_file(path)


def test_a_validation_label_unknown_to_training_is_refused(tmp_path):
    train = _csv(tmp_path / "train.csv")
    val = _csv(tmp_path / "val.csv", [("new text", "zzz")])
    with pytest.raises(DataFileError, match=r"val.csv, column label: 'zzz' never occur"):
        load_file(train, validation=val)


def test_missing_file_and_missing_pyarrow(tmp_path, monkeypatch):
    with pytest.raises(DataFileError, match="No such data file"):
        load_file(tmp_path / "nope.csv")
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(DataFileError, match=r"pip install 'leanml\[parquet\]'"):
        load_file(tmp_path / "d.parquet")


def test_read_texts_without_labels(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,hello there\n2,good bye\n")
    texts, labels = read_texts(path)
    assert texts == ["hello there", "good bye"] and labels is None
