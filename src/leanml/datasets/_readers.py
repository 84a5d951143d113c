"""Readers of the user's data files: rows of (where, record) from CSV/TSV, JSONL, Parquet, folders.

Each reader yields ``(where, record)`` pairs: ``where`` names the row as the user finds it in
the file ("line 7" of a CSV or JSONL file, "row 7" of a Parquet file, a path in a class folder)
and ``record`` maps column names to values. Text is decoded as UTF-8 (a leading BOM is dropped)
unless an ``encoding`` is given; bytes that are not valid UTF-8 are refused with their offset.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leanml.errors import DataFileError

Row = tuple[str, dict[str, Any]]

_PARQUET = (".parquet", ".pq")
_JSONL = (".jsonl", ".ndjson", ".json")
_FOLDER_LABEL = "label"
_FOLDER_TEXT = "text"


def decode(data: bytes, path: Path, encoding: str | None) -> str:
    """``data`` as text: UTF-8 (BOM dropped) unless ``encoding`` says otherwise."""
    if encoding is not None:
        try:
            return data.decode(encoding)
        except LookupError:
            raise DataFileError(f"Unknown encoding {encoding!r} given for {path}.") from None
        except UnicodeDecodeError as exc:
            raise DataFileError(
                f"{path} is not valid {encoding}: byte offset {exc.start} "
                f"({data[exc.start : exc.start + 4]!r})."
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise DataFileError(
            f"{path} is not valid UTF-8: byte offset {offset} "
            f"({data[offset : offset + 4]!r}); give its encoding (--encoding cp1252, say, or "
            "encoding= in Python) to read it."
        ) from None


def file_kind(path: Path) -> str:
    """One of "folder", "parquet", "jsonl" or "csv" (the default; delimiter sniffed)."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in _PARQUET:
        return "parquet"
    if suffix in _JSONL:
        return "jsonl"
    return "csv"


def read_rows(path: Path, encoding: str | None) -> tuple[list[str], list[Row]]:
    """The columns found and every row of ``path`` (any supported kind)."""
    if not path.exists():
        raise DataFileError(f"No such data file or folder: {path}.")
    kind = file_kind(path)
    if kind == "folder":
        return [_FOLDER_TEXT, _FOLDER_LABEL], list(_folder_rows(path, encoding))
    if kind == "parquet":
        return _parquet_rows(path)
    text = decode(path.read_bytes(), path, encoding)
    if kind == "jsonl":
        return _jsonl_rows(path, text)
    return _csv_rows(path, text)


def _csv_rows(path: Path, text: str) -> tuple[list[str], list[Row]]:
    if not text.strip():
        return [], []
    dialect: Any
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = [h.strip() for h in next(reader)]
        rows: list[Row] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            where = f"line {reader.line_num}"
            if len(values) != len(header):
                raise DataFileError(
                    f"{path}, {where}: {len(values)} fields, but the header has {len(header)} "
                    f"({', '.join(header)}); quote texts that hold the delimiter "
                    f"{dialect.delimiter!r}."
                )
            rows.append((where, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise DataFileError(f"{path}, line {reader.line_num}: not valid CSV: {exc}.") from None
    return header, rows


def _jsonl_rows(path: Path, text: str) -> tuple[list[str], list[Row]]:
    columns: dict[str, None] = {}
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path}, line {number}: not valid JSON: {exc.msg}.") from None
        if not isinstance(record, dict):
            raise DataFileError(
                f"{path}, line {number}: each line must be a JSON object, "
                f"got {type(record).__name__}."
            )
        columns.update(dict.fromkeys(record))
        rows.append((f"line {number}", record))
    return list(columns), rows


def _parquet_rows(path: Path) -> tuple[list[str], list[Row]]:
    try:
        import pyarrow.parquet as pq  # optional: the 'parquet' extra
    except ImportError:
        raise DataFileError(
            f"Reading {path} needs pyarrow, which is not installed: pip install 'leanml[parquet]'."
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError
        raise DataFileError(f"{path} is not a readable Parquet file: {exc}") from None
    columns = list(table.column_names)
    data = table.to_pydict()
    rows = [(f"row {i + 1}", {c: data[c][i] for c in columns}) for i in range(table.num_rows)]
    return columns, rows


def _folder_rows(path: Path, encoding: str | None) -> Iterator[Row]:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in classes:
        for file in sorted(folder.glob("*.txt")):
            text = decode(file.read_bytes(), file, encoding)
            yield str(file), {_FOLDER_TEXT: text, _FOLDER_LABEL: folder.name}
