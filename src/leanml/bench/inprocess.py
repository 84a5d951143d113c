"""In-process load: one text per call, as a request handler calls the model.

Each call is timed with ``perf_counter_ns``; the process's CPU time and RSS are read with
psutil before and after, so a result says what the load cost, not only how fast it went.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import psutil

__all__ = ["LoadResult", "latency_summary", "run_single_text_load"]


@dataclasses.dataclass
class LoadResult:
    n: int
    seconds: float
    latencies_ns: np.ndarray
    cpu_seconds: float
    rss_before: int
    rss_after: int

    @property
    def predictions_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "seconds": round(self.seconds, 4),
            "predictions_per_s": round(self.predictions_per_s, 1),
            **latency_summary(self.latencies_ns),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "rss_mb": round(self.rss_after / 2**20, 1),
            "rss_growth_mb": round((self.rss_after - self.rss_before) / 2**20, 2),
        }


def latency_summary(latencies_ns: np.ndarray) -> dict[str, float]:
    """Mean and p50 / p95 / p99 / max in milliseconds."""
    ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        return {k: float("nan") for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "mean_ms": round(float(ms.mean()), 4),
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def run_single_text_load(
    predict: Callable[[list[str]], Any],
    texts: Sequence[str],
    n: int,
    *,
    warmup: int = 20,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Call ``predict([text])`` ``n`` times, cycling through ``texts``."""
    if not texts:
        raise ValueError("run_single_text_load needs at least one text")
    for i in range(min(warmup, n)):
        predict([texts[i % len(texts)]])
    process = psutil.Process()
    rss_before = process.memory_info().rss
    cpu_before = process.cpu_times()
    latencies = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    started = clock()
    step = max(1, n // 50)
    for i in range(n):
        t0 = clock()
        predict([texts[i % len(texts)]])
        latencies[i] = clock() - t0
        if on_progress is not None and (i + 1) % step == 0:
            on_progress(step)
    seconds = (clock() - started) / 1e9
    cpu_after = process.cpu_times()
    return LoadResult(
        n=n,
        seconds=seconds,
        latencies_ns=latencies,
        cpu_seconds=(cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        rss_before=rss_before,
        rss_after=process.memory_info().rss,
    )
