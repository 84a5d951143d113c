"""The machinery of benchmarks/store_capacity.py on SQLite, with tiny durations (no timings)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def capacity(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the writer processes import it by name
    return importlib.import_module("store_capacity")


def test_committed_rows_equal_what_the_monitors_wrote(capacity, tmp_path) -> None:
    texts = capacity.load_texts("synthetic", 200)
    res = capacity.run_config(
        f"sqlite:///{tmp_path}/store.db",
        2,
        0.3,
        texts=texts,
        overrides={"detail_buffer_size": 500},  # small: both drops and early writes happen
    )
    assert res["backend"] == "sqlite" and res["writers"] == 2
    assert res["store_errors"] == 0
    assert res["committed_rows"] > 0
    # rows counted in the table = sampled minus dropped detail rows, by the monitors' counters
    assert res["committed_rows"] == res["written_rows"]
    assert res["sampled"] >= res["committed_rows"] + res["drops"].get("detail_buffer", 0)
    assert res["store_write"]["count"] >= 2  # every writer wrote at least once (its close)
    assert res["offered_per_s"] > 0 and "pg_backends_cores" not in res["cpu"]


def test_texts_are_redactable_and_unknown_kinds_refused(capacity) -> None:
    texts = capacity.load_texts("synthetic", 3)
    assert len(texts) == 3 and "@example.com" in texts[0]
    with pytest.raises(ValueError, match="unknown --texts"):
        capacity.load_texts("poems")


def test_every_acknowledged_label_is_committed(capacity, tmp_path) -> None:
    res = capacity.run_feedback(f"sqlite:///{tmp_path}/store.db", 1, 0.3, threads=2)
    assert res["errors"] == 0 and res["acknowledged"] > 0
    assert res["committed_labels"] == res["acknowledged"]
