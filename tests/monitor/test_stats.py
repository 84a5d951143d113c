from __future__ import annotations

from typing import get_type_hints

import numpy as np

from leanml.monitor import DRIFT_SCORES, DriftScores, ModelMonitor, MonitorStats
from leanml.monitor.stats import AccuracyStats, AlertStats, CountStats, LatencyStats


def _keys(td: type) -> set[str]:
    return set(get_type_hints(td))


def test_stats_has_exactly_the_typed_keys(clock) -> None:
    ref = {"class_counts": {"ham": 1, "spam": 1}, "confidences": [0.9, 0.8]}
    m = ModelMonitor("email", clock=clock, start=False, sinks=[], reference=ref)
    m.record_batch(["a", "b", "c"], ["ham", "spam", "ham"], np.full(3, 0.9), 0.001)
    m.record_joined(["a"], ["ham"], ["ham"], [0.9], [clock.t])
    clock.advance(120)  # the window closes: it gets a drift score
    m.flush()
    st = m.stats()
    m.close()
    assert set(st) == _keys(MonitorStats)
    assert set(st["counts"]) == _keys(CountStats)
    assert set(st["accuracy"]) == _keys(AccuracyStats)
    assert set(st["alerts"]) == _keys(AlertStats)
    assert set(st["latency"]) == _keys(LatencyStats)  # with data: relative_accuracy, window_s
    assert set(st["latency_lifetime"]) == _keys(LatencyStats) - {"window_s"}
    assert st["drift"] is not None and set(st["drift"]) == _keys(DriftScores)
    assert st["drift_windows"] and set(st["drift_windows"][0]) == _keys(DriftScores) | {
        "window_start"
    }


def test_empty_latency_has_no_relative_accuracy(clock) -> None:
    m = ModelMonitor("e", clock=clock, start=False, sinks=[])
    lat = m.stats()["latency"]
    m.close()
    assert set(lat) == _keys(LatencyStats) - {"relative_accuracy"}
    assert lat["count"] == 0 and lat["p99"] is None


def test_drift_scores_are_listed_once_and_read_everywhere(clock) -> None:
    ref = {"class_counts": {"ham": 1, "spam": 1}, "confidences": [0.9, 0.8]}
    m = ModelMonitor("email", clock=clock, start=False, sinks=[], reference=ref)
    m.record_batch(["a", "b"], ["ham", "spam"], np.full(2, 0.9), 0.001)
    clock.advance(1)
    m.flush()
    table = m.metrics()
    text = m.prometheus_text()
    drift = m.stats()["drift"]
    m.close()
    assert set(DRIFT_SCORES) <= _keys(DriftScores)
    assert {k for k in table if k.startswith("drift_")} == {f"drift_{k}" for k in DRIFT_SCORES}
    assert drift is not None
    scored = [k for k in DRIFT_SCORES if drift[k] is not None]
    assert "class_psi" in scored
    for k in scored:
        assert f'score="{k}"' in text
