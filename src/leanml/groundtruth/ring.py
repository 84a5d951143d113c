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
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from leanml._native import RingCore
from leanml._validation import check_number

__all__ = ["PendingRing"]

_PENDING, _LABELED = 1, 2


def _column(code: str, dtype: Any, n: int) -> tuple[array.array[Any], np.ndarray]:
    """``n`` zeros as an array.array and a writable numpy view of the same memory."""
    a = array.array(code, bytes(n * array.array(code).itemsize))
    return a, np.frombuffer(a, dtype=dtype)


class PendingRing(RingCore):
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
        # each column is an array.array that the puts (RingCore.put and put_one, C) write,
        # with a numpy view of the same memory (slices, counts)
        cap = self.capacity
        self._ts_a, self._ts = _column("d", np.float64, cap)
        self._state_a, self._state = _column("b", np.int8, cap)
        self._code_a, self._code = _column("h", np.int16, cap)
        self._pred_a, self._pred = _column("i", np.int32, cap)  # index into the code's classes
        self._conf_a, self._conf = _column("d", np.float64, cap)
        self.bind(self._ts_a, self._state_a, self._code_a, self._pred_a, self._conf_a)

    @property
    def counters(self) -> dict[str, int]:
        """Unlabeled predictions whose slot a newer one took, by why they left."""
        return {"evicted_capacity": self.evicted_capacity, "evicted_age": self.evicted_age}

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
