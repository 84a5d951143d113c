"""Windowed metrics checked against scikit-learn at every step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from leanml.monitor.metrics import CountWindow, TimeWindow, metrics_from_confusion


def _check(got: dict, t: list[int], p: list[int]) -> None:
    with warnings.catch_warnings():  # sklearn warns on single-label inputs; the values stand
        warnings.simplefilter("ignore", UserWarning)
        _compare(got, t, p)


def _compare(got: dict, t: list[int], p: list[int]) -> None:
    assert got["n"] == len(t)
    if not t:
        assert got["accuracy"] is None
        return
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(t, p, average="macro", zero_division=0))
    labels = sorted(set(t) | set(p))
    prec, rec, _, _ = skm.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    assert [got["precision"][k] for k in labels] == pytest.approx(prec.tolist())
    assert [got["recall"][k] for k in labels] == pytest.approx(rec.tolist())
    assert got["confusion"]["labels"] == labels
    assert got["confusion"]["matrix"] == skm.confusion_matrix(t, p, labels=labels).tolist()


def test_count_window_matches_sklearn_at_every_step() -> None:
    rng = np.random.default_rng(0)
    size = 50
    w = CountWindow(size)
    seen_t: list[int] = []
    seen_p: list[int] = []
    for step in range(400):
        n = int(rng.integers(1, 8)) if step % 7 else 1
        t = rng.integers(0, 5, n)
        p = np.where(rng.random(n) < 0.7, t, rng.integers(0, 6, n))
        w.update(t, p)
        seen_t += t.tolist()
        seen_p += p.tolist()
        _check(w.get(), seen_t[-size:], seen_p[-size:])


def test_count_window_batch_larger_than_window() -> None:
    w = CountWindow(5)
    w.update(np.arange(12) % 3, np.zeros(12, dtype=int))
    _check(w.get(), (np.arange(12) % 3)[-5:].tolist(), [0] * 5)


def test_time_window_matches_sklearn_at_every_step() -> None:
    rng = np.random.default_rng(1)
    w = TimeWindow(seconds=30.0)
    items: list[tuple[float, int, int]] = []
    now = 0.0
    for _ in range(300):
        now += float(rng.exponential(1.0))
        n = int(rng.integers(1, 4))
        t = rng.integers(0, 4, n)
        p = np.where(rng.random(n) < 0.8, t, rng.integers(0, 4, n))
        w.update(t, p, np.full(n, now))
        items += [(now, int(a), int(b)) for a, b in zip(t, p, strict=True)]
        w.expire(now)
        live = [(a, b) for ts, a, b in items if ts >= now - 30.0]
        _check(w.get(), [a for a, _ in live], [b for _, b in live])


def test_time_window_max_items_evicts_and_counts() -> None:
    w = TimeWindow(seconds=1e6, max_items=10)
    w.update(np.zeros(15, dtype=int), np.zeros(15, dtype=int), np.arange(15.0))
    assert w.n == 10 and w.evicted == 5


def test_labels_are_named() -> None:
    w = CountWindow(10)
    w.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    got = w.get(["ham", "spam"])
    assert got["precision"] == {"ham": 0.5, "spam": 1.0}
    assert got["confusion"] == {"labels": ["ham", "spam"], "matrix": [[1, 0], [1, 1]]}
    assert metrics_from_confusion(np.zeros((2, 2)))["accuracy"] is None


@pytest.mark.parametrize("seed", range(30))
def test_count_window_random_streams(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 20))
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, 5, (int(rng.integers(1, 60)), 2))]
    w = CountWindow(size)
    for a, b in pairs:
        w.update(np.array([a]), np.array([b]))
    tail = pairs[-size:]
    _check(w.get(), [a for a, _ in tail], [b for _, b in tail])
