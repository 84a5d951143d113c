from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from leanml.monitor import ModelMonitor, MonitorConfig, MonitoredEstimator, monitored

TEXTS = [
    "cheap meds now",
    "win money fast",
    "meeting at noon",
    "lunch tomorrow?",
    "free money offer",
    "project status update",
] * 5
LABELS = ["spam", "spam", "ham", "ham", "spam", "ham"] * 5


@pytest.fixture
def model():
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)


def test_predict_is_transparent_and_recorded(model, clock) -> None:
    cfg = MonitorConfig(sampling_rate=1.0, store_inputs="text")
    m = monitored(model, name="email", config=cfg, clock=clock, start=False, sinks=[])
    assert isinstance(m, MonitoredEstimator)
    X = ["free money", "status meeting", "cheap offer"]
    np.testing.assert_array_equal(m.predict(X), model.predict(X))
    ids = m.last_prediction_ids
    assert len(ids) == 3 and len(set(ids)) == 3
    np.testing.assert_allclose(m.predict_proba(X[:1]), model.predict_proba(X[:1]))
    labels, ids2 = m.predict_with_ids(["lunch"])
    assert labels.tolist() == model.predict(["lunch"]).tolist() and len(ids2) == 1
    assert m.classes_.tolist() == ["ham", "spam"]  # delegated attribute
    m.record_ground_truth(ids[0], "spam")
    m.monitor.flush()
    s = m.monitor.stats()
    assert s["counts"]["recorded"] == 5
    assert s["ground_truth"]["joined"] == 1
    assert s["latency"]["count"] == 5 and s["latency"]["max"] >= 0
    texts = {r["input_text"] for r in m.monitor.sampled_records()}
    assert {"free money", "lunch"} <= texts
    m.close()


def test_last_prediction_ids_are_each_threads_own(model, clock) -> None:
    """The first predicting thread's ids are kept apart from the others' (LastIds); each
    thread reads its own last call's, by the one-input (C) and the batch path, and a thread
    that never predicted reads none."""
    with monitored(model, name="m", clock=clock, start=False, sinks=[]) as m:
        assert m.last_prediction_ids == []
        _, first = m.predict_with_ids(["free money"])  # this thread owns the field
        seen: dict[str, list[str]] = {}

        def other() -> None:
            seen["before"] = m.last_prediction_ids
            _, one = m.predict_with_ids(["lunch"])
            seen["one"], seen["after_one"] = one, m.last_prediction_ids
            m.predict(["status meeting", "cheap offer"])
            seen["after_batch"] = m.last_prediction_ids

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen["before"] == []
        assert seen["after_one"] == seen["one"] and len(seen["one"]) == 1
        assert len(seen["after_batch"]) == 2 and seen["one"][0] not in seen["after_batch"]
        assert m.last_prediction_ids == first  # the other thread left this one's alone
        labels, batch = m.predict_with_ids(["a", "b", "c"])
        assert m.last_prediction_ids == batch and len(batch) == 3
        m.predict(["one more"])
        (last,) = m.last_prediction_ids
        assert last not in batch and last not in first + seen["one"] + seen["after_batch"]


@pytest.mark.parametrize("kind", ["predict_proba", "decision_function"])
def test_one_input_is_recorded_as_the_batch_path_records_it(model, kind, clock) -> None:
    est = model if kind == "predict_proba" else make_pipeline(TfidfVectorizer(), LinearSVC())
    est.fit(TEXTS, LABELS)
    cfg = MonitorConfig(sampling_rate=1.0, store_inputs="text")
    X = ["free money", "status meeting", "cheap offer", "lunch at noon"]
    with monitored(est, name="m", config=cfg, clock=clock, start=False, sinks=[]) as m:
        singles = [m.predict([x])[0] for x in X]  # the one-input path (C)
        np.testing.assert_array_equal(m.predict(X), singles)  # the batch path (Python)
        assert singles == est.predict(X).tolist()
        m.monitor.flush()
        rows = m.monitor.sampled_records()
    assert len(rows) == 8
    by_text: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        by_text.setdefault(r["input_text"], []).append((r["label"], r["confidence"]))
    for x in X:  # the same label and confidence from both paths
        (one_label, one_conf), (batch_label, batch_conf) = by_text[x]
        assert one_label == batch_label
        assert one_conf == pytest.approx(batch_conf, rel=1e-12)


def test_errors_are_counted_and_reraised(model, clock) -> None:
    mon = ModelMonitor("email", clock=clock, start=False, sinks=[])
    m = monitored(model, name="email", monitor=mon)
    with pytest.raises(AttributeError):  # the vectorizer cannot lower-case an array
        m.predict(np.zeros((2, 3, 4)))
    mon.flush()
    assert mon.stats()["counts"]["errors"] >= 1
    mon.close()


def test_models_without_predict_proba(clock) -> None:
    svc = make_pipeline(TfidfVectorizer(), LinearSVC()).fit(TEXTS, LABELS)
    with monitored(svc, name="svc", clock=clock, start=False, sinks=[]) as m:
        np.testing.assert_array_equal(m.predict(TEXTS[:4]), svc.predict(TEXTS[:4]))
        m.monitor.flush()
        assert m.monitor.stats()["counts"]["recorded"] == 4


def test_oov_is_measured_from_the_pipeline_vectorizer(model, clock) -> None:
    ref = {"class_counts": {"ham": 1, "spam": 1}, "confidences": [0.6, 0.7], "oov_rate": 0.0}
    cfg = MonitorConfig(sampling_rate=1.0)
    with monitored(
        model, name="e", config=cfg, clock=clock, start=False, sinks=[], reference=ref
    ) as m:
        m.predict(["cheap money zzzunknown qqqunknown"])
        m.monitor.flush()
        drift = m.monitor.stats()["drift"]
        assert drift["oov_rate"] == pytest.approx(0.5)
        assert drift["oov_delta"] == pytest.approx(0.5)


class _LabelsOnly:
    """A model with predict only (no scores)."""

    def predict(self, X):
        return np.array([float(len(x)) for x in X])


def test_models_without_scores_and_label_bound(clock) -> None:
    from leanml.monitor import MonitorStore

    store = MonitorStore("sqlite://")
    cfg = MonitorConfig(max_labels=3)
    with monitored(
        _LabelsOnly(), name="reg", config=cfg, clock=clock, start=False, sinks=[], store=store
    ) as m:
        out = m.predict(["a", "bb", "ccc", "dddd", "eeeee"])
        assert out.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
        with pytest.raises(AttributeError):
            m.predict_proba(["a"])
        m.monitor.flush()
        s = m.monitor.stats()
        assert s["counts"]["by_label"] == {"1.0": 1, "2.0": 1, "3.0": 1, "__other__": 2}
        assert s["drops"]["labels_overflow"] == 2
        assert s["accuracy"]["estimated"] is None  # no confidences: no estimate
        m.record_ground_truth(m.last_prediction_ids[0], 1.0)
        m.monitor.flush()
        assert m.monitor.stats()["accuracy"]["realized"]["accuracy"] == 1.0
        assert store.merged("reg")["estimated_accuracy"] is None


def test_compact_models_feed_oov_from_their_one_pass(model, clock) -> None:
    from leanml.compress import to_compact

    compact = to_compact(model)[0]
    ref = {"class_counts": {"ham": 1, "spam": 1}, "confidences": [0.6, 0.7], "oov_rate": 0.0}
    cfg = MonitorConfig(sampling_rate=0.0)  # counted for every prediction, sampled or not
    with monitored(
        compact, name="c", config=cfg, clock=clock, start=False, sinks=[], reference=ref
    ) as m:
        assert m.monitor.analyzer is None  # nothing to tokenize with: the counts come along
        X = ["cheap money zzzunknown qqqunknown", "meeting at noon", "qqq lunch"]
        for x in X:  # single texts: the one-pass path
            assert m.predict([x]).tolist() == compact.predict([x]).tolist()
            assert len(m.last_prediction_ids) == 1
        labels, ids = m.predict_with_ids(X)  # a batch
        assert labels.tolist() == compact.predict(X).tolist() and len(ids) == 3
        np.testing.assert_allclose(m.predict_proba(X[:2]), compact.predict_proba(X[:2]))
        m.monitor.flush()
        # "at" is no token (2+ word characters) and "noon" is known: 0; 2 of 4; 1 of 2
        oov = sorted(m.monitor.state.recent_oov.values().tolist())
        assert oov == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5]
        assert m.monitor.stats()["counts"]["recorded"] == 8
        assert m.record_ground_truth(ids[0], "spam") == "joined"


@pytest.mark.parametrize("texts", [1, 2], ids=["one-input path", "batch path"])
def test_a_due_step_runs_in_the_predict_call_that_reaches_it(model, clock, texts: int) -> None:
    """flush_on_record: the predict call after the step's due time runs it (the one-input
    path in C, the batch path through record_batch); the flusher thread sleeps an hour."""
    cfg = MonitorConfig(flush_interval_s=3600.0)
    with monitored(model, name="m", config=cfg, clock=clock, sinks=[]) as m:
        st = m.monitor.state
        m.predict(TEXTS[:texts])
        assert st.total == 0 and m.monitor.counters["flushes"] == 0
        clock.advance(3600.0)
        m.predict(TEXTS[:texts])
        assert st.total == 2 * texts and m.monitor.counters["flushes"] == 1


def test_the_monitor_publishes_its_own_overhead(model, clock) -> None:
    from leanml.monitor._read import CALLER_SAMPLE_EVERY
    from leanml.monitor.sketch import LogSketch

    with monitored(model, name="e", clock=clock, start=False, sinks=[]) as m:
        before = m.monitor.stats()["overhead"]
        assert before["ratio"] is None and before["caller_samples"] == 0
        for i in range(3 * CALLER_SAMPLE_EVERY):
            m.predict([TEXTS[i % len(TEXTS)]])
            if i % 50 == 0:
                clock.advance(61.0)  # several windows: the lifetime view spans them
                m.monitor.flush()
        m.monitor.flush()
        ov = m.monitor.stats()["overhead"]
        assert ov["caller_samples"] == 3 and ov["caller_s"] > 0
        assert ov["flusher_cpu_s"] > 0 and ov["model_s"] > 0
        assert ov["monitor_cpu_s"] == pytest.approx(ov["flusher_cpu_s"] + ov["caller_s"])
        assert ov["ratio"] == pytest.approx(ov["monitor_cpu_s"] / ov["model_s"])
        text = m.monitor.prometheus_text()
        assert 'leanml_monitor_overhead_ratio{model="e",variant="default"}' in text
        assert "leanml_monitor_cpu_seconds_total{" in text
        # the running lifetime sketch is the merge of every window's (retired ones included)
        st = m.monitor.state
        merged = LogSketch(st.config.relative_accuracy)
        merged.merge(st.retired)
        for w in st.windows.values():
            merged.merge(w.sketch)
        life = m.monitor.latency_sketch()
        assert life.count == merged.count == 3 * CALLER_SAMPLE_EVERY
        np.testing.assert_allclose(life.quantiles([0.5, 0.99]), merged.quantiles([0.5, 0.99]))


def test_an_original_and_its_compact_variant_report_the_rate_of_the_reference(clock) -> None:
    """With word pairs among its terms, an original pipeline's live out-of-vocabulary rate is
    counted on the words the reference and the compact variant count: the three agree on the
    same texts (counting the pairs too gave the original several times its reference)."""
    from leanml.compress import to_compact
    from leanml.datasets import load_intent
    from leanml.training import oov_rate

    ds = load_intent()
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2), LogisticRegression())
    pipe.fit(list(ds.X_train)[:3000], list(ds.y_train)[:3000])
    texts = [str(t) for t in list(ds.X_test)[:300]]
    reference = oov_rate(pipe, texts)
    assert reference is not None and 0.01 < reference < 0.5
    # every text scored: all sampled, a budget that never runs out
    cfg = MonitorConfig(sampling_rate=1.0, overhead_budget=1e6, max_oov_per_flush=1000)
    rates = {}
    for kind, model in (("original", pipe), ("compact", to_compact(pipe)[0])):
        with monitored(model, name=kind, config=cfg, clock=clock, start=False, sinks=[]) as m:
            m.predict(texts[:1])  # the budget's first item measures the cost
            m.monitor.flush()
            m.predict(texts)
            m.monitor.flush()
            live = m.monitor.state.recent_oov.values()
            assert live.size == 1 + len(texts)  # the intent texts all have words
            rates[kind] = float(live[1:].mean())
    assert rates["original"] == pytest.approx(reference, rel=1e-9)
    assert rates["compact"] == pytest.approx(reference, rel=1e-9)
