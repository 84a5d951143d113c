"""The CPU budget of optional work, with an injected CPU meter (no wall clock anywhere)."""

from __future__ import annotations

import numpy as np
import pytest

from leanml.errors import ParameterError
from leanml.monitor import ModelMonitor, MonitorConfig
from leanml.monitor.budget import OverheadBudget


class Meter:
    """A CPU clock that moves only when work is charged to it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _flushes(budget: OverheadBudget, meter: Meter, model_s: float, item_s: float, n: int):
    for _ in range(n):
        budget.credit(model_s)
        k = budget.allowed(100)

        def work(k: int = k) -> None:
            meter.t += k * item_s

        if k:
            budget.run(work, k)


def test_the_budget_holds_and_the_share_adapts_to_the_model_time() -> None:
    meter = Meter()
    b = OverheadBudget(0.05, meter=meter, burst_s=0.05)
    _flushes(b, meter, model_s=0.1, item_s=0.001, n=200)
    # contract: spent <= budget * model time + one burst + one item
    assert b.spent_s <= 0.05 * b.model_s + 0.05 + 0.001
    assert b.stats()["overhead"] == pytest.approx(0.05, abs=0.005)  # and it uses its budget
    first = b.stats()["share"]
    assert first == pytest.approx(0.05, abs=0.01)  # 0.005 s a flush / 1 ms an item / 100
    # the model gets 4x busier: four times the share, the overhead still within budget
    b2 = OverheadBudget(0.05, meter=meter, burst_s=0.05)
    _flushes(b2, meter, model_s=0.4, item_s=0.001, n=200)
    assert b2.stats()["share"] == pytest.approx(4 * first, rel=0.1)
    assert b2.spent_s <= 0.05 * b2.model_s + 0.05 + 0.001


def test_a_zero_budget_does_no_optional_work_and_bad_values_are_refused() -> None:
    b = OverheadBudget(0.0, meter=Meter())
    b.credit(10.0)
    assert b.allowed(50) == 0 and b.stats()["share"] == 0.0
    with pytest.raises(ParameterError, match="budget"):
        OverheadBudget(-0.1)
    with pytest.raises(ParameterError, match="overhead_budget"):
        MonitorConfig(overhead_budget=-1)


def test_the_monitor_bounds_its_text_statistics_but_never_its_sampling(clock) -> None:
    meter = Meter()

    def analyzer(text: str) -> list[str]:
        meter.t += 1e-4  # 0.1 ms of CPU per text tokenized
        return text.split()

    def run(budget: float) -> dict:
        m = ModelMonitor(
            "email", config=MonitorConfig(overhead_budget=budget, sampling_rate=0.5),
            clock=clock, start=False, sinks=[], analyzer=analyzer, vocabulary={"hello": 0},
            cpu_meter=meter,
        )  # fmt: skip
        for b in range(50):
            ids = [f"p{b}-{i}" for i in range(100)]
            texts = [f"hello world {i}" for i in range(100)]
            # a batch of 100 predictions that took 20 ms (each waited the 20 ms)
            m.record_batch(ids, ["ham"] * 100, np.full(100, 0.9), 0.02, texts)
            m.flush()
        st = m.stats()
        m.close()
        return st

    start = meter.t
    bounded = run(0.05)
    spent = meter.t - start
    work = bounded["optional_work"]
    assert work["spent_s"] == pytest.approx(spent)
    assert work["model_s"] == pytest.approx(50 * 0.02)  # once per batch, not per prediction
    assert spent <= 0.05 * work["model_s"] + 0.05 + 1e-4  # budget + burst + one item
    assert 0 < work["share"] < 0.5  # it adapted: only part of the sampled texts scored
    full = run(1.0)  # a budget as large as the model's time: the sampled texts scored
    assert full["optional_work"]["share"] > 0.95  # all but the first flush's (it measures)
    # the id-deterministic sampling is the same whatever the budget
    assert bounded["counts"]["sampled"] == full["counts"]["sampled"] > 0


def test_a_floor_done_whatever_the_budget_counts_as_offered() -> None:
    meter = Meter()
    b = OverheadBudget(0.0, meter=meter)  # no budget: only the floor gets the work
    b.always(10)
    assert b.allowed(90) == 0
    b.run(lambda: None, 10)
    assert b.stats()["offered"] == 100 and b.stats()["share"] == pytest.approx(0.1)
