"""The shadow check on the demo's simulated day: the original re-scores a sample of what the
compact variant served, the way ``leanml serve``'s guard does.

:class:`DayShadow` is fed by :func:`leanml.demo.day.simulate_day`: every served prediction is
sampled with probability ``rate`` (independent draws: geometric gaps, one draw per sample, as
:class:`leanml.serving.shadow.ShadowGuard`), the sample is re-scored in batches of 32 by the
original the demo has already loaded (nothing is loaded again), and it counts label agreement,
the top-class probability difference and, as the day's late labels join, both variants' realized
accuracy. At each of the day's flushes the counts go through the same always-valid test
(:class:`leanml._sequential.AgreementTest`, the guard's threshold and alpha); a failure is
recorded with the guard's reason and time. The figures are :func:`leanml.monitor.shadow.
shadow_figures` of the counts. Unlike the server, the demo has no CPU budget to keep (the guard
re-scores above its 0.5% floor only while its budget allows) and does not switch variants: the
rest of the day stays comparable with and without the check. :attr:`DayShadow.seconds` is the
check's own wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from leanml._intervals import wilson
from leanml._predict import predict_top
from leanml._sequential import AgreementTest
from leanml.monitor.shadow import COUNTS, fallback_reason, shadow_figures

__all__ = ["DayShadow"]

_BATCH = 32


class DayShadow:
    """The shadow check of one model's simulated day (see the module docstring)."""

    def __init__(
        self,
        original: Any,
        *,
        rate: float = 0.01,
        threshold: float = 0.97,
        alpha: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.original = original
        self.rate = rate
        self.threshold = threshold
        self.test = AgreementTest(threshold, alpha)
        self.rng = np.random.default_rng(seed)
        self.counts = dict.fromkeys(COUNTS, 0.0)
        self.queue: list[tuple[str, str, str, float]] = []
        self.shadowed: dict[str, tuple[str, str]] = {}  # id -> (compact, original) label
        self.fallen_back_at: float | None = None
        self.reason: str | None = None
        self.seconds = 0.0
        self._classes = np.asarray(original.classes_)
        self._skip = self._gap()

    def _gap(self) -> int:
        return 0 if self.rate >= 1 else int(self.rng.geometric(self.rate)) - 1

    def offer(
        self, texts: Sequence[str], ids: Sequence[str], labels: Sequence[Any], conf: Sequence[float]
    ) -> None:
        """A batch the compact variant served: sample it; re-score once a batch is queued."""
        t0 = time.perf_counter()
        n = len(texts)
        if n <= self._skip:
            self._skip -= n
        else:
            i = self._skip
            while i < n:
                self.queue.append((texts[i], ids[i], str(labels[i]), float(conf[i])))
                i += 1 + self._gap()
            self._skip = i - n
            if len(self.queue) >= _BATCH:
                self._score()
        self.seconds += time.perf_counter() - t0

    def _score(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:_BATCH], self.queue[_BATCH:]
            top, oconf, _ = predict_top(self.original, [b[0] for b in batch])
            for (_, pid, label, c), olab, oc in zip(
                batch, self._classes[top].tolist(), oconf.tolist(), strict=True
            ):
                self.counts["n"] += 1
                self.counts["agree"] += label == str(olab)
                self.counts["diff_sum"] += abs(c - oc)
                self.shadowed[pid] = (label, str(olab))

    def joined(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """``(id, true label)`` pairs the day's ground truth joined: realized accuracies."""
        t0 = time.perf_counter()
        for pid, truth in pairs:
            pair = self.shadowed.pop(pid, None)
            if pair is not None:
                self.counts["joined"] += 1
                self.counts["correct_compact"] += pair[0] == str(truth)
                self.counts["correct_original"] += pair[1] == str(truth)
        self.seconds += time.perf_counter() - t0

    def decide(self, ts: float) -> None:
        """Score what is queued and test the counts (at each of the day's flushes)."""
        t0 = time.perf_counter()
        self._score()
        k, n = int(self.counts["agree"]), int(self.counts["n"])
        if self.fallen_back_at is None and self.test.update(k, n):
            lo, hi = wilson(k, n)
            self.fallen_back_at = ts
            self.reason = fallback_reason(k / n, lo or 0.0, hi or 0.0, self.threshold, n)
        self.seconds += time.perf_counter() - t0

    def summary(self) -> dict[str, Any]:
        """The figures (the keys of ``ShadowGuard.stats()`` the dashboard reads) and the cost."""
        return {
            "enabled": True,
            "rate": self.rate,
            "threshold": self.threshold,
            **shadow_figures(self.counts),
            "fallen_back": self.fallen_back_at is not None,
            "fallen_back_at": self.fallen_back_at,
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
        }
