from __future__ import annotations

import numpy as np
import pytest

from leanml.monitor.estimate import (
    CalibrationWindow,
    ConfidenceWindow,
    _Ring,
    expected_calibration_error,
)


@pytest.mark.parametrize("size", [1, 5, 17])
def test_the_ring_holds_the_newest_values_oldest_first(size: int) -> None:
    rng = np.random.default_rng(size)
    ring, pushed = _Ring(size, np.float64), []
    for _ in range(200):  # pushes shorter and longer than the ring, wrapping at every offset
        v = rng.normal(size=int(rng.integers(0, 3 * size + 2)))
        ring.push(v)
        pushed += v.tolist()
        assert ring.values().tolist() == pushed[-size:]


def test_estimated_accuracy_is_mean_confidence_of_last_n() -> None:
    w = ConfidenceWindow(100)
    assert w.get()["n"] == 0
    assert w.get()["estimated_accuracy"] is None and w.get()["lower"] is None
    x = np.linspace(0.5, 1.0, 250)
    for chunk in np.array_split(x, 7):
        w.update(chunk)
    assert w.get()["n"] == 100
    assert w.get()["estimated_accuracy"] == pytest.approx(x[-100:].mean())
    w.update(np.full(500, 0.7))  # a batch larger than the window
    assert w.get()["estimated_accuracy"] == pytest.approx(0.7)


def test_calibrated_model_estimate_tracks_realized_accuracy() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.5, 1.0, 20_000)
    correct = rng.random(conf.size) < conf  # calibrated by construction
    cal = CalibrationWindow(20_000, tolerance=0.02)
    cal.update(conf, correct)
    got = cal.get()
    assert got["n_labeled"] == 20_000
    assert abs(got["calibration_gap"]) < 0.01
    assert got["calibrated"] is True
    assert got["ece"] < 0.02
    assert got["realized_accuracy_labeled"] == pytest.approx(correct.mean())


def test_overconfident_model_is_flagged() -> None:
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.8, 1.0, 5000)
    correct = rng.random(conf.size) < conf - 0.2
    cal = CalibrationWindow(5000, tolerance=0.05)
    cal.update(conf, correct)
    got = cal.get()
    assert got["calibration_gap"] == pytest.approx(0.2, abs=0.02)
    assert got["calibrated"] is False
    assert got["ece"] == pytest.approx(0.2, abs=0.03)
    assert CalibrationWindow(10).get()["calibrated"] is None


def test_ece_by_hand() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    ok = np.array([1, 0, 1, 1])
    # bin 9: |0.5 - 0.95| * 2/4 ; bin 5: |1 - 0.55| * 2/4
    assert expected_calibration_error(conf, ok) == pytest.approx((0.45 * 2 + 0.45 * 2) / 4)
