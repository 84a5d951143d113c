from __future__ import annotations

import numpy as np
import pytest

from leanml.errors import ParameterError
from leanml.monitor.join import PendingJoin


def _ins(pj: PendingJoin, ids: list[str], ts: float, pred: int = 0) -> None:
    n = len(ids)
    pj.insert(ids, np.full(n, pred, np.int32), np.full(n, 0.9), np.full(n, ts))


def _join(pj: PendingJoin, ids: list[str], labels: list[int] | None = None, ts: float = 0.0):
    labels = labels if labels is not None else [0] * len(ids)
    return pj.join(ids, labels, np.full(len(ids), ts))


def test_out_of_order_late_duplicate_unknown_stream() -> None:
    pj = PendingJoin(max_entries=5, max_age_s=100.0, late_memory=3)
    _ins(pj, ["a", "b", "c"], ts=0.0, pred=1)
    # out of order, with a duplicate and an unknown id
    res = _join(pj, ["c", "a", "c", "zzz"], [1, 0, 1, 2], ts=1.0)
    assert res.ids == ["c", "a"] and res.true_labels == [1, 0]
    assert res.predicted.tolist() == [1, 1]
    c = pj.counters
    assert (c["joined"], c["duplicate"], c["unknown"], c["late"]) == (2, 1, 1, 0)
    assert len(pj) == 1  # b still pending
    # capacity eviction: 4 more predictions into 5 slots push out a (labeled) and b (unlabeled)
    _ins(pj, ["d", "e", "f", "g"], ts=2.0)
    assert c["evicted_capacity"] == 1
    res = _join(pj, ["b"], ts=3.0)  # its prediction was evicted unlabeled: late
    assert len(res) == 0 and c["late"] == 1
    res = _join(pj, ["a"], ts=3.0)  # evicted after being joined: no longer known
    assert c["unknown"] == 2
    # age eviction
    assert pj.expire(now=50.0) == 0
    _ins(pj, ["h"], ts=60.0)
    assert pj.expire(now=150.0) == 4  # d e f g unlabeled, older than 100 s
    assert c["evicted_age"] == 4
    assert len(pj) == 1
    res = _join(pj, ["d", "h", "h"], ts=151.0)
    assert res.ids == ["h"]
    assert (c["late"], c["joined"], c["duplicate"]) == (2, 3, 2)
    # late memory is bounded: b d e f g were remembered, only 3 are kept
    assert pj.stats()["late_remembered"] == 3
    assert c["late_forgotten"] == 2
    res = _join(pj, ["b"], ts=152.0)
    assert c["unknown"] == 3
    total_gt = c["joined"] + c["duplicate"] + c["late"] + c["unknown"]
    assert total_gt == 4 + 1 + 1 + 3 + 1  # every label landed in exactly one counter
    assert (c["joined"], c["duplicate"], c["late"], c["unknown"]) == (3, 2, 2, 3)


def test_batch_larger_than_capacity_and_wraparound() -> None:
    pj = PendingJoin(max_entries=4, late_memory=10)
    _ins(pj, [f"id{i}" for i in range(10)], ts=0.0)
    assert pj.counters["evicted_capacity"] == 6
    assert len(pj) == 4
    _ins(pj, ["x", "y", "z"], ts=1.0)  # wraps around the ring
    res = _join(pj, ["id9", "x", "z", "id0"])
    assert res.ids == ["id9", "x", "z"]
    assert pj.counters["late"] == 1
    assert pj.counters["evicted_capacity"] == 9


def test_duplicate_prediction_ids_are_counted_and_latest_wins() -> None:
    pj = PendingJoin(max_entries=10)
    _ins(pj, ["a", "b"], ts=0.0, pred=1)
    _ins(pj, ["a"], ts=1.0, pred=2)
    assert pj.counters["duplicate_prediction_ids"] == 1
    assert len(pj) == 2
    res = _join(pj, ["a"])
    assert res.predicted.tolist() == [2]
    _ins(pj, [f"n{i}" for i in range(9)], ts=2.0)  # overwrite the old slots safely
    assert pj.counters["joined"] == 1


def test_resize_keeps_newest() -> None:
    pj = PendingJoin(max_entries=10)
    _ins(pj, [f"i{i}" for i in range(8)], ts=0.0)
    _join(pj, ["i7"])
    pj.resize(4, 50.0, 10)
    assert pj.max_entries == 4
    assert len(pj) == 3  # i4 i5 i6 unlabeled, i7 labeled
    assert pj.counters["evicted_capacity"] == 4
    res = _join(pj, ["i6", "i7", "i0"])
    assert res.ids == ["i6"]
    assert pj.counters["duplicate"] == 1 and pj.counters["late"] == 1


def test_validation() -> None:
    with pytest.raises(ParameterError, match="'max_entries' parameter of PendingJoin"):
        PendingJoin(max_entries=0)
