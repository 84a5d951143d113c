"""Rows written as a data file that :func:`leanml.datasets.load_file` reads back.

The kind follows the suffix: ``.csv``, ``.tsv``, ``.jsonl`` or ``.parquet`` (through pyarrow, the
optional ``parquet`` extra). :func:`check_output` refuses, before any work is done, a suffix it
cannot write, Parquet without pyarrow and a place that cannot be written (exit code 2 on the
command line); :func:`write_rows` writes a temporary file beside the target and renames it into
place, so a reader never sees half a file and a failure leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from leanml.errors import ParameterError

OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def check_output(path: Path, command: str, option: str) -> None:
    """Raise :class:`ParameterError` (naming ``option`` of ``command``) unless a file can be
    written to ``path`` (see module docstring); creates the missing parent folders."""
    name = option.lstrip("-").replace("-", "_")
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ParameterError(
            f"The {name!r} parameter of {command} must end with one of "
            f"{', '.join(OUTPUT_SUFFIXES)}, got {str(path)!r} instead.",
            param=option,
        )
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (optional: the 'parquet' extra)
        except ImportError:
            raise ParameterError(
                f"Writing Parquet ({path}) needs pyarrow, which is not installed: "
                "pip install 'leanml[parquet]', or write a .csv file.",
                param=option,
            ) from None
    if path.is_dir():
        raise ParameterError(f"Cannot write {path}: it is a folder ({option}).", param=option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise ParameterError(
            f"Cannot write {path} ({option}): {exc.strerror or exc}.", param=option
        ) from None


def write_rows(
    path: Path,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    keep_empty: bool = True,
) -> int:
    """Write ``columns`` of ``rows`` to ``path`` (kind by suffix; missing values empty/null) and
    return how many rows were written. ``rows`` may be an iterator: CSV, TSV and JSON Lines are
    written as it yields (Parquet gathers them first). Without ``keep_empty``, no rows leave
    ``path`` untouched (no file, or the old one)."""
    path = Path(path)
    count = 0

    def counted() -> Iterator[Mapping[str, Any]]:
        nonlocal count
        for r in rows:
            count += 1
            yield r

    suffix = path.suffix.lower()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(tmp_name)
    try:
        if suffix == ".parquet":
            os.close(fd)
            import pyarrow as pa  # optional: checked by check_output
            import pyarrow.parquet as pq

            data = list(counted())
            pq.write_table(pa.table({c: [r.get(c) for r in data] for c in columns}), tmp)
        else:
            with open(fd, "w", newline="", encoding="utf-8") as fh:
                if suffix == ".jsonl":
                    for r in counted():
                        record = {c: r.get(c) for c in columns}
                        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    delimiter = "\t" if suffix == ".tsv" else ","
                    writer = csv.DictWriter(fh, columns, delimiter=delimiter, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(counted())
        if not count and not keep_empty:
            return 0
        # mkstemp's file is private (0600): give the new file the old one's mode, else 0644
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
        return count
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
