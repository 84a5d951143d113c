"""Bounded pending-join table: prediction id -> (predicted class, confidence, time).

Every prediction (sampled or not) enters the table so that ground truth arriving later can be
joined by prediction id. The table is a ring of ``max_entries`` slots plus a dict id -> slot.

Contract and costs:

* Bounded: at most ``max_entries`` pending predictions (about 150 bytes each including the dict
  slot and the id string) and at most ``late_memory`` remembered ids of predictions that left the
  table unlabeled. A prediction leaves the table when its slot is reused (counted in
  ``evicted_capacity``) or when it is older than ``max_age_s`` at a sweep (``evicted_age``).
* Every ground-truth id lands in exactly one outcome counter: ``joined`` (matched a pending
  prediction), ``duplicate`` (its prediction was already joined), ``late`` (its prediction was
  evicted unlabeled before the label came, and is still remembered), ``unknown`` (never seen, or
  forgotten beyond ``late_memory``).
* ``insert`` and ``join`` are batch operations run by the monitor's flusher thread (not
  thread-safe by themselves); cost is dominated by dict operations, about 0.1-0.3 us per id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from leanml._validation import check_number

__all__ = ["JoinResult", "PendingJoin"]


class JoinResult:
    """Joined pairs of one :meth:`PendingJoin.join` call (arrays aligned by position)."""

    __slots__ = ("confidences", "ids", "pred_ts", "predicted", "true_labels", "ts", "unknown")

    def __init__(
        self,
        ids: list[Any],
        predicted: np.ndarray,
        confidences: np.ndarray,
        pred_ts: np.ndarray,
        true_labels: list[Any],
        ts: np.ndarray,
        unknown: list[int] | None = None,
    ) -> None:
        self.unknown = unknown or []  # input positions whose id was not found anywhere
        self.ids = ids
        self.predicted = predicted
        self.confidences = confidences
        self.pred_ts = pred_ts
        self.true_labels = true_labels
        self.ts = ts

    def __len__(self) -> int:
        return len(self.ids)


class PendingJoin:
    """Ring-buffer join table (see module docstring for the contract)."""

    def __init__(
        self, max_entries: int = 100_000, max_age_s: float = 86_400.0, late_memory: int = 100_000
    ) -> None:
        check_number(max_entries, "max_entries", "PendingJoin", low=1, integer=True)
        check_number(max_age_s, "max_age_s", "PendingJoin", low=0, low_open=True)
        check_number(late_memory, "late_memory", "PendingJoin", low=0, integer=True)
        self.max_entries = max_entries
        self.max_age_s = float(max_age_s)
        self.late_memory = late_memory
        self._ids: list[Any] = [None] * max_entries
        self._pred = np.zeros(max_entries, dtype=np.int32)
        self._conf = np.zeros(max_entries, dtype=np.float64)
        self._ts = np.zeros(max_entries, dtype=np.float64)
        self._live = np.zeros(max_entries, dtype=bool)  # occupied and unlabeled
        self._used = np.zeros(max_entries, dtype=bool)  # occupied (labeled or not)
        self._slot: dict[Any, int] = {}
        self._head = 0
        self._late: set[Any] = set()
        self._late_ring: list[Any] = []
        self._dup_predictions = 0
        self.counters = {
            "inserted": 0,
            "joined": 0,
            "duplicate": 0,
            "late": 0,
            "unknown": 0,
            "evicted_capacity": 0,
            "evicted_age": 0,
            "duplicate_prediction_ids": 0,
            "late_forgotten": 0,
            "forwarded": 0,
            "claimed_from_other_processes": 0,
        }

    def __len__(self) -> int:
        """Number of predictions still waiting for a label."""
        return int(self._live.sum())

    def resize(self, max_entries: int, max_age_s: float, late_memory: int) -> None:
        """Apply new bounds (a larger or smaller table starts empty only if its size changes)."""
        self.max_age_s = float(max_age_s)
        self.late_memory = late_memory
        self._trim_late()
        if max_entries == self.max_entries:
            return
        live = np.flatnonzero(self._used)
        order = live[np.argsort(self._ts[live], kind="stable")]
        gone = [self._ids[i] for i in order[:-max_entries] if self._live[i]]
        order = order[-max_entries:]
        ids = [self._ids[i] for i in order]
        pred, conf, ts, unl = (
            self._pred[order],
            self._conf[order],
            self._ts[order],
            self._live[order],
        )
        dropped = int(self._live.sum()) - int(unl.sum())
        counters = self.counters
        late_ids = list(self._late_ring)
        self.__init__(max_entries, max_age_s, late_memory)  # type: ignore[misc]
        self.insert(ids, pred, conf, ts)
        self._live[: len(ids)] = unl
        self._remember_late(late_ids + gone)
        counters["evicted_capacity"] += dropped
        self.counters = counters

    # -- predictions ---------------------------------------------------------------------------
    def insert(
        self,
        ids: Sequence[Hashable],
        predicted: np.ndarray,
        confidences: np.ndarray,
        ts: np.ndarray,
    ) -> None:
        """Add predictions (oldest first); reuses the oldest slots when full."""
        n = len(ids)
        if n == 0:
            return
        cap = self.max_entries
        if n > cap:  # only the newest fit; the rest are evicted at once
            self.counters["evicted_capacity"] += n - cap
            self._remember_late(list(ids[: n - cap]))
            ids, predicted, confidences, ts = (
                ids[n - cap :],
                predicted[n - cap :],
                confidences[n - cap :],
                ts[n - cap :],
            )
            n = cap
        h = self._head
        end = h + n
        if end <= cap:
            self._put(h, end, ids, predicted, confidences, ts)
        else:
            k = cap - h
            self._put(h, cap, ids[:k], predicted[:k], confidences[:k], ts[:k])
            self._put(0, end - cap, ids[k:], predicted[k:], confidences[k:], ts[k:])
        self._head = end % cap
        self.counters["inserted"] += n

    def _put(
        self,
        a: int,
        b: int,
        ids: Sequence[Hashable],
        predicted: np.ndarray,
        confidences: np.ndarray,
        ts: np.ndarray,
    ) -> None:
        slot = self._slot
        if self._used[a:b].any():
            old_ids = self._ids[a:b]
            live = self._live[a:b]
            n_live = int(live.sum())
            if n_live:
                self.counters["evicted_capacity"] += n_live
                if n_live == b - a:
                    self._remember_late(old_ids)
                else:
                    self._remember_late([old_ids[i] for i in np.flatnonzero(live).tolist()])
            used = np.flatnonzero(self._used[a:b]).tolist()
            if self._dup_predictions == 0:
                keys = old_ids if len(used) == b - a else [old_ids[i] for i in used]
                deque(map(slot.__delitem__, keys), maxlen=0)  # C-speed deletes
            else:
                for i in used:
                    if slot.get(old_ids[i]) == a + i:
                        del slot[old_ids[i]]
        before = len(slot)
        slot.update(zip(ids, range(a, b), strict=True))
        dup = (b - a) - (len(slot) - before)
        if dup:
            self._dup_predictions += dup
            self.counters["duplicate_prediction_ids"] += dup
        self._ids[a:b] = ids
        self._pred[a:b] = predicted
        self._conf[a:b] = confidences
        self._ts[a:b] = ts
        self._live[a:b] = True
        self._used[a:b] = True
        if dup:  # the older slot of a reused id no longer owns it (rare misuse: O(n) scan)
            ids_ring = self._ids
            for i in np.flatnonzero(self._used).tolist():
                if slot.get(ids_ring[i]) != i:
                    self._live[i] = False
                    self._used[i] = False
                    ids_ring[i] = None

    def expire(self, now: float) -> int:
        """Evict unlabeled predictions older than ``max_age_s``; return how many.

        Joined entries stay (to recognise duplicate labels) until their slot is reused.
        """
        cutoff = now - self.max_age_s
        old = np.flatnonzero(self._live & (self._ts < cutoff))
        if old.size == 0:
            return 0
        ids = self._ids
        slot = self._slot
        late = []
        for i in old.tolist():
            k = ids[i]
            if slot.get(k) == i:
                del slot[k]
            late.append(k)
            ids[i] = None
        self._live[old] = False
        self._used[old] = False
        self.counters["evicted_age"] += int(old.size)
        self._remember_late(late)
        return int(old.size)

    def _remember_late(self, ids: list[Any]) -> None:
        if self.late_memory == 0 or not ids:
            if ids:
                self.counters["late_forgotten"] += len(ids)
            return
        self._late.update(ids)
        self._late_ring.extend(ids)
        self._trim_late()

    def _trim_late(self) -> None:
        ring = self._late_ring
        extra = len(ring) - self.late_memory
        if extra > 0:
            self.counters["late_forgotten"] += extra
            self._late.difference_update(ring[:extra])
            del ring[:extra]

    # -- ground truth --------------------------------------------------------------------------
    def join(
        self,
        ids: Sequence[Hashable],
        true_labels: Sequence[Any],
        ts: np.ndarray,
        *,
        count_unknown: bool = True,
    ) -> JoinResult:
        """Match ground truth to pending predictions, counting every outcome.

        With ``count_unknown=False`` ids found nowhere are only reported in
        ``JoinResult.unknown`` (the monitor forwards them to other processes first).
        """
        slot_get = self._slot.get
        live = self._live
        late = self._late
        c = self.counters
        hit_slots: list[int] = []
        hit_pos: list[int] = []
        unknown: list[int] = []
        for pos, pid in enumerate(ids):
            s = slot_get(pid)
            if s is not None:
                if live[s]:
                    live[s] = False
                    hit_slots.append(s)
                    hit_pos.append(pos)
                else:
                    c["duplicate"] += 1
            elif pid in late:
                c["late"] += 1
            else:
                unknown.append(pos)
        if count_unknown:
            c["unknown"] += len(unknown)
        c["joined"] += len(hit_slots)
        sl = np.asarray(hit_slots, dtype=np.int64)
        return JoinResult(
            [ids[p] for p in hit_pos],
            self._pred[sl],
            self._conf[sl],
            self._ts[sl],
            [true_labels[p] for p in hit_pos],
            np.asarray(ts)[np.asarray(hit_pos, dtype=np.int64)],
            unknown,
        )

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["pending"] = len(self)
        out["max_entries"] = self.max_entries
        out["late_remembered"] = len(self._late)
        return out
