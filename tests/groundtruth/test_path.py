from __future__ import annotations

import threading

import numpy as np
import pytest

from leanml.groundtruth import GroundTruth, PendingRing


def test_ring_statuses_and_evictions(clock) -> None:
    ring = PendingRing(4, 100.0, clock)
    assert ring.put(1, 0) == 0
    assert ring.status(0) == ("pending", 0)
    ring.take(0)
    assert ring.status(0)[0] == "duplicate"
    assert ring.status(5)[0] == "never_seen"
    assert ring.put(6, 1) == 1  # wraps: counters 1 and 2 leave unlabeled (0 was labeled)
    assert ring.counters == {"evicted_capacity": 2, "evicted_age": 0}
    assert ring.status(6) == ("pending", 1)
    assert ring.status(1)[0] == "evicted" and ring.status(3)[0] == "pending"
    ring.take(6)
    clock.t += 101
    assert ring.status(5)[0] == "expired" and ring.status(6)[0] == "duplicate"
    assert ring.expired() == 3 and ring.pending() == 0
    ring.put(2, 0)  # reuses two expired slots: counted by age
    assert ring.counters == {"evicted_capacity": 2, "evicted_age": 2}


def test_ring_keeps_each_prediction_for_the_join(clock) -> None:
    ring = PendingRing(5, 100.0, clock)
    ring.put(1, 0, 2, 0.9)
    clock.t += 10
    ring.put(6, 1, np.array([0, 1, 2, 0, 1, 2]), np.linspace(0.4, 0.9, 6))  # wraps the ring
    assert ring.status(1)[0] == "evicted"
    for counter, want in zip(range(2, 7), (1, 2, 0, 1, 2), strict=True):
        code, pred, conf, ts = ring.take(counter)
        assert (code, pred, ts) == (1, want, clock.t)
        assert conf == pytest.approx(0.4 + 0.1 * (counter - 1))
        ring.give_back(counter)
    assert ring.pending(1) == 5 and ring.pending(0) == 0


def test_join_outcomes_and_forged_ids_leave_the_ring_alone(clock) -> None:
    gt = GroundTruth(100, 60.0, clock=clock)
    ids = gt.issue(3, 2, [0, 1, 0], [0.9, 0.8, 0.7])
    prefix, counter, tag = ids[1].split("-")
    forged = [
        f"{prefix}-{counter}-{'f' * 16}",
        f"{prefix}-{int(counter, 16) + 1:x}-{tag}",
        f"{prefix}-{int(counter, 16) + 50:x}-{tag}",  # not issued yet, wrong tag too
    ]
    statuses, joined = gt.join([(f, "x") for f in forged])
    assert statuses == ["never_seen"] * 3 and joined == []
    assert gt.counters["refused"] == 3
    assert gt.lookup(ids[1])[0] == "pending" and gt.lookup(ids[2])[0] == "pending"
    assert gt.pending(2) == 3  # nothing was marked by the forged ids
    statuses, joined = gt.join([(ids[1], "b"), (ids[1], "b"), ("zz-1-" + tag, "c")])
    assert statuses == ["joined", "duplicate", "foreign"]
    (j,) = joined
    assert (j.id, j.label, j.code, j.pred, j.confidence, j.pred_ts) == (
        ids[1],
        "b",
        2,
        1,
        0.8,
        clock.t,
    )
    gt.give_back(joined)  # the label could not be stored: the prediction is joinable again
    assert gt.join([(ids[1], "b")])[0] == ["joined"]
    s = gt.stats()
    assert (s["joined"], s["duplicate"], s["foreign"], s["never_seen"], s["refused"]) == (
        1,
        1,
        1,
        3,
        3,
    )
    assert (s["issued"], s["pending"]) == (3, 2)
    assert not any(isinstance(v, str) for v in s.values())  # no prefix, no secret


def test_issue_from_many_threads_gives_unique_joinable_ids(clock) -> None:
    gt = GroundTruth(100_000, clock=clock)
    out: list[list[str]] = []

    def work() -> None:
        got = []
        for i in range(500):
            got += gt.issue(1 + i % 3, 0, 1, 0.5)
        out.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for chunk in out for i in chunk]
    assert len(ids) == len(set(ids)) == 4 * sum(1 + i % 3 for i in range(500))
    statuses, joined = gt.join([(i, "x") for i in ids])
    assert statuses == ["joined"] * len(ids) and {j.pred for j in joined} == {1}


def test_issue_one_is_issue_of_one(clock) -> None:
    """The single-prediction fast path gives the same ids, ring entries and eviction counts
    as ``issue(1, ...)`` (a ring of 3: slots are reused, by capacity and by age)."""
    a = GroundTruth(3, 50.0, prefix="p", secret=b"k" * 32, clock=clock)
    b = GroundTruth(3, 50.0, prefix="p", secret=b"k" * 32, clock=clock)
    ids_a, ids_b = [], []
    for i in range(20):
        if i == 9:
            clock.t += 60  # the pending ones expire: reusing their slots counts by age
        ids_a.append(a.issue(1, i % 2, i % 5, i / 20)[0])
        ids_b.append(b.issue_one(i % 2, i % 5, i / 20))
        if i % 4 == 0:  # some are labeled before their slot is reused
            assert a.join([(ids_a[-1], "x")])[0] == b.join([(ids_b[-1], "x")])[0] == ["joined"]
    assert ids_a == ids_b
    assert a.ring.counters == b.ring.counters
    assert a.ring.counters["evicted_capacity"] > 0 and a.ring.counters["evicted_age"] > 0
    for col in ("_ts", "_state", "_code", "_pred", "_conf"):
        np.testing.assert_array_equal(getattr(a.ring, col), getattr(b.ring, col))
    assert a.join([(ids_a[-1], "y")])[1][0].pred == b.join([(ids_b[-1], "y")])[1][0].pred == 4


def test_issue_one_with_time_time_skips_the_lock_and_matches_issue() -> None:
    """With ``time.time`` as the clock, ``issue_one`` puts without taking the lock (no thread
    holds it): the same ids and ring entries as ``issue(1, ...)`` under the lock."""
    a = GroundTruth(3, 50.0, prefix="p", secret=b"k" * 32)
    b = GroundTruth(3, 50.0, prefix="p", secret=b"k" * 32)
    ids_a = [a.issue(1, i % 2, i % 5, i / 20)[0] for i in range(10)]
    ids_b = [b.issue_one(i % 2, i % 5, i / 20) for i in range(10)]
    assert ids_a == ids_b and not b.lock.held
    assert a.ring.counters == b.ring.counters and b.ring.counters["evicted_capacity"] == 7
    for col in ("_state", "_code", "_pred", "_conf"):
        np.testing.assert_array_equal(getattr(a.ring, col), getattr(b.ring, col))
    assert a.join([(ids_a[-1], "x")])[1][0].pred == b.join([(ids_b[-1], "x")])[1][0].pred == 4


@pytest.mark.parametrize("clocked", ["time.time", "fake"])
def test_issue_one_waits_while_another_thread_holds_the_lock(clocked: str, clock) -> None:
    gt = GroundTruth(100) if clocked == "time.time" else GroundTruth(100, clock=clock)
    got: list[str] = []
    with gt.lock:  # as join does: the ring is being read
        assert gt.lock.held and gt.lock.locked()
        t = threading.Thread(target=lambda: got.append(gt.issue_one(0, 1, 0.5)))
        t.start()
        t.join(0.3)
        assert t.is_alive() and got == [] and gt.ring.issued == 0
    t.join()
    assert len(got) == 1 and gt.lookup(got[0])[0] == "pending" and not gt.lock.held


def test_the_ring_lock_is_a_lock() -> None:
    gt = GroundTruth(10)
    lock = gt.lock
    with pytest.raises(RuntimeError, match="unlocked"):
        lock.release()
    assert lock.acquire() is True
    order: list[str] = []
    t = threading.Thread(target=lambda: (lock.acquire(), order.append("other"), lock.release()))
    t.start()
    t.join(0.2)
    order.append("owner")
    lock.release()
    t.join()
    assert order == ["owner", "other"] and not lock.held


def test_issue_one_and_joins_from_many_threads_keep_every_id() -> None:
    """Single ids issued without the lock while other threads join under it: every id is
    unique and joins once."""
    gt = GroundTruth(1_000_000)
    issued: list[list[str]] = [[] for _ in range(3)]
    joined: list[int] = []
    done = threading.Event()

    def issue(k: int) -> None:
        for i in range(3000):
            issued[k].append(gt.issue_one(0, i % 7, 0.5))

    def join() -> None:
        pos = [0, 0, 0]  # how many of each thread's ids were joined
        while not done.is_set() or any(len(x) > p for x, p in zip(issued, pos, strict=True)):
            batch = []
            for k, x in enumerate(issued):
                new = x[pos[k] : pos[k] + 50]
                pos[k] += len(new)
                batch += [(i, "y") for i in new]
            joined.extend(1 for s in gt.join(batch)[0] if s == "joined")

    workers = [threading.Thread(target=issue, args=(k,)) for k in range(3)]
    joiner = threading.Thread(target=join)
    for t in (*workers, joiner):
        t.start()
    for t in workers:
        t.join()
    done.set()
    joiner.join()
    ids = [i for x in issued for i in x]
    assert len(ids) == len(set(ids)) == 9000 == gt.ring.issued
    assert len(joined) == 9000
    assert gt.join([(i, "z") for i in ids[:10]])[0] == ["duplicate"] * 10
