"""The user's own labelled texts: CSV/TSV, JSON Lines, Parquet or one folder per class.

>>> from leanml.datasets import load_file
>>> ds = load_file("examples/tickets.csv")                      # columns "text" and "label"
>>> ds = load_file("train.jsonl", validation="val.jsonl", test="test.jsonl")

:func:`load_file` returns the same :class:`~leanml.datasets.Dataset` as the demo loaders: a
stratified 70 / 10 / 20 train / validation / test split with a fixed seed, or the explicit
validation and test files. Every row is checked before anything else happens; a problem raises
:class:`~leanml.errors.DataFileError` (exit code 2 on the command line) naming the file, the row
and the column:

* a missing column (the columns found are listed), an empty file;
* an empty text, a text that is not a string, a missing label;
* a class with fewer than 3 examples when the three-way split is made here (2 when only the
  test split is), or a label of a validation or test file that the training file lacks;
* bytes that are not UTF-8 (the byte offset is named) unless ``encoding`` is given.

:func:`read_labelled` reads the texts and labels of one file with the same checks (no split);
:func:`read_texts` the texts (and labels, when the column exists), for batch scoring.
"""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from leanml.datasets._base import Dataset
from leanml.datasets._readers import file_kind, read_rows
from leanml.errors import DataFileError

__all__ = ["MIN_PER_CLASS", "load_file", "read_labelled", "read_texts"]

#: The fewest examples per class for the stratified train / validation / test split.
MIN_PER_CLASS = 3
_TEST, _VAL = 0.2, 0.1
_PathLike = str | os.PathLike[str]


def read_texts(
    path: _PathLike,
    text_column: str = "text",
    label_column: str | None = "label",
    *,
    encoding: str | None = None,
    require_labels: bool = False,
) -> tuple[list[str], list[str] | None]:
    """The texts of ``path`` and its labels (``None`` when ``label_column`` is absent/None,
    unless ``require_labels``: then a missing label column is an error)."""
    file = Path(path)
    columns, rows = read_rows(file, encoding)
    if not rows:
        raise DataFileError(f"{file} holds no rows (an empty file, or a header only).")
    if file_kind(file) == "folder":
        text_column, label_column = "text", "label"
    _require_column(file, columns, text_column, "text_column")
    if require_labels and label_column is not None:
        _require_column(file, columns, label_column, "label_column")
    texts = [_text(file, where, record, text_column) for where, record in rows]
    if label_column is None or label_column not in columns:
        return texts, None
    labels = [_label(file, where, record, label_column) for where, record in rows]
    return texts, labels


def read_labelled(
    path: _PathLike,
    text_column: str = "text",
    label_column: str = "label",
    encoding: str | None = None,
) -> tuple[list[str], list[str]]:
    """The texts and labels of one file, every row checked (no split)."""
    texts, labels = read_texts(
        path, text_column, label_column, encoding=encoding, require_labels=True
    )
    return texts, labels or []


def _require_column(file: Path, columns: list[str], column: str, option: str) -> None:
    if column not in columns:
        flag = "--" + option.replace("_", "-")
        raise DataFileError(
            f"{file} has no column {column!r} (columns found: "
            f"{', '.join(repr(c) for c in columns) or 'none'}); name the right one with "
            f"{flag} ({option}= in Python)."
        )


def _text(file: Path, where: str, record: dict[str, Any], column: str) -> str:
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataFileError(f"{file}, {where}, column {column!r}: the text is empty.")
    if not isinstance(value, str):
        raise DataFileError(
            f"{file}, {where}, column {column!r}: the text must be a string, "
            f"got {type(value).__name__} {value!r}."
        )
    return value


def _label(file: Path, where: str, record: dict[str, Any], column: str) -> str:
    value = record.get(column)
    if isinstance(value, float) and math.isnan(value):
        value = None
    if value is None or not str(value).strip():
        raise DataFileError(f"{file}, {where}, column {column!r}: the label is missing.")
    if isinstance(value, dict | list):
        raise DataFileError(
            f"{file}, {where}, column {column!r}: the label must be a string or a number, "
            f"got {type(value).__name__}."
        )
    return str(value).strip()


def _check_class_sizes(file: Path, labels: list[str], needed: int, why: str) -> None:
    counts = collections.Counter(labels)
    small = sorted((n, label) for label, n in counts.items() if n < needed)
    if small:
        n, label = small[0]
        others = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
        raise DataFileError(
            f"{file}, column label: class {label!r} has {n} example{'s' * (n != 1)}{others}; "
            f"{why} needs at least {needed} per class: add examples, drop the class, or give "
            "--validation and --test files."
        )
    if len(counts) < 2:
        raise DataFileError(
            f"{file}: every row has the label {labels[0]!r}; a classifier needs at least 2 classes."
        )


def _check_known(file: Path, labels: list[str], known: set[str], train_file: Path) -> None:
    unknown = sorted(set(labels) - known)
    if unknown:
        raise DataFileError(
            f"{file}, column label: {', '.join(repr(u) for u in unknown[:5])} never occur in "
            f"the training file {train_file}; the model could not predict them."
        )


def _split(
    X: list[str], y: list[str], size: float, seed: int
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Stratified split taking ``size`` of the rows (at least one per class) aside."""
    n_classes = len(set(y))
    aside = min(len(y) - n_classes, max(n_classes, math.ceil(size * len(y))))
    X_keep, X_aside, y_keep, y_aside = train_test_split(
        X, y, test_size=aside, random_state=seed, stratify=y
    )
    return list(X_keep), list(y_keep), list(X_aside), list(y_aside)


def load_file(
    path: _PathLike,
    text_column: str = "text",
    label_column: str = "label",
    *,
    validation: _PathLike | None = None,
    test: _PathLike | None = None,
    encoding: str | None = None,
    seed: int = 0,
    task: str | None = None,
) -> Dataset:
    """A :class:`Dataset` from the user's file (or class folder); see the module docstring.

    Without ``validation`` and ``test``, ``path`` is split 70 / 10 / 20, stratified with
    ``seed``; a given file takes that split's place (the others come from ``path``).
    """
    file = Path(path)
    X, y = read_labelled(file, text_column, label_column, encoding)
    extra = {
        "validation": Path(validation) if validation is not None else None,
        "test": Path(test) if test is not None else None,
    }
    given = {
        split: read_labelled(p, text_column, label_column, encoding)
        for split, p in extra.items()
        if p is not None
    }
    missing = [s for s in ("validation", "test") if s not in given]
    if missing:
        why = f"the stratified {'train / ' + ' / '.join(missing)} split"
        _check_class_sizes(file, y, len(missing) + 1, why)
    else:
        _check_class_sizes(file, y, 1, "training")
    for split, (_, labels) in given.items():
        _check_known(extra[split] or file, labels, set(y), file)
    if "test" not in given:
        X, y, X_te, y_te = _split(X, y, _TEST, seed)
        given["test"] = (X_te, y_te)
    if "validation" not in given:
        X, y, X_va, y_va = _split(X, y, _VAL / (1 - _TEST), seed)
        given["validation"] = (X_va, y_va)
    (X_va, y_va), (X_te, y_te) = given["validation"], given["test"]
    sources = [str(file), *(f"{s}: {p}" for s, p in extra.items() if p is not None)]
    return Dataset(
        name=file.stem if file.is_file() else file.name,
        task=task or (file.stem if file.is_file() else file.name),
        X_train=X,
        y_train=np.asarray(y, dtype=str),
        X_val=X_va,
        y_val=np.asarray(y_va, dtype=str),
        X_test=X_te,
        y_test=np.asarray(y_te, dtype=str),
        source="; ".join(sources),
        license="the user's own data",
        citation="",
        notes="" if not missing else f"split stratified with seed {seed}",
    )
