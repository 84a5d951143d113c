"""The flusher's ingest (monitor/_ingest.py): per-second counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from leanml.monitor import ModelMonitor
from leanml.monitor._ingest import _count_seconds


@pytest.mark.parametrize(
    "spread",
    [0.5, 3.0, 5_000.0, 1e7],  # within a second, a few seconds, far apart (both counting ways)
)
def test_predictions_per_second_are_counted_as_whole_seconds(spread: float) -> None:
    m = ModelMonitor("email", start=False, sinks=[])
    rng = np.random.default_rng(int(spread))
    want: Counter[int] = Counter()
    for _ in range(3):  # chunks add to what earlier chunks counted
        ts = 1_700_000_000.25 + rng.uniform(0, spread, 400)
        want.update(int(t) for t in ts)
        _count_seconds(m.state, ts)
    got = m.state.seconds
    if len(want) > 180:  # only the newest seconds are kept
        newest = sorted(want)[-len(got) :]
        want = Counter({s: want[s] for s in newest})
    assert got == dict(want)
    m.close()
