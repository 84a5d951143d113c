"""The open-loop patterns: the rate at each moment, and the per-step split."""

from __future__ import annotations

import numpy as np
import pytest

from leanml.bench.http._schedule import rate_at, step_figures
from leanml.bench.http._workload import BenchConfig


def _cfg(pattern: str, **kw: object) -> BenchConfig:
    return BenchConfig(
        url="http://h", mode="open", rate=10, rate_to=40, duration_s=8, pattern=pattern, **kw
    )


def test_constant_keeps_the_rate() -> None:
    cfg = _cfg("constant")
    assert {rate_at(cfg, t) for t in (0, 3.9, 8, 100)} == {10}


def test_ramp_is_linear_and_clamped() -> None:
    cfg = _cfg("ramp")
    assert [rate_at(cfg, t) for t in (-1, 0, 4, 8, 9)] == [10, 10, 25, 40, 40]


@pytest.mark.parametrize(("t", "rate"), [(0, 10), (1.99, 10), (2, 20), (5, 30), (7.9, 40), (8, 40)])
def test_step_holds_each_level(t: float, rate: float) -> None:
    assert rate_at(_cfg("step", steps=4), t) == pytest.approx(rate)


def test_step_figures_split_by_scheduled_time() -> None:
    cfg = _cfg("step", steps=2)
    starts = np.array([0.5, 1.0, 5.0, 6.0, 7.0, 7.5])
    lat = np.array([0.001, 0.003, 0.002, 0.002, 0.002, 0.010])
    first, second = step_figures(cfg, starts, lat)
    assert (first["target_rps"], first["rps"]) == (10.0, 0.5)
    assert (second["target_rps"], second["rps"]) == (40.0, 1.0)
    assert first["latency_ms"]["max"] == 3.0 and second["latency_ms"]["max"] == 10.0
