"""PendingRing: the one pending-join table, a ring indexed by the id's counter.

Slot ``counter % capacity`` holds one prediction's time, class index, confidence, monitor code
and state (pending / labeled) in numpy arrays: no id string and no dict entry lives on after
the answer, so 100k pending predictions cost about 2.3 MB and nothing for the garbage collector.

Because ids are counters, the ring can say why an id cannot be joined without remembering it:
``never_seen`` (not issued yet), ``evicted`` (``capacity`` newer predictions since),
``expired`` (older than ``max_age_s``) or ``duplicate`` (labeled already). What leaves the ring
unlabeled is counted when its slot is reused (``evicted_capacity`` / ``evicted_age``): never
silent. Not thread-safe: :class:`~leanml.groundtruth.path.GroundTruth` holds a lock around it.
"""

from __future__ import annotations

import array
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from leanml._validation import check_number

__all__ = ["PendingRing"]

_PENDING, _LABELED = 1, 2
_MANY = (list, tuple, np.ndarray)


def _column(code: str, dtype: Any, n: int) -> tuple[array.array[Any], np.ndarray]:
    """``n`` zeros as an array.array and a writable numpy view of the same memory."""
    a = array.array(code, bytes(n * array.array(code).itemsize))
    return a, np.frombuffer(a, dtype=dtype)


class PendingRing:
    """See module docstring."""

    def __init__(
        self,
        capacity: int = 100_000,
        max_age_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_number(capacity, "capacity", "PendingRing", low=1, integer=True)
        check_number(max_age_s, "max_age_s", "PendingRing", low=0, low_open=True)
        self.capacity = int(capacity)
        self.max_age_s = float(max_age_s)
        self.clock = clock
        self.issued = 0
        # each column is an array.array (item access ~3x faster than a numpy scalar's, for
        # the one-prediction hot path) with a numpy view of the same memory (slices, counts)
        cap = self.capacity
        self._ts_a, self._ts = _column("d", np.float64, cap)
        self._state_a, self._state = _column("b", np.int8, cap)
        self._code_a, self._code = _column("h", np.int16, cap)
        self._pred_a, self._pred = _column("i", np.int32, cap)  # index into the code's classes
        self._conf_a, self._conf = _column("d", np.float64, cap)
        self.counters = {"evicted_capacity": 0, "evicted_age": 0}

    def put(self, n: int, code: int, pred: Any = 0, conf: Any = math.nan) -> int:
        """Reserve ``n`` counters for predictions of class indices ``pred`` with confidences
        ``conf`` (arrays of ``n``, or one value for all) by monitor ``code``; the first counter."""
        start = self.issued
        self.issued = start + n
        cap = self.capacity
        now = self.clock()
        if n == 1:
            i = start % cap
            ts = self._ts_a
            state = self._state_a
            if state[i] == _PENDING:  # one slot: no array call (~3 us) in the hot path
                key = "evicted_age" if ts[i] < now - self.max_age_s else "evicted_capacity"
                self.counters[key] += 1
            ts[i] = now
            state[i] = _PENDING
            self._code_a[i] = code
            self._pred_a[i] = int(pred[0] if isinstance(pred, _MANY) else pred)
            self._conf_a[i] = float(conf[0] if isinstance(conf, _MANY) else conf)
            return start
        pred = np.broadcast_to(pred, (n,))
        conf = np.broadcast_to(conf, (n,))
        for a in range(start, start + n, cap):
            b = min(start + n, a + cap)
            i, j = a % cap, (b - 1) % cap + 1
            lo = a - start
            if j <= i:  # wraps around the ring
                k = lo + cap - i
                self._mark(i, cap, now, code, pred[lo:k], conf[lo:k])
                self._mark(0, j, now, code, pred[k : b - start], conf[k : b - start])
            else:
                self._mark(i, j, now, code, pred[lo : b - start], conf[lo : b - start])
        return start

    def put_one(self, code: int, pred: int, conf: float) -> int:
        """:meth:`put` of one prediction (class index ``pred``, confidence ``conf``): its
        counter. The single-prediction hot path: item stores into the array columns only."""
        start = self.issued
        self.issued = start + 1
        i = start % self.capacity
        now = self.clock()
        if self._state_a[i] == _PENDING:
            key = "evicted_age" if self._ts_a[i] < now - self.max_age_s else "evicted_capacity"
            self.counters[key] += 1
        self._ts_a[i] = now
        self._state_a[i] = _PENDING
        self._code_a[i] = code
        self._pred_a[i] = pred
        self._conf_a[i] = conf
        return start

    def _mark(
        self, i: int, j: int, now: float, code: int, pred: np.ndarray, conf: np.ndarray
    ) -> None:
        live = self._state[i:j] == _PENDING
        if live.any():
            self._count_evicted(self._ts[i:j][live], now)
        self._ts[i:j] = now
        self._state[i:j] = _PENDING
        self._code[i:j] = code
        self._pred[i:j] = pred
        self._conf[i:j] = conf

    def _count_evicted(self, ts: np.ndarray, now: float) -> None:
        old = int(np.count_nonzero(ts < now - self.max_age_s))
        self.counters["evicted_age"] += old
        self.counters["evicted_capacity"] += int(ts.size) - old

    def status(self, counter: int) -> tuple[str, int]:
        """(status, monitor code) of a counter; ``pending`` means joinable."""
        if counter < 0 or counter >= self.issued:
            return "never_seen", -1
        if counter < self.issued - self.capacity:
            return "evicted", -1
        i = counter % self.capacity
        if self._state[i] == _LABELED:  # labeled stays "duplicate" until the slot is reused
            return "duplicate", int(self._code[i])
        if self.clock() - self._ts[i] > self.max_age_s:
            return "expired", -1
        return "pending", int(self._code[i])

    def take(self, counter: int) -> tuple[int, int, float, float]:
        """Mark a pending counter labeled; its (code, class index, confidence, time)."""
        i = counter % self.capacity
        self._state[i] = _LABELED
        return int(self._code[i]), int(self._pred[i]), float(self._conf[i]), float(self._ts[i])

    def give_back(self, counter: int) -> None:
        """Undo :meth:`take` (the label could not be stored)."""
        self._state[counter % self.capacity] = _PENDING

    def expired(self) -> int:
        """Predictions still in the ring unlabeled but older than ``max_age_s``."""
        live = min(self.issued, self.capacity)
        cutoff = self.clock() - self.max_age_s
        return int(np.count_nonzero((self._state[:live] == _PENDING) & (self._ts[:live] < cutoff)))

    def pending(self, code: int | None = None) -> int:
        """How many predictions (of monitor ``code``) wait for a label, not expired."""
        live = min(self.issued, self.capacity)
        cutoff = self.clock() - self.max_age_s
        sel = (self._state[:live] == _PENDING) & (self._ts[:live] >= cutoff)
        if code is not None:
            sel &= self._code[:live] == code
        return int(np.count_nonzero(sel))
