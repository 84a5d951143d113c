"""An always-valid one-sided test of a proportion: a mixture likelihood-ratio martingale.

The shadow check asks, after every batch, whether the live agreement ``p`` between a compact
variant and its original has fallen below a threshold ``p0``. Looking after every batch with a
fixed-``n`` interval would alarm sooner or later on a healthy model (the "peeking" problem).

:class:`AgreementTest` keeps only the sufficient counts ``(k agreements, n trials)`` and the
statistic

    M_n = sum_j w_j * (q_j / p0) ** k * ((1 - q_j) / (1 - p0)) ** (n - k)

a mixture over alternatives ``q_j < p0`` (weights ``w_j`` summing to 1). For any true
``p >= p0`` each term is a non-negative supermartingale with mean <= 1 (its one-step factor
``p q/p0 + (1-p)(1-q)/(1-p0)`` is <= 1 when ``q < p0 <= p``), so by Ville's inequality
``P(sup_n M_n >= 1/alpha) <= alpha``: the alarm's false-alarm probability over an unbounded run,
checked as often as one likes (and on counts summed across processes, which is one interleaved
sequence), is at most ``alpha``. The alarm latches (hysteresis): once fired it holds until
:meth:`AgreementTest.reset`.
"""

from __future__ import annotations

import math
from typing import Any

from leanml._validation import check_number

__all__ = ["AgreementTest", "log_mixture_ratio"]

#: How far below the threshold the mixture's alternatives sit (absolute agreement points).
_GAPS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)


def _alternatives(p0: float) -> list[float]:
    qs = sorted({round(p0 - g, 6) for g in _GAPS if p0 - g > 0})
    return qs or [p0 / 2]


def log_mixture_ratio(k: int, n: int, p0: float) -> float:
    """``log M_n`` of ``k`` agreements in ``n`` trials against the threshold ``p0``."""
    if n <= 0 or p0 <= 0:
        return 0.0
    qs = _alternatives(p0)
    if p0 >= 1:  # any disagreement refutes p >= 1
        return math.inf if k < n else 0.0
    terms = [
        k * math.log(q / p0) + (n - k) * math.log((1 - q) / (1 - p0)) - math.log(len(qs))
        for q in qs
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


class AgreementTest:
    """Sequential test of "agreement >= threshold" (see the module docstring)."""

    def __init__(self, threshold: float, alpha: float = 0.01) -> None:
        check_number(threshold, "threshold", "AgreementTest", low=0, high=1, low_open=True)
        check_number(alpha, "alpha", "AgreementTest", low=0, high=1, low_open=True, high_open=True)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.alarmed = False
        self.alarm_at: int | None = None

    @property
    def log_boundary(self) -> float:
        return math.log(1 / self.alpha)

    def update(self, k: int, n: int) -> bool:
        """Look at the cumulative counts; True once the alarm has fired (it latches)."""
        if not self.alarmed and log_mixture_ratio(k, n, self.threshold) >= self.log_boundary:
            self.alarmed = True
            self.alarm_at = n
        return self.alarmed

    def reset(self) -> None:
        self.alarmed = False
        self.alarm_at = None

    def stats(self, k: int, n: int) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "alpha": self.alpha,
            "log_ratio": round(log_mixture_ratio(k, n, self.threshold), 4),
            "log_boundary": round(self.log_boundary, 4),
            "alarmed": self.alarmed,
        }
