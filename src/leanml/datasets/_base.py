"""The Dataset record and the split helper shared by every loader."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of a text classification dataset.

    ``X_*`` are lists of texts and ``y_*`` numpy arrays of string labels. ``source`` says which
    copy was read (a path, or "bundled"), ``license`` and ``citation`` are shown to the user.
    """

    name: str
    task: str
    X_train: list[str]
    y_train: np.ndarray
    X_val: list[str]
    y_val: np.ndarray
    X_test: list[str]
    y_test: np.ndarray
    source: str
    license: str
    citation: str
    notes: str = ""

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.y_train.tolist()) | set(self.y_val.tolist()))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "classes": len(self.classes),
            "train": len(self.X_train),
            "val": len(self.X_val),
            "test": len(self.X_test),
            "source": self.source,
            "license": self.license,
        }


def split_dataset(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    name: str,
    task: str,
    seed: int,
    source: str,
    license: str,
    citation: str,
    notes: str = "",
) -> Dataset:
    """A :class:`Dataset` from all rows, split stratified 70 / 10 / 20 with ``seed``."""
    X_tr, y_tr, X_va, y_va, X_te, y_te = stratified_splits(texts, labels, seed=seed)
    return Dataset(
        name=name,
        task=task,
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_va,
        y_val=y_va,
        X_test=X_te,
        y_test=y_te,
        source=source,
        license=license,
        citation=citation,
        notes=notes,
    )


def stratified_splits(
    X: Sequence[str],
    y: Sequence[str],
    *,
    seed: int,
    test_size: float = 0.2,
    val_size: float = 0.1,
) -> tuple[list[str], np.ndarray, list[str], np.ndarray, list[str], np.ndarray]:
    """Stratified train / val / test split; ``test_size`` and ``val_size`` are fractions of all."""
    X_arr = np.asarray(X, dtype=object)
    y_arr = np.asarray(y, dtype=str)
    X_rest, X_test, y_rest, y_test = train_test_split(
        X_arr, y_arr, test_size=test_size, random_state=seed, stratify=y_arr
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=val_size / (1.0 - test_size),
        random_state=seed,
        stratify=y_rest,
    )
    return list(X_train), y_train, list(X_val), y_val, list(X_test), y_test
