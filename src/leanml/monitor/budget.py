"""The CPU budget of a monitor's optional work: a token bucket fed by the model's time.

*Optional* work is analysis the monitor can do less of without losing a count or a sampled
row: today the text statistics of models that do not report them (the out-of-vocabulary rate
of sampled inputs, which tokenizes each text again); a shadow check would be the next.
Everything else is not optional: counts, latencies, the ground-truth join and, above all, the
id-deterministic detail sampling, which never changes under the budget (any process can still
tell whether an id was sampled; the budget only decides for how many of the sampled inputs the
text statistics are computed).

Contract: over any run, the CPU spent on optional work stays within ``budget`` times the
model's time plus one burst (``burst_s``, what the bucket may hold, and one item's cost while
the first item measures it). The model's time is what the callers record as latencies, one per
single prediction and one per batch (its longest), the monitor seeing no other measure of the
model's cost: wall time, so on a loaded machine it overstates the model's CPU.
:meth:`OverheadBudget.allowed` grants items while the allowance covers their measured mean
cost (an exponential moving average of CPU per item, read from ``meter``, by default
:func:`time.thread_time`, injectable for tests); :meth:`OverheadBudget.run` charges what the
work really took. ``share`` reports the effective share of offered items that got the
optional work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from leanml._validation import check_number

__all__ = ["OverheadBudget"]

_T = TypeVar("_T")


class OverheadBudget:
    """Token bucket of CPU seconds for optional work (see the module docstring)."""

    def __init__(
        self,
        budget: float = 0.0025,
        *,
        meter: Callable[[], float] = time.thread_time,
        burst_s: float = 0.05,
        smoothing: float = 0.2,
    ) -> None:
        check_number(budget, "budget", "OverheadBudget", low=0)
        check_number(burst_s, "burst_s", "OverheadBudget", low=0)
        check_number(smoothing, "smoothing", "OverheadBudget", low=0, high=1, low_open=True)
        self.budget = float(budget)
        self.meter = meter
        self.burst_s = float(burst_s)
        self.smoothing = float(smoothing)
        self.allowance = 0.0
        self.cost: float | None = None  # CPU seconds per item (moving average)
        self.model_s = 0.0
        self.spent_s = 0.0
        self.offered = 0
        self.done = 0

    def credit(self, model_s: float) -> None:
        """The model spent ``model_s`` seconds: the bucket gains ``budget`` times that."""
        if model_s > 0:
            self.model_s += model_s
            self.allowance = min(self.burst_s, self.allowance + self.budget * model_s)

    def allowed(self, offered: int) -> int:
        """How many of ``offered`` items may get the optional work now."""
        self.offered += offered
        if offered <= 0 or self.budget <= 0 or self.allowance <= 0:
            return 0
        if self.cost is None:
            return 1  # the first item measures the cost
        return min(offered, int(self.allowance / self.cost)) if self.cost > 0 else offered

    def always(self, items: int) -> None:
        """``items`` get the work whatever the budget (a floor): offered, not asked about;
        their cost is charged by :meth:`run` like the rest, so ``share`` stays done/offered."""
        self.offered += max(0, items)

    def run(self, work: Callable[[], _T], items: int) -> _T:
        """Run ``work`` (``items`` items) and charge its CPU time to the allowance."""
        started = self.meter()
        try:
            return work()
        finally:
            spent = max(0.0, self.meter() - started)
            self.spent_s += spent
            self.allowance -= spent
            self.done += items
            if items > 0:
                per_item = spent / items
                a = self.smoothing
                self.cost = per_item if self.cost is None else (1 - a) * self.cost + a * per_item

    def stats(self) -> dict[str, Any]:
        """Budget, effective share of offered items done, CPU spent against the model's time."""
        return {
            "budget": self.budget,
            "share": self.done / self.offered if self.offered else None,
            "offered": self.offered,
            "done": self.done,
            "spent_s": self.spent_s,
            "model_s": self.model_s,
            "overhead": self.spent_s / self.model_s if self.model_s else None,
        }
