"""The flusher's ingest (monitor/_ingest.py): per-second counts."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from leanml.monitor import ModelMonitor
from leanml.monitor._ingest import _count_seconds

from .conftest import FakeClock


@pytest.mark.parametrize(
    "spread",
    # within a second, across one second's end, a few seconds, far apart (each counting way)
    [0.5, 1.2, 3.0, 5_000.0, 1e7],
)
def test_predictions_per_second_are_counted_as_whole_seconds(spread: float) -> None:
    m = ModelMonitor("email", start=False, sinks=[])
    rng = np.random.default_rng(int(spread))
    want: Counter[int] = Counter()
    for _ in range(3):  # chunks add to what earlier chunks counted
        ts = 1_700_000_000.25 + rng.uniform(0, spread, 400)
        want.update(int(t) for t in ts)
        _count_seconds(m.state, ts, (float(ts.min()), float(ts.max())))
    got = m.state.seconds
    if len(want) > 180:  # only the newest seconds are kept
        newest = sorted(want)[-len(got) :]
        want = Counter({s: want[s] for s in newest})
    assert got == dict(want)
    m.close()


def _ingested(times: list[float]) -> tuple[list, ModelMonitor]:
    """Records with NaN confidences, missing inputs and uncounted tokens among them, at
    ``times`` (one chunk), ingested; each window's (count, confidence sum, confidence, length
    and OOV samples) in order, and the monitor."""
    clock = FakeClock(times[0])
    m = ModelMonitor("email", clock=clock, start=False, sinks=[])
    for i, t in enumerate(times):
        clock.t = t
        conf = math.nan if i % 7 == 3 else 0.5 + (i % 5) / 10
        text = None if i % 4 == 1 else "w " * (1 + i % 9)
        tokens, known = (-1, 0) if i % 6 == 2 else (4 + i % 3, i % 4)
        if text is None:
            tokens, known = 0, 0
        m.record(f"p{i}", "ab"[i % 2], conf, 0.001 * (1 + i % 3), text, tokens, known)
    m.flush()
    wins = [
        (w.count, w.confidence_sum, w.conf.values(), w.lengths.values(), w.oov.values())
        for _, w in sorted(m.state.windows.items())
    ]
    return wins, m


def test_a_chunk_in_one_window_is_ingested_as_one_split_across_two() -> None:
    """The one-window path (the drift inputs filtered once for the window and the recent
    rings) keeps what the per-window path keeps for the same records."""
    base = 1_700_000_000.0 - 1_700_000_000.0 % 60  # a window's start
    one, m1 = _ingested([base + 1 + i * 0.01 for i in range(2000)])
    two, m2 = _ingested([base + 50 + i * 0.01 for i in range(2000)])  # 1,000 in each window
    assert len(one) == 1 and len(two) == 2
    count, csum, conf, lengths, oov = one[0]
    assert count == sum(w[0] for w in two) == 2000
    assert csum == pytest.approx(sum(w[1] for w in two))
    for k, got in ((2, conf), (3, lengths), (4, oov)):
        np.testing.assert_array_equal(got, np.concatenate([w[k] for w in two]))
    assert not np.isnan(conf).any() and not np.isnan(lengths).any() and not np.isnan(oov).any()
    assert conf.size < 2000 and lengths.size < 2000  # the NaN ones were left out
    for ring in ("recent_lengths", "recent_oov"):
        np.testing.assert_array_equal(
            getattr(m1.state, ring).values(), getattr(m2.state, ring).values()
        )
    assert m1.stats()["counts"] == {**m2.stats()["counts"]}
    m1.close()
    m2.close()
