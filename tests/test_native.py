"""leanml._native: the C id minting, ring put and record, against Python references."""

from __future__ import annotations

import collections
import hashlib
import threading

import numpy as np
import pytest

from leanml._native import Recorder
from leanml.groundtruth import GroundTruth, IdIssuer, PendingRing


def _reference_id(prefix: str, key: bytes, counter: int) -> str:
    """The id as the module docstring of leanml.groundtruth.ids defines it, in Python."""
    mac = hashlib.blake2b(f"{prefix}-{counter >> 3:x}".encode(), key=key, digest_size=64)
    slot = counter & 7
    return f"{prefix}-{counter:x}-{mac.hexdigest()[16 * slot : 16 * slot + 16]}"


@pytest.mark.parametrize("prefix", ["a", "3f9c01d2", "x" * 32])
def test_minted_ids_are_the_keyed_blake2b_tags(prefix: str) -> None:
    key = bytes(range(32))
    issuer = IdIssuer(prefix, key)
    counters = [0, 1, 7, 8, 9, 15, 16, 255, 4096, 2**40 + 3, 2**63 - 1]
    for c in counters:  # make uses its block cache, expected never does: both agree
        assert issuer.make(c) == issuer.expected(c) == _reference_id(prefix, key, c)
    assert issuer.take(5, 20) == [_reference_id(prefix, key, c) for c in range(5, 25)]
    assert issuer.take(3, 0) == []


@pytest.mark.parametrize("prefix", ["é", "x" * 33])
def test_a_prefix_the_c_buffer_cannot_hold_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        IdIssuer(prefix)
    issuer = IdIssuer("ok")
    with pytest.raises(ValueError, match="32 ASCII"):
        issuer.prefix = prefix
    assert issuer.prefix == "ok"


def test_a_counter_beyond_the_c_range_does_not_verify() -> None:
    issuer = IdIssuer("p")
    assert issuer.verify(f"p-{2**63:x}-{'0' * 16}") == -1
    assert issuer.verify(issuer.make(2**63 - 1)) == 2**63 - 1


def test_put_writes_every_slot_from_arrays_lists_or_one_value() -> None:
    ring = PendingRing(8, 100.0, lambda: 50.0)
    assert ring.put(3, 2, [4, 5, 6], np.array([0.1, 0.2, 0.3])) == 0
    assert ring.put(2, 1, np.array([7, 8], dtype=np.int32), 0.5) == 3
    assert ring.put(1, 0, [9], [0.75]) == 5  # one prediction: the one-slot put
    assert ring.issued == 6
    got = [ring.take(c) for c in range(6)]
    assert [(code, pred, conf) for code, pred, conf, _ in got] == [
        (2, 4, 0.1),
        (2, 5, 0.2),
        (2, 6, 0.3),
        (1, 7, 0.5),
        (1, 8, 0.5),
        (0, 9, 0.75),
    ]
    with pytest.raises(ValueError, match="one value or 4"):
        ring.put(4, 0, [1, 2, 3], 0.5)
    assert ring.issued == 6  # nothing reserved by a refused put


def test_issue_one_and_issue_from_many_threads_never_share_a_counter() -> None:
    gt = GroundTruth(capacity=1_000)
    ids: list[list[str]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        for i in range(2_000):
            if (i + k) % 3:
                ids[k].append(gt.issue_one(k, i % 5, 0.5))
            else:
                ids[k].extend(gt.issue(3, k, i % 5, 0.5))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [pid for part in ids for pid in part]
    assert len(set(every)) == len(every) == gt.ring.issued
    assert sorted(gt.issuer.verify(pid) for pid in every) == list(range(len(every)))
    # the ring held 1,000 of them: the rest left it unlabeled, each counted once
    assert gt.ring.counters["evicted_capacity"] == len(every) - 1_000


def test_the_recorder_appends_until_its_cap_then_drops() -> None:
    buf: collections.deque[tuple] = collections.deque()
    dropped: list[tuple[str, int]] = []
    rec = Recorder(buf, 2, lambda: 12.5, lambda which, n: dropped.append((which, n)))
    rec.record("a", "ham", 0.9, 0.001)
    rec.record("b", "spam", 0.6, 0.002, input="hi", tokens=1, known=1)
    rec.record("c", "ham", 0.7, 0.003)
    assert list(buf) == [
        ("a", "ham", 0.9, 0.001, None, 12.5, -1, 0),
        ("b", "spam", 0.6, 0.002, "hi", 12.5, 1, 1),
    ]
    assert dropped == [("record_buffer", 1)]
    rec.cap = 3
    rec.record("c", "ham", 0.7, 0.003)
    assert len(buf) == 3 and dropped == [("record_buffer", 1)]
