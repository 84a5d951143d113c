"""The open-loop load patterns: the scheduled rate at each moment, and the per-step figures.

``constant`` keeps ``rate``; ``step`` goes from ``rate`` to ``rate_to`` in ``steps`` equal steps;
``ramp`` goes linearly from one to the other over the run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanml.bench.http._summary import latency_ms
from leanml.bench.http._workload import BenchConfig

__all__ = ["rate_at", "step_figures"]


def rate_at(cfg: BenchConfig, t: float) -> float:
    """The scheduled requests per second ``t`` seconds into the run."""
    if cfg.pattern == "constant" or cfg.rate_to is None:
        return cfg.rate
    frac = min(1.0, max(0.0, t / cfg.duration_s))
    if cfg.pattern == "ramp":
        return cfg.rate + (cfg.rate_to - cfg.rate) * frac
    k = min(cfg.steps - 1, int(frac * cfg.steps))
    return cfg.rate + (cfg.rate_to - cfg.rate) * (k / max(1, cfg.steps - 1))


def step_figures(cfg: BenchConfig, starts: np.ndarray, lat: np.ndarray) -> list[dict[str, Any]]:
    """Per step of a ``step`` pattern: its target rate, achieved rate and latency.

    ``starts`` are the scheduled send times (seconds into the run) of the answered requests,
    ``lat`` their latencies in seconds.
    """
    width = cfg.duration_s / cfg.steps
    out = []
    for k in range(cfg.steps):
        sel = (starts >= k * width) & (starts < (k + 1) * width)
        out.append(
            {
                "target_rps": round(rate_at(cfg, k * width + 1e-9), 1),
                "rps": round(int(sel.sum()) / width, 1),
                "latency_ms": latency_ms(lat[sel]),
            }
        )
    return out
