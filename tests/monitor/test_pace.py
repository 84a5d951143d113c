"""The flusher's pauses (monitor/_pace.py): when a step lets the GIL go, and what it keeps."""

from __future__ import annotations

import numpy as np
import pytest

from leanml.config import MonitorConfig
from leanml.errors import ParameterError
from leanml.monitor import ModelMonitor
from leanml.monitor._flush import step
from leanml.monitor._pace import Pacer

from .conftest import FakeClock


def test_pauses_only_after_holding_for_every_s() -> None:
    clock, slept = FakeClock(0.0), []
    pace = Pacer(0.001, pause_s=0.0002, clock=clock, sleep=slept.append)
    pace.start()
    clock.advance(0.0009)
    pace()  # held 0.9 ms: on
    assert slept == []
    clock.advance(0.0002)
    pace()  # 1.1 ms: a pause, and the count starts again after it
    assert slept == [0.0002] and pace.pauses == 1
    clock.advance(0.0005)
    pace()
    assert pace.pauses == 1
    clock.advance(10.0)  # between steps: start() counts from the new step
    pace.start()
    pace()
    assert pace.pauses == 1


def test_pauses_stop_once_the_step_has_run_its_budget() -> None:
    clock, slept = FakeClock(0.0), []
    pace = Pacer(0.001, pause_s=0.0002, clock=clock, sleep=slept.append)
    pace.start(budget_s=0.01)
    for _ in range(4):  # 4 ms held in 1.1 ms stretches: a pause after each
        clock.advance(0.0011)
        pace()
    assert pace.pauses == 4
    clock.advance(0.006)  # 10.4 ms into the step: over its budget, no more pauses
    pace()
    clock.advance(0.002)
    pace()
    assert pace.pauses == 4 and len(slept) == 4
    pace.start(budget_s=0.01)  # the next step has its own budget
    clock.advance(0.0011)
    pace()
    assert pace.pauses == 5


def test_a_flusher_step_has_a_quarter_of_the_flush_interval() -> None:
    m = ModelMonitor(
        "m", config=MonitorConfig(flush_interval_s=0.4, flush_hold_s=0.0005), start=False, sinks=[]
    )
    step(m.state, False)
    assert m.state.pace.until - m.state.pace.since == pytest.approx(0.1)
    m.close()


def test_none_never_pauses() -> None:
    clock, slept = FakeClock(0.0), []
    pace = Pacer(None, clock=clock, sleep=slept.append)
    clock.advance(60.0)
    pace()
    assert slept == [] and pace.pauses == 0


def _sampled_rows(hold: float | None) -> tuple[list[list], int]:
    """A forced flush of 300 e-mail-like texts, every one sampled: the detail columns queued
    for the store, and how many pauses the step made."""
    m = ModelMonitor(
        "email",
        config=MonitorConfig(sampling_rate=1.0, flush_hold_s=hold),
        start=False,
        sinks=[],
    )
    rng = np.random.default_rng(3)
    texts = [
        f"mail {i} from user{i}@example.com see www.example.com/{i} call +1 555 010 {i:04d}"
        for i in range(300)
    ]
    m.record_batch(
        [f"p{i}" for i in range(300)],
        rng.choice(["spam", "ham"], 300).tolist(),
        rng.uniform(0.5, 1.0, 300),
        0.001,
        inputs=texts,
    )
    step(m.state, False)  # a step of the flusher thread (a forced flush does not pause)
    chunks = m.state.details.take()
    pauses = m.state.pace.pauses
    m.close()
    cols = [list(np.concatenate([np.asarray(c.body[k]) for c in chunks])) for k in range(8)]
    return cols, pauses


def test_a_step_pauses_between_slices_and_keeps_every_row() -> None:
    plain, none = _sampled_rows(None)
    paced, pauses = _sampled_rows(1e-9)  # pause at every chance
    assert none == 0
    assert pauses >= 300 // 64  # at least between the slices of the sampled rows
    ts = 1  # times are the record calls' own clock: equal only in count
    for k, (a, b) in enumerate(zip(plain, paced, strict=True)):
        if k != ts:
            assert a == b, k
    assert len(paced[0]) == 300 and paced[5][0] == ("mail 0 from <email> see <url> call <phone>")


def test_a_forced_flush_does_not_pause() -> None:
    clock, slept = FakeClock(0.0), []
    pace = Pacer(0.001, clock=clock, sleep=slept.append)
    pace.start(pausing=False)
    clock.advance(1.0)
    pace()
    assert slept == []
    m = ModelMonitor("email", config=MonitorConfig(flush_hold_s=1e-9), start=False, sinks=[])
    m.record_batch(
        [f"p{i}" for i in range(300)], ["a"] * 300, [0.9] * 300, 0.001, inputs=["x"] * 300
    )
    m.flush()
    assert m.state.pace.pauses == 0 and m.state.total == 300
    m.close()


def test_the_hold_changes_at_run_time_and_is_checked() -> None:
    m = ModelMonitor("email", start=False, sinks=[])
    assert m.state.pace.every_s is None  # off outside leanml serve
    m.configure(flush_hold_s=0.002)
    assert m.state.pace.every_s == 0.002
    m.configure(flush_hold_s=None)
    assert m.state.pace.every_s is None
    with pytest.raises(ParameterError, match="flush_hold_s"):
        m.configure(flush_hold_s=0)
    m.close()
