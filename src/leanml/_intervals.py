"""95% intervals for the sampled figures: Wilson for proportions, a percentile bootstrap helper.

:func:`wilson` is the Wilson score interval of ``k`` successes in ``n`` trials (Wilson 1927):
it stays inside [0, 1] and keeps close to its nominal coverage for small ``n`` and proportions
near 0 or 1, where the normal (Wald) interval does not. :func:`percentile_interval` is the
2.5% / 97.5% percentile of bootstrap replicates (the drift scores' interval, see
:mod:`leanml.monitor.drift`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Z95", "percentile_interval", "wilson"]

#: The standard normal quantile of 0.975.
Z95 = 1.959963984540054


def wilson(k: float, n: float, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval ``(lower, upper)`` of ``k`` successes in ``n`` trials
    (``(None, None)`` when ``n`` is 0)."""
    if n <= 0:
        return None, None
    p = k / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, center - half), min(1.0, center + half)


def percentile_interval(
    replicates: Sequence[float] | np.ndarray,
) -> tuple[float | None, float | None]:
    """The 2.5% and 97.5% percentiles of the finite ``replicates`` (None when there are none)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None, None
    lo, hi = np.percentile(r, [2.5, 97.5])
    return float(lo), float(hi)
