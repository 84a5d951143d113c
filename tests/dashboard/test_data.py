"""What the report reads from a real store: windows merged over processes, drift scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leanml.dashboard.data import batch_figures, collect, collect_windows
from leanml.monitor import DRIFT_SCORES, DriftDetector, MonitorStore, Reference
from leanml.monitor.window import Window

T0 = 1_800_000_000.0
REFERENCE = Reference.from_dict(
    {
        "class_counts": {"ham": 80, "spam": 20},
        "confidences": np.linspace(0.6, 1.0, 50).tolist(),
        "input_lengths": list(range(20, 70)),
        "oov_rate": 0.05,
    }
)


def _window(count: int, oov: float, spam_share: float) -> Window:
    """A closed one-minute window of ``count`` predictions, scored as the monitor scores it."""
    w = Window(T0, 60.0, 0.01, 256)
    labels = (np.arange(count) < spam_share * count).astype(np.int64)  # 1 = spam
    w.add(labels, np.full(count, 0.8), np.full(count, 0.001), 2)
    counts = {"ham": int((labels == 0).sum()), "spam": int(labels.sum())}
    w.drift = DriftDetector(REFERENCE).score(
        counts, np.full(count, 0.8), np.full(count, 40.0), np.full(count, oov)
    )
    return w


def _store(tmp_path: Path) -> MonitorStore:
    """Two processes served one window: 100 predictions at OOV 0.15, 300 at OOV 0.35."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for process, count, oov in (("a", 100, 0.15), ("b", 300, 0.35)):
        row = _window(count, oov, 0.5).row("email", "1", "original", ["ham", "spam"], T0 + 60)
        MonitorStore(url, process_id=process).write(snapshots=[row])
    return MonitorStore(url)


def test_window_drift_is_every_drift_score_weighted_by_predictions(tmp_path: Path) -> None:
    store = _store(tmp_path)
    stored = json.loads(store.read_snapshots()[0]["drift"])
    assert {"oov_rate", "oov_delta"} <= set(stored)  # the store carries the rate and the score
    (w,) = collect_windows(store, since=T0, until=T0 + 120)["email"].windows
    assert w.count == 400
    assert set(w.drift) == set(DRIFT_SCORES)  # the scores, not the raw rate beside them
    # the OOV delta against the reference's 0.05: (100 * 0.10 + 300 * 0.30) / 400
    assert w.drift["oov_delta"] == pytest.approx(0.25)


def test_collect_reads_the_same_windows(tmp_path: Path) -> None:
    store = _store(tmp_path)
    only = collect_windows(store, since=T0, until=T0 + 120)["email"]
    full = collect(store, since=T0, until=T0 + 120).models["email"]
    assert full.windows == only.windows and full.count == only.count == 400
    assert full.processes == ["a", "b"]


def test_collect_windows_is_empty_outside_the_range(tmp_path: Path) -> None:
    assert collect_windows(_store(tmp_path), since=T0 + 600, until=T0 + 900) == {}


def test_batch_figures_from_raw_sizes() -> None:
    figures = batch_figures({"batch_sizes": {"4": 1, "1": 3}})
    assert figures == {
        "sizes": {"1": 3, "4": 1},
        "mean": pytest.approx(7 / 4),
        "queue_wait_p99_s": None,
    }
