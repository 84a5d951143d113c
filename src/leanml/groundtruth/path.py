"""GroundTruth: ids, the pending-join ring and the outcome of every label, in one object.

The in-process wrapper (:func:`leanml.monitor.monitored`) and the server's
:class:`~leanml.serving.handle.ModelHandle` both hold one. Per prediction batch,
:meth:`GroundTruth.issue` reserves counters in the :class:`~leanml.groundtruth.ring.PendingRing`
(class index, confidence, time, monitor code) and mints their ids
(:class:`~leanml.groundtruth.ids.IdIssuer`). Per label, :meth:`GroundTruth.join` verifies the
id's tag and then, only for a genuine id, reads and marks the ring. Each label gets exactly one
outcome: ``joined``, ``duplicate``, ``evicted``, ``expired``, ``never_seen`` (malformed, forged,
or not issued yet; forged ones are also counted ``refused``) or ``foreign`` (another issuer's
prefix: the caller forwards it through the :class:`~leanml.groundtruth.log.FeedbackLog`).

Durability is the caller's: store the joined labels in the log, then give them to the monitor
(:meth:`give_back` returns them to the ring when the write fails). Thread-safe: one lock around
the ring (:class:`leanml._native.RingLock`, a C lock), none around minting the ids; a single id
skips the lock while no thread holds it. Issuing is C (:class:`leanml._native.IssueCore`, which
this class extends): the hot path of every prediction.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from leanml._native import IssueCore
from leanml.groundtruth.ids import IdIssuer, parse_id
from leanml.groundtruth.ring import PendingRing

__all__ = ["STATUSES", "GroundTruth", "Joined"]

#: every outcome a label can have, in the order stats report them
STATUSES = ("joined", "duplicate", "evicted", "expired", "never_seen", "foreign")


@dataclasses.dataclass(frozen=True)
class Joined:
    """One label matched to its prediction (``pred`` indexes the classes of ``code``)."""

    id: str
    label: Any
    code: int
    pred: int
    confidence: float
    pred_ts: float
    counter: int


class GroundTruth(IssueCore):
    """See module docstring."""

    issuer: IdIssuer
    ring: PendingRing

    def __init__(
        self,
        capacity: int = 100_000,
        max_age_s: float = 86_400.0,
        *,
        prefix: str | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = IdIssuer(prefix, secret)
        self.ring = PendingRing(capacity, max_age_s, clock)
        # self.lock (leanml._native.RingLock, made by IssueCore) is held around every access
        # to the ring: issue, join, give_back, reading; issue_one skips it while no thread
        # holds it (see leanml._native.IssueCore._issue_one)
        self.counters = dict.fromkeys((*STATUSES, "refused"), 0)

    @property
    def prefix(self) -> str:
        return self.issuer.prefix

    # issue(n, code, pred, conf) and issue_one(code, pred, conf): leanml._native.IssueCore

    # ------------------------------------------------------------------ labels
    def lookup(self, prediction_id: Any) -> tuple[str, int, int]:
        """(status, monitor code, counter) of an id; reads the ring only for a genuine id."""
        counter = self.issuer.verify(prediction_id)
        if counter >= 0:
            with self.lock:
                return (*self.ring.status(counter), counter)
        parsed = parse_id(prediction_id)
        if parsed is None:
            return "never_seen", -1, -1
        if parsed[0] != self.issuer.prefix:
            return "foreign", -1, -1
        self.counters["refused"] += 1  # our prefix, a well-formed id, not ours: forged
        return "never_seen", -1, -1

    def join(self, items: Sequence[tuple[Any, Any]]) -> tuple[list[str], list[Joined]]:
        """Join ``(id, true label)`` items: each item's outcome, and the joined ones."""
        statuses: list[str] = []
        joined: list[Joined] = []
        ring = self.ring
        verify = self.issuer.verify
        counts = self.counters
        for pid, label in items:
            counter = verify(pid)
            if counter < 0:
                status = self.lookup(pid)[0]  # malformed, foreign or forged (counted there)
            else:
                with self.lock:
                    status, _ = ring.status(counter)
                    if status == "pending":
                        code, pred, conf, ts = ring.take(counter)
                        joined.append(Joined(pid, label, code, pred, conf, ts, counter))
                        status = "joined"
            counts[status] += 1
            statuses.append(status)
        return statuses, joined

    def give_back(self, joined: Sequence[Joined]) -> None:
        """Return joined predictions to the ring (their labels could not be stored)."""
        with self.lock:
            for j in joined:
                self.ring.give_back(j.counter)
        self.counters["joined"] -= len(joined)

    # ------------------------------------------------------------------ reading
    def pending(self, code: int | None = None) -> int:
        with self.lock:
            return self.ring.pending(code)

    def stats(self) -> dict[str, int]:
        """Outcome counters, issued and pending counts, and what left the ring unlabeled:
        ``evicted_capacity``, ``evicted_age`` (including expired predictions whose slot is not
        reused yet). No prefix, no secret."""
        with self.lock:
            out = {
                **self.counters,
                **self.ring.counters,
                "evicted_age": self.ring.counters["evicted_age"] + self.ring.expired(),
                "issued": self.ring.issued,
                "pending": self.ring.pending(),
                "max_entries": self.ring.capacity,
            }
        return out
