from __future__ import annotations

import hashlib
import math
import threading
import time

import numpy as np
import pytest

from leanml.errors import ConfigError, MonitorError, ParameterError
from leanml.monitor import (
    AlertRule,
    CallbackSink,
    GroundTruth,
    ModelMonitor,
    MonitorConfig,
    MonitorStore,
    is_sampled,
)

REF = {
    "n": 1000,
    "class_counts": {"ham": 700, "spam": 300},
    "confidences": np.random.default_rng(0).uniform(0.7, 1.0, 1000).tolist(),
    "input_lengths": [50] * 1000,
    "oov_rate": 0.0,
}


def _mon(clock, **cfg) -> ModelMonitor:
    return ModelMonitor(
        "email", version="1", config=MonitorConfig(**cfg), clock=clock, start=False, sinks=[]
    )


def test_counts_latency_and_throughput(clock) -> None:
    m = _mon(clock)
    lat = np.random.default_rng(1).lognormal(-7, 0.5, 3000)
    for i in range(1000):
        m.record(f"a{i}", "ham" if i % 4 else "spam", 0.9, float(lat[i]))
    clock.advance(1.0)
    m.record_batch(
        [f"b{i}" for i in range(2000)], np.array(["ham"] * 2000), np.full(2000, 0.8), lat[1000:]
    )
    m.record_error(3)
    clock.advance(1.0)
    m.flush()
    s = m.stats()
    assert s["counts"]["predictions"] == 3000 and s["counts"]["recorded"] == 3000
    assert s["counts"]["by_label"] == {"ham": 2750, "spam": 250}
    assert s["counts"]["errors"] == 3
    assert s["error_rate"] == pytest.approx(3 / 3003)
    xs = np.sort(lat)
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (0.999, "p999")):
        exact = xs[int(np.floor(q * (xs.size - 1)))]
        assert abs(s["latency"][key] - exact) <= 0.005 * exact
    assert s["latency"]["min"] == lat.min() and s["latency"]["max"] == lat.max()
    assert s["latency"]["avg"] == pytest.approx(lat.mean())
    assert s["throughput"]["per_s"] == 2000  # the last full second
    assert s["throughput"]["per_min"] == 3000
    assert s["accuracy"]["estimated"] == pytest.approx(0.8)  # the last 2000 (recent window)
    assert s["health"] == "healthy"
    assert s["drops"]["record_buffer"] == 0
    m.close()


def _label(gt: GroundTruth, m: ModelMonitor, items, classes=("ham", "spam")) -> list[str]:
    """What the wrapper and the server do with labels: join in the ring, then the monitor."""
    statuses, joined = gt.join(items)
    m.record_joined(
        [j.id for j in joined],
        [j.label for j in joined],
        [classes[j.pred] for j in joined],
        [j.confidence for j in joined],
        [j.pred_ts for j in joined],
    )
    return statuses


def test_ground_truth_stream_every_count(clock) -> None:
    m = _mon(clock)
    gt = GroundTruth(100, 60.0, clock=clock)
    m.ground_truth = gt
    pred = [1 if i % 3 == 0 else 0 for i in range(150)]  # 1 = spam
    ids = gt.issue(150, 0, pred, 0.8)  # ids[0:50] evicted by capacity, unlabeled
    m.record_batch(ids, [("ham", "spam")[p] for p in pred], [0.8] * 150, 0.001)
    m.flush()
    truth = {
        pid: ("spam" if i % 3 == 0 else "ham") if i % 5 else "spam" for i, pid in enumerate(ids)
    }
    order = list(reversed(ids[100:]))  # out of order
    assert _label(gt, m, [(p, truth[p]) for p in order[:25]]) == ["joined"] * 25
    assert _label(gt, m, [(ids[149], "ham")]) == ["duplicate"]
    assert _label(gt, m, [("never-predicted", "ham")]) == ["never_seen"]
    assert _label(gt, m, [(ids[10], "ham")]) == ["evicted"]  # left the ring unlabeled
    _label(gt, m, [(p, truth[p]) for p in order[25:]])
    clock.advance(120)  # the remaining 50 (ids 50..99) expire by age
    assert _label(gt, m, [(ids[60], "ham"), (ids[120], "ham")]) == ["expired", "duplicate"]
    m.flush()
    s = m.stats()["ground_truth"]
    assert (s["joined"], s["duplicate"], s["never_seen"], s["evicted"], s["expired"]) == (
        50,
        2,
        1,
        1,
        1,
    )
    assert s["evicted_capacity"] == 50 and s["evicted_age"] == 50 and s["pending"] == 0
    acc = m.stats()["accuracy"]["realized"]
    labeled = ids[100:]
    true = [truth[p] for p in labeled]
    expected = np.mean([("ham", "spam")[pred[100 + i]] == t for i, t in enumerate(true)])
    assert acc["n"] == 50
    assert acc["accuracy"] == pytest.approx(expected)
    cal = m.stats()["accuracy"]["calibration"]
    assert cal["estimated_accuracy_labeled"] == pytest.approx(0.8)
    assert cal["realized_accuracy_labeled"] == pytest.approx(acc["accuracy"])
    m.close()


def test_record_joined_and_restored_labels(clock) -> None:
    """Matched pairs feed the accuracy and calibration windows; restored ones (rebuilt from
    the durable log) feed them too but are not counted again in the windows' joined counts."""
    m = _mon(clock)
    ids = [f"j{i}" for i in range(40)]
    pred = ["spam" if i % 4 == 0 else "ham" for i in range(40)]
    m.record_batch(ids, pred, [0.75] * 40, 0.002)
    m.flush()
    assert m.stats()["ground_truth"]["pending"] is None  # no ground-truth path attached
    gt = GroundTruth(10, clock=clock)
    gt.issue(7)
    m.ground_truth = gt
    assert m.stats()["ground_truth"]["pending"] == 7
    true = ["ham"] * 40  # the 10 "spam" predictions are wrong
    m.record_joined(ids[:30], true[:30], pred[:30], [0.75] * 30, np.full(30, clock.t))
    m.record_joined(
        ids[30:], true[30:], np.array(pred[30:]), np.full(10, 0.75), [clock.t] * 10, restored=True
    )
    m.flush()
    s = m.stats()
    assert (s["ground_truth"]["joined"], s["ground_truth"]["restored"]) == (30, 10)
    assert s["accuracy"]["realized"]["n"] == 40
    assert s["accuracy"]["realized"]["accuracy"] == pytest.approx(0.75)
    assert s["accuracy"]["calibration"]["realized_accuracy_labeled"] == pytest.approx(0.75)
    assert sum(w.joined for w in m.state.windows.values()) == 30
    with pytest.raises(ParameterError, match="pred_ts"):
        m.record_joined(ids[:2], true[:2], pred[:2], [0.5, 0.5], [clock.t])
    with pytest.raises(ParameterError, match="predicted_labels"):
        m.record_joined(ids[:2], true[:2], pred[:1], [0.5, 0.5], [clock.t] * 2)
    m.close()


def test_sampling_details_text_hash_and_low_confidence(clock) -> None:
    m = _mon(clock, sampling_rate=0.3, sample_below_confidence=0.5, store_inputs="hash")
    ids = [f"s-{i:x}" for i in range(1000)]
    for i, pid in enumerate(ids):
        m.record(pid, "ham", 0.4 if i % 10 == 0 else 0.9, 0.001, f"text {i}")
    m.flush()
    recs = {r["prediction_id"]: r for r in m.sampled_records()}
    want = {pid for i, pid in enumerate(ids) if is_sampled(pid, 0.3) or i % 10 == 0}
    assert set(recs) == want
    assert m.stats()["counts"]["sampled"] == len(want)
    r = recs[ids[0]]
    assert r["input_text"] is None
    assert r["input_hash"] == hashlib.sha256(b"text 0").hexdigest()
    assert r["model"] == "email" and r["version"] == "1" and r["variant"] == "default"
    reasons = {recs[p]["reason"] for p in want if not is_sampled(p, 0.3)}
    assert reasons == {"low_confidence"}
    m.configure(store_inputs="text", sampling_rate=1.0, sample_below_confidence=None)
    m.record("x1", "ham", 0.9, 0.001, "raw")
    m.flush()
    assert m.sampled_records()[-1]["input_text"] == "raw"
    m.close()


def test_redacted_is_the_default_and_masks_personal_data(clock) -> None:
    m = _mon(clock, sampling_rate=1.0)
    assert m.config.store_inputs == "redacted"
    text = (
        "Mail ann.lee+x@corp.example.com or see https://a.example/p?q=1 and www.b.example, "
        "call +44 (20) 7946-0958 or 555.123.4567, order 12345678, meeting at 10:30 on 2024"
    )
    m.record("r1", "ham", 0.9, 0.001, text)
    m.record("r0", "ham", 0.9, 0.001, "ticket 98765 for you")
    m.flush()
    r, r0 = m.sampled_records()[-2:]
    assert r0["input_text"] == "ticket <number> for you"
    assert r["input_text"] == (
        "Mail <email> or see <url> and <url>, "
        "call <phone> or <phone>, order <phone>, meeting at 10:30 on 2024"
    )
    assert r["input_hash"] == hashlib.sha256(text.encode()).hexdigest()  # of the original
    m.configure(store_inputs="none")
    m.record("r2", "ham", 0.9, 0.001, text)
    m.flush()
    assert m.sampled_records()[-1]["input_text"] is None
    assert m.sampled_records()[-1]["input_hash"] is None
    m.close()


def test_buffers_are_bounded_and_count_drops(clock) -> None:
    m = _mon(
        clock,
        buffer_size=10,
        batch_buffer_size=2,
        ground_truth_buffer_size=3,
        detail_buffer_size=5,
        sampling_rate=1.0,
    )
    for i in range(15):
        m.record(i, "a", 0.9, 0.001)
    for _ in range(3):
        m.record_batch([1, 2], ["a", "a"], [0.9, 0.9], 0.001)
    for i in range(5):
        m.record_joined([i], ["a"], ["a"], [0.9], [clock.t])
    s = m.stats()
    assert s["drops"]["record_buffer"] == 5
    assert s["drops"]["batch_buffer"] == 2
    assert s["drops"]["ground_truth_buffer"] == 2
    m.flush()
    s = m.stats()
    assert s["counts"]["predictions"] == 21 and s["counts"]["recorded"] == 14
    assert s["drops"]["detail_buffer"] == 14 - 5
    assert s["counts"]["buffered"] == 0
    m.close()


def test_close_flushes_and_later_records_raise(clock, tmp_path) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path / 'c.db'}")
    m = ModelMonitor(
        "email",
        store=store,
        clock=clock,
        sinks=[],
        config=MonitorConfig(store_interval_s=3600, flush_interval_s=3600),
    )
    m.record("p1", "ham", 0.9, 0.002)
    m.record_batch(["p2", "p3"], ["ham", "spam"], [0.7, 0.6], [0.001, 0.003])
    m.close()
    assert store.merged("email")["count"] == 3
    with pytest.raises(MonitorError, match="closed"):
        m.record("p4", "ham", 0.9, 0.001)
    with pytest.raises(MonitorError):
        m.record_joined(["p1"], ["ham"], ["ham"], [0.9], [0.0])
    m.close()  # idempotent
    with ModelMonitor("ctx", store=f"sqlite:///{tmp_path / 'd.db'}", sinks=[]) as m2:
        m2.record("a", 1, 0.9, 0.001)
    assert MonitorStore(f"sqlite:///{tmp_path / 'd.db'}").merged("ctx")["count"] == 1


def test_background_flusher_and_threads() -> None:
    m = ModelMonitor("t", config=MonitorConfig(flush_interval_s=0.01), sinks=[])

    def work(k: int) -> None:
        for i in range(5000):
            m.record(f"{k}-{i}", "a", 0.9, 0.001)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m.close()
    s = m.stats()
    assert s["counts"]["predictions"] == 20_000
    assert s["counts"]["recorded"] + s["drops"]["record_buffer"] == 20_000
    assert s["counters"]["flusher_errors"] == 0


def _record_one(m: ModelMonitor, intake: str, pid: str) -> None:
    if intake == "record":
        m.record(pid, "a", 0.9, 0.001)
    else:
        m.record_batch([pid], ["a"], [0.9], 0.001)


@pytest.mark.parametrize("intake", ["record", "record_batch"])
def test_a_due_step_runs_on_the_thread_that_records(clock, intake: str) -> None:
    """flush_on_record (the default): the first record at or after the step's due time runs
    the step before it returns; the flusher thread (its interval an hour away) does not."""
    m = ModelMonitor("t", config=MonitorConfig(flush_interval_s=3600.0), clock=clock, sinks=[])
    st = m.state
    try:
        _record_one(m, intake, "a")
        assert len(st.buf) + len(st.bbuf) == 1 and st.total == 0  # not due yet: buffered
        clock.advance(3600.0)
        _record_one(m, intake, "b")
        assert len(st.buf) + len(st.bbuf) == 0 and st.total == 2
        assert m.counters["flushes"] == 1 and st.flusher_cpu_ns > 0  # its CPU counted
        _record_one(m, intake, "c")  # the next step is due an interval later
        assert len(st.buf) + len(st.bbuf) == 1 and m.counters["flushes"] == 1
        # a reader takes what was recorded before it asked
        assert m.stats()["counts"]["predictions"] == 3 and m.counters["flushes"] == 2
    finally:
        m.close()
    assert m.stats()["counts"]["predictions"] == 3


@pytest.mark.parametrize(
    ("cfg", "start"), [({"flush_on_record": False}, True), ({}, False)], ids=["off", "no-thread"]
)
def test_records_run_no_step_when_off_or_when_the_monitor_is_not_started(
    clock, cfg: dict, start: bool
) -> None:
    """Off (leanml serve), the flusher thread steps; a monitor not started (flushed by hand)
    is stepped by nobody else."""
    m = ModelMonitor(
        "t",
        config=MonitorConfig(flush_interval_s=3600.0, **cfg),
        clock=clock,
        sinks=[],
        start=start,
    )
    try:
        m.record("a", "a", 0.9, 0.001)
        clock.advance(7200.0)
        m.record("b", "a", 0.9, 0.001)
        m.record_batch(["c"], ["a"], [0.9], 0.001)
        assert m.stats()["counters"]["flushes"] == 0
        m.flush()
        assert m.stats()["counts"]["predictions"] == 3
    finally:
        m.close()


def test_turning_flush_on_record_on_at_run_time_arms_the_next_step(clock) -> None:
    m = ModelMonitor(
        "t",
        config=MonitorConfig(flush_interval_s=3600.0, flush_on_record=False),
        clock=clock,
        sinks=[],
    )
    try:
        m.configure(flush_on_record=True)
        m.record("a", "a", 0.9, 0.001)
        clock.advance(3600.0)
        m.record("b", "a", 0.9, 0.001)
        assert m.stats()["counts"]["predictions"] == 2
    finally:
        m.close()


def test_a_step_on_the_recording_thread_leaves_the_store_to_the_flusher_thread(
    clock, tmp_path
) -> None:
    """No store I/O on a thread that predicts: the rows a step there collects are written by
    the flusher thread, which it wakes."""
    store = MonitorStore(f"sqlite:///{tmp_path / 'm.db'}")
    cfg = MonitorConfig(flush_interval_s=3600.0, store_interval_s=3600.0, sampling_rate=1.0)
    m = ModelMonitor("t", config=cfg, clock=clock, store=store, sinks=[])
    writer: list[str] = []
    write = store.write

    def record_writer(**rows):
        writer.append(threading.current_thread().name)
        return write(**rows)

    store.write = record_writer  # type: ignore[method-assign]
    try:
        for i in range(10):
            m.record(str(i), "a", 0.9, 0.001)
        clock.advance(3600.0)
        m.record("x", "a", 0.9, 0.001)  # runs the step; a store write is due
        assert m.counters["flushes"] == 1
        deadline = time.monotonic() + 30
        while not writer and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer == ["leanml-monitor-t"]
        assert store.merged("t")["count"] == 11
    finally:
        m.close()
        store.close()


def test_a_failing_step_on_the_recording_thread_is_counted_not_raised(clock, monkeypatch) -> None:
    from leanml.monitor import monitor as module

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    m = ModelMonitor("t", config=MonitorConfig(flush_interval_s=3600.0), clock=clock, sinks=[])
    try:
        monkeypatch.setattr(module, "step", broken)
        clock.advance(3600.0)
        m.record("a", "a", 0.9, 0.001)  # the prediction's caller never sees the failure
        assert m.counters["flusher_errors"] == 1
        monkeypatch.undo()
        clock.advance(3600.0)
        m.record("b", "a", 0.9, 0.001)  # the next due step runs
        assert m.stats()["counts"]["predictions"] == 2
    finally:
        m.close()


def test_the_flusher_thread_takes_the_last_records_once_records_stop() -> None:
    """While records run the steps the flusher thread looks in every store_interval_s; the
    records left after the last step are taken then, with no further record."""
    m = ModelMonitor(
        "t", config=MonitorConfig(flush_interval_s=0.05, store_interval_s=0.5), sinks=[]
    )
    try:
        end = time.monotonic() + 0.5
        n = 0
        while time.monotonic() < end:
            m.record(str(n), "a", 0.9, 0.001)
            n += 1
            time.sleep(0.001)
        assert m._stepping_here(m.config)  # the records ran the steps
        deadline = time.monotonic() + 30
        while m.stats()["counts"]["predictions"] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.stats()["counts"]["predictions"] == n
    finally:
        m.close()


def test_a_step_run_inside_a_timed_call_is_not_the_call_s_cost(clock) -> None:
    m = ModelMonitor("t", config=MonitorConfig(flush_interval_s=3600.0), clock=clock, sinks=[])
    try:
        for i in range(2000):  # a step with something to take
            m.record(str(i), "a", 0.9, 0.001)
        clock.advance(3600.0)
        t0 = time.perf_counter_ns()
        m.record("x", "a", 0.9, 0.001)  # runs the step
        ns = time.perf_counter_ns() - t0
        step_ns = m._here_ns
        assert 0 < step_ns <= ns
        m.note_caller_cost(ns, 64)
        assert m.state.caller_sampled_ns == ns - step_ns
        m.note_caller_cost(500, 64)  # a later timed call without a step: all its own
        assert m.state.caller_sampled_ns == ns - step_ns + 500
    finally:
        m.close()


@pytest.mark.parametrize("intake", ["record", "record_batch", "record_joined"])
def test_a_half_full_buffer_wakes_the_flusher_before_its_interval(intake: str) -> None:
    """The flusher wakes every flush_interval_s, or as soon as a buffer is half full: records
    arriving faster than a buffer's bound per interval are taken, not dropped."""
    cfg = MonitorConfig(
        flush_interval_s=3600.0, buffer_size=64, batch_buffer_size=8, ground_truth_buffer_size=8
    )
    m = ModelMonitor("t", config=cfg, sinks=[])
    try:
        for i in range(5):  # above half of every bound: the half-full call wakes the flusher
            if intake == "record":
                for j in range(8):
                    m.record(f"{i}-{j}", "a", 0.9, 0.001)
            elif intake == "record_batch":
                m.record_batch([f"{i}"], ["a"], [0.9], 0.001)
            else:
                m.record_joined([f"{i}"], ["a"], ["a"], [0.9], [time.time()])
        st = m.state

        def held() -> int:
            return len(st.buf) + len(st.bbuf) + len(st.gt)

        deadline = time.monotonic() + 30
        while held() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert held() == 0  # taken long before the hour is out
        assert st.counters["flushes"] >= 1
    finally:
        m.close()
    assert sum(m.stats()["drops"].values()) == 0


def test_windows_drift_and_alerts_end_to_end(clock) -> None:
    events = []
    rules = (
        AlertRule(
            "acc", "realized_accuracy", "below", warning=0.9, min_samples=20, hysteresis=0.02
        ),
        AlertRule("drift", "drift_class_psi", "above", warning=0.1, critical=0.25, min_samples=50),
    )
    m = ModelMonitor(
        "email",
        config=MonitorConfig(alert_rules=rules, window_s=60),
        reference=REF,
        clock=clock,
        start=False,
        sinks=[CallbackSink(events.append)],
    )
    rng = np.random.default_rng(2)
    n = 0
    for _minute in range(3):
        for _ in range(200):
            lab = "ham" if rng.random() < 0.7 else "spam"
            conf = float(rng.uniform(0.7, 1.0))
            m.record(f"p{n}", lab, conf, 0.001)
            m.record_joined([f"p{n}"], [lab], [lab], [conf], [clock.t])  # all correct
            n += 1
        clock.advance(60)
        m.flush()
    s = m.stats()
    assert s["health"] == "healthy"
    assert s["drift"]["class_psi"] < 0.05
    assert len(s["drift_windows"]) == 3
    # traffic shifts to spam and labels say the model is wrong half the time
    for _ in range(300):
        conf = float(rng.uniform(0.5, 0.7))
        m.record(f"p{n}", "spam", conf, 0.001)
        m.record_joined([f"p{n}"], ["spam" if n % 2 else "ham"], ["spam"], [conf], [clock.t])
        n += 1
    clock.advance(1)
    m.flush()
    s = m.stats()
    assert s["alerts"]["levels"] == {"acc": "warning", "drift": "critical"}
    assert s["health"] == "unhealthy"
    assert {e.rule for e in events} == {"acc", "drift"}
    metrics = m.metrics()
    assert metrics["realized_accuracy"][1] == 900 or metrics["realized_accuracy"][1] == 1000
    assert metrics["drift_class_psi"][0] > 0.25
    # the alert round scores drift without bootstrap intervals: the same scores stats() reads
    assert s["drift"]["intervals"]["class_psi"]
    for key in ("class_psi", "confidence_ks"):
        assert metrics[f"drift_{key}"][0] == s["drift"][key]


def test_configure_at_run_time_and_validation(clock) -> None:
    m = _mon(clock)
    with pytest.raises(ParameterError, match="'sampling_rate' parameter of MonitorConfig"):
        m.configure(sampling_rate=2.0)
    with pytest.raises(ConfigError):
        m.configure(relative_accuracy=0.01)
    m.configure(buffer_size=2, pending_max_entries=5, metrics_window_n=10, recent_window_n=50)
    for i in range(4):
        m.record(i, "a", 0.9, 0.001)
    assert m.stats()["drops"]["record_buffer"] == 2
    assert m.config.buffer_size == 2
    with pytest.raises(ParameterError):
        ModelMonitor("")
    with pytest.raises(ParameterError):
        m.record_batch([1, 2], ["a"], [0.9, 0.8], 0.001)
    m.close()


def test_invalid_records_are_counted_not_fatal(clock) -> None:
    m = _mon(clock)
    m.record("a", "x", "not-a-number", 0.001)  # type: ignore[arg-type]
    m.flush()
    assert m.stats()["counters"]["invalid_batches"] == 1
    m.record("b", "x", 0.9, 0.001)
    m.flush()
    assert m.stats()["counts"]["recorded"] == 1


def test_batch_latencies_as_one_value_or_one_per_prediction(clock) -> None:
    m = _mon(clock)
    for lat in (0.002, np.float32(0.002), np.asarray(0.002), np.int64(0), [0.001, 0.003]):
        m.record_batch(["x", "y"], ["a", "b"], [0.9, 0.8], lat)
    with pytest.raises(ParameterError, match="latencies"):
        m.record_batch(["z"], ["a"], [0.9], [0.1, 0.2])  # two latencies for one prediction
    m.flush()
    s = m.stats()
    assert s["counts"]["recorded"] == 10
    assert s["counters"]["invalid_batches"] == 0
    assert s["latency"]["max"] == pytest.approx(0.003, rel=0.01)
    m.close()


def test_the_overhead_ratio_is_over_the_model_time_not_the_latencies(clock) -> None:
    """A server's latencies hold queueing: the batch's model seconds count once, when given;
    without them, a batch's longest latency; a single call its latency."""
    m = _mon(clock)
    m.record_batch(
        ["a", "b", "c"], ["x"] * 3, [0.9] * 3, [0.010, 0.020, 0.030], model_seconds=0.002
    )
    m.record_batch(["d", "e"], ["x"] * 2, [0.9] * 2, [0.004, 0.005])  # no model time: 0.005
    m.record("f", "x", 0.9, 0.001)
    m.flush()
    ov = m.stats()["overhead"]
    assert ov["model_s"] == pytest.approx(0.002 + 0.005 + 0.001)
    assert ov["ratio"] == pytest.approx(ov["monitor_cpu_s"] / ov["model_s"])
    m.close()


def test_throughput_drop_metric_and_alert(clock) -> None:
    rule = AlertRule("tp", "throughput_drop", "above", warning=0.5, critical=0.8, min_samples=3)
    clock.t = 1_700_000_040.0  # start of a minute
    m = ModelMonitor(
        "t",
        config=MonitorConfig(alert_rules=(rule,), window_s=60),
        clock=clock,
        start=False,
        sinks=[],
    )
    n = 0
    for _minute in range(6):
        for _ in range(100):
            m.record(n, "a", 0.9, 0.001)
            n += 1
        clock.advance(60)
        m.flush()
    value, baselines = m.metrics()["throughput_drop"]
    assert value == pytest.approx(0.0) and baselines >= 3
    for _ in range(10):  # traffic collapses to 10 a minute
        m.record(n, "a", 0.9, 0.001)
        n += 1
    clock.advance(60)
    m.flush()
    value, _ = m.metrics()["throughput_drop"]
    assert value == pytest.approx(0.9)
    assert m.stats()["alerts"]["levels"] == {"tp": "critical"}


def test_store_failure_is_counted_and_retried(clock, tmp_path) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path / 'f.db'}")
    m = ModelMonitor(
        "f",
        store=store,
        clock=clock,
        start=False,
        sinks=[],
        config=MonitorConfig(sampling_rate=1.0),
    )
    m.record("a", "x", 0.9, 0.001)
    store.drop_all()
    m.flush()
    s = m.stats()
    assert s["counters"]["store_errors"] >= 1
    assert s["drops"]["store_rows"] >= 1  # the sampled record could not be written
    store.create()
    m.flush()  # the window is upserted again on the next write
    assert store.merged("f")["count"] == 1
    m.close()


def test_flush_batch_size_rounds(clock) -> None:
    m = _mon(clock, flush_batch_size=100, buffer_size=10_000)
    for i in range(1050):
        m.record(i, "a", 0.9, 0.001)
    m.record_batch(list(range(2000, 2500)), ["b"] * 500, [0.9] * 500, 0.001)
    assert m._step(force=False) is True  # one round of 100, a backlog remains
    assert m.stats()["counts"]["recorded"] == 100
    m.flush()
    assert m.stats()["counts"]["recorded"] == 1550
    assert m._step(force=False) is False
    m.close()


def _batch(m: ModelMonitor, k: int, n: int) -> None:
    m.record_batch([f"{k}-{i}" for i in range(n)], ["a"] * n, [0.9] * n, 0.001, ["text"] * n)


def test_half_full_detail_queue_is_written_before_the_store_interval(clock, tmp_path) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path}/s.db")
    cfg = MonitorConfig(sampling_rate=1.0, detail_buffer_size=100, store_interval_s=3600.0)
    m = ModelMonitor("email", config=cfg, store=store, clock=clock, start=False, sinks=[])
    for k in range(5):  # 60 sampled rows per step: over half the queue, written at once
        _batch(m, k, 60)
        assert m._step(force=False) is False
        clock.advance(0.2)
    assert store.count_rows("predictions") == 300
    assert m.drops["detail_buffer"] == 0
    _batch(m, 5, 40)  # under half: waits for the interval
    m._step(force=False)
    assert store.count_rows("predictions") == 300
    clock.advance(3600.0)
    m._step(force=False)
    assert store.count_rows("predictions") == 340
    m.close()


def test_after_a_failed_write_the_detail_queue_waits_for_the_interval(clock, tmp_path) -> None:
    store = MonitorStore(f"sqlite:///{tmp_path}/s.db")
    cfg = MonitorConfig(sampling_rate=1.0, detail_buffer_size=100, store_interval_s=60.0)
    m = ModelMonitor("email", config=cfg, store=store, clock=clock, start=False, sinks=[])
    store.detail_blocks.drop(store.engine)  # writes fail until it is back
    _batch(m, 0, 60)
    m._step(force=False)
    assert m.counters["store_errors"] == 1 and m.drops["store_rows"] >= 60
    store.detail_blocks.create(store.engine)
    _batch(m, 1, 60)
    m._step(force=False)  # half full, but the last write failed: no retry before the interval
    assert m.counters["store_errors"] == 1 and store.count_rows("predictions") == 0
    clock.advance(60.0)
    _batch(m, 2, 10)
    m._step(force=False)
    assert store.count_rows("predictions") == 70
    _batch(m, 3, 60)  # the store works again: early writes resume
    m._step(force=False)
    assert store.count_rows("predictions") == 130
    m.close()


def test_forked_child_starts_fresh_and_writes_as_its_own_process(tmp_path) -> None:
    import os

    store = MonitorStore(f"sqlite:///{tmp_path / 'fork.db'}")
    m = ModelMonitor(
        "fork",
        store=store,
        sinks=[],
        config=MonitorConfig(flush_interval_s=0.01, store_interval_s=0.05),
    )
    for i in range(10):
        m.record(f"parent-{i}", "a", 0.9, 0.001)
    m.flush()
    pid = os.fork()
    if pid == 0:  # child: empty state, a new process id, a running flusher
        code = 1
        try:
            ok = m.stats()["counts"]["predictions"] == 0 and m._thread is not None
            for i in range(5):
                m.record(f"child-{i}", "b", 0.8, 0.002)
            m.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    m.close()
    merged = store.merged("fork")
    assert merged["count"] == 15
    assert len(merged["processes"]) == 2
    assert merged["label_counts"] == {"a": 10, "b": 5}


def test_the_estimate_uses_the_reference_map_with_an_interval_and_does_not_warn(clock) -> None:
    # an under-confident model: confidence 0.6 means correct 9 times out of 10
    reference = {
        "class_counts": {"ham": 50, "spam": 50},
        "calibration": {"method": "isotonic", "knots_x": [0.0, 0.6, 1.0],
                        "knots_y": [0.5, 0.9, 1.0], "n": 5000, "level_var": 0.9 * 0.1 / 5000},
    }  # fmt: skip
    m = ModelMonitor("email", version="1", config=MonitorConfig(), clock=clock,
                     start=False, sinks=[], reference=reference)  # fmt: skip
    m.record_batch([f"p{i}" for i in range(1000)], np.array(["ham"] * 1000),
                   np.full(1000, 0.6), 0.001)  # fmt: skip
    for _ in range(4):  # the default rule fires after 2 evaluations below 0.85
        clock.advance(1.0)
        m.flush()
    s = m.stats()
    acc = s["accuracy"]
    assert acc["estimated"] == pytest.approx(0.9) and acc["estimated_method"] == "isotonic"
    assert acc["mean_confidence"] == pytest.approx(0.6)
    assert acc["estimated_lower"] < 0.9 < acc["estimated_upper"]
    # Wilson's at the effective n of both variances: about the normal interval's width here
    assert acc["estimated_upper"] - acc["estimated_lower"] == pytest.approx(
        2 * 1.96 * np.sqrt(0.09 / 1000 + 0.09 / 5000), rel=0.02
    )
    assert s["alerts"]["levels"]["estimated_accuracy"] == "ok"  # raw 0.6 would have warned
    assert m.metrics()["estimated_accuracy_upper"][0] == pytest.approx(acc["estimated_upper"])


def test_the_estimate_is_corrected_for_a_class_mix_shift(clock) -> None:
    from leanml._calibration import fit_confidence_map

    rng = np.random.default_rng(0)

    def model(n: int, prior: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        true = rng.choice(2, n, p=prior)
        right = rng.random(n) < np.array([0.95, 0.6])[true]
        pred = np.where(right, true, 1 - true)
        return np.array(["ham", "spam"])[pred], np.array(["ham", "spam"])[true], pred == true

    pred, true, ok = model(20_000, [0.7, 0.3])
    cmap = fit_confidence_map(np.full(20_000, 0.8), ok, predicted=pred, true=true)
    reference = {"class_counts": {"ham": 60, "spam": 40}, "calibration": cmap.to_dict()}
    m = ModelMonitor("email", version="1", config=MonitorConfig(), clock=clock,
                     start=False, sinks=[], reference=reference)  # fmt: skip
    pred, _, ok = model(2000, [0.2, 0.8])  # mostly spam, the class the model is weak on
    m.record_batch([f"p{i}" for i in range(2000)], pred, np.full(2000, 0.8), 0.001)
    m.flush()
    acc = m.stats()["accuracy"]
    assert acc["estimated_shift_adjusted"] is True
    expected = 0.2 * 0.95 + 0.8 * 0.6  # the accuracy under the new mix
    assert abs(cmap.apply(np.full(1, 0.8))[0] - expected) > 0.1  # the map alone is off
    assert acc["estimated"] == pytest.approx(expected, abs=0.03)
    assert acc["estimated_lower"] <= ok.mean() <= acc["estimated_upper"]
    m.close()


def test_redact_prefilters_give_the_same_text_as_every_pattern() -> None:
    from leanml.monitor import _redact as r

    def every(text: str) -> str:
        for pattern, mask in (
            (r._EMAIL, "<email>"),
            (r._URL, "<url>"),
            (r._PHONE, "<phone>"),
            (r._DIGITS, "<number>"),
        ):
            text = pattern.sub(mask, text)
        return text

    rng = np.random.default_rng(3)
    parts = [
        "a@b.co",
        "x",
        " ",
        "http://h.io/p",
        "www.w.org",
        "12345",
        "+1 (555) 010-9999",
        "٣٤٥٦٧٨٩",
    ]
    texts = ["".join(rng.choice(parts, 6)) for _ in range(2000)] + ["plain words only", ""]
    assert [r.redact(t) for t in texts] == [every(t) for t in texts]


def _whole_redaction(text: str) -> str:
    """The four redaction patterns, each over the whole text (what the fast path must equal)."""
    from leanml.monitor import _redact as r

    text = r._EMAIL.sub("<email>", text)
    text = r._URL.sub("<url>", text)
    text = r._PHONE.sub("<phone>", text)
    return r._DIGITS.sub("<number>", text)


def test_redact_of_stretches_around_marks_equals_the_patterns_over_the_text() -> None:
    """The e-mail and URL patterns run only between whitespace around '@' / '://' / 'www.':
    the same text as running them over the whole text (tabs, newlines, several marks in one
    stretch, marks at the ends)."""
    import random

    from leanml.monitor import _redact as r

    rng = random.Random(0)
    alpha = ["a", "b1", "@", ".", ":", "/", "www.", "://", " ", "-", "\n", "\t", "+", "x_9", "é"]
    alpha += ["\r", "\v", "\f"]
    texts = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 30))) for _ in range(5000)]
    texts += ["a@b.co\tc@d.org", "@x.io", "http://h.io/p@q.org www.", "x" * 3000 + " u@v.io"]
    assert [r.redact(t) for t in texts] == [_whole_redaction(t) for t in texts]


def test_redact_of_digit_regions_equals_the_patterns_over_the_text() -> None:
    """The phone and digit patterns run only over the stretches that start at a digit (found
    through a byte translation for ASCII texts, a pattern otherwise): the same text as both
    patterns over the whole text, on texts dense in digits, separators, ``+(``, word
    characters, Unicode digits and whitespace (NBSP, em space, \\x1c, \\v)."""
    import random

    from leanml.monitor import _redact as r

    rng = random.Random(1)
    alpha = ["a", "1", "12", "123", "4567", " ", "  ", "\t", "\n", "\v", "\x1c", "(", ")", ".",
             "-", "+", "+(", "x_9", "_", "é", "٣", "٤٥", "\u00a0", "\u2003", ":", "/", "@",
             "a@b.co", "www.", "http://h.io/p"]  # fmt: skip
    ascii_only = [a for a in alpha if a.isascii()]  # the byte-translation path
    texts = [
        "".join(rng.choice(alpha if i % 2 else ascii_only) for _ in range(rng.randint(0, 40)))
        for i in range(30000)
    ]
    texts += [
        "+1 (555) 010-9999",
        "call 555 123 4567.",
        "1234567",
        "a1234567",
        "12345 6",
        "(12) 345-67 x",
        "٣٤٥٦٧٨٩ and 12345",
        "+44 20 7946 0958\u00a0ok",
        "12 34 5",
    ]
    assert [r.redact(t) for t in texts] == [_whole_redaction(t) for t in texts]
    changed = sum(r.redact(t) != t for t in texts)
    assert changed > 5000  # the texts do hold what the patterns mask


@pytest.mark.parametrize("pause", [True, False])
def test_a_pause_in_recording_is_not_a_throughput_drop(clock, pause: bool) -> None:
    """Three windows without records: paused (set_paused), the throughput rule has no value
    and then leaves those windows out; not paused, the same silence is a drop and alerts."""
    m = _mon(clock, window_s=60)
    n = 0

    def minute(k: int) -> None:
        nonlocal n
        for _ in range(k):
            m.record(f"p{n}", "ham", 0.9, 0.001)
            n += 1
            clock.advance(60 / k)
        m.flush()

    for _ in range(12):
        minute(100)
    assert m.stats()["throughput"]["drop"] == pytest.approx(0.0)
    m.set_paused(pause)
    assert m.paused is pause and m.stats()["paused"] is pause
    for _ in range(3):
        clock.advance(60)
        m.flush()
    drop = m.stats()["throughput"]["drop"]
    assert (drop is None) if pause else drop == 1.0
    level = m.stats()["alerts"]["levels"]["throughput_drop"]
    assert level == ("ok" if pause else "critical")
    m.set_paused(False)
    assert not m.stats()["paused"]
    for _ in range(2):
        minute(100)
    tp = m.stats()["throughput"]
    assert tp["drop"] == pytest.approx(0.0)
    # the paused windows left out: the clock starts mid-window, so the 3 paused minutes touch 4
    assert tp["baseline_windows"] == (6 if pause else 10)
    minute(10)  # a real drop after the pause still alerts
    minute(10)
    assert m.stats()["throughput"]["drop"] > 0.8  # the critical level
    for _ in range(2):  # the rule fires after two rounds above it
        clock.advance(1)
        m.flush()
    assert m.stats()["alerts"]["levels"]["throughput_drop"] == "critical"


def test_a_nan_latency_is_left_out_of_the_sketches_not_the_chunk(clock) -> None:
    """It used to make the sketch ingest raise, after the chunk was partly counted, and the
    flusher dropped the whole chunk as invalid."""
    m = _mon(clock)
    m.record_batch(
        ["a", "b", "c"], ["ham", "spam", "ham"], [0.9, 0.8, 0.7], [0.001, math.nan, 0.002]
    )
    m.record("d", "ham", 0.9, math.nan)
    m.flush()
    s = m.stats()
    assert s["counters"]["invalid_batches"] == 0
    assert s["counts"]["by_label"] == {"ham": 3, "spam": 1}
    assert s["latency"]["count"] == 2 and s["latency"]["max"] == pytest.approx(0.002, rel=0.02)
