from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from leanml.demo import monitoring_demo


def test_monitoring_demo_counts_every_label() -> None:
    rng = np.random.default_rng(0)
    words = {
        "spam": ["cheap", "win", "money", "offer", "free"],
        "ham": ["meeting", "lunch", "project", "notes", "team"],
    }
    y = ["spam" if rng.random() < 0.4 else "ham" for _ in range(600)]
    # 15% of texts use the other class's words: the model is right about 85% of the time
    X = [
        " ".join(
            rng.choice(
                words[lab if rng.random() > 0.15 else ("ham" if lab == "spam" else "spam")], 4
            )
        )
        for lab in y
    ]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X[:300], y[:300])
    out = monitoring_demo(
        model,
        X[300:],
        y[300:],
        name="email",
        missing_rate=0.3,
        mean_delay_s=900,
        pending_max_age_s=1800,
        overhead_texts=20,
        overhead_rounds=1,
        overhead_seconds=0.0,
    )
    gt = out["ground_truth"]
    assert gt["joined"] + gt["duplicate"] + gt["late"] + gt["unknown"] == out["labels_sent"]
    assert gt["unknown"] == 5
    assert gt["late"] > 0 and gt["evicted_age"] >= gt["late"]
    assert 150 < gt["joined"] < 210
    assert abs(out["joined_accuracy"] - out["true_accuracy"]) < 0.08
    assert 0 < out["estimated_accuracy"] <= 1
    assert out["overhead"]["predict_us"] > 0
    assert out["overhead"]["monitor_cpu_per_prediction_us"] > 0


def test_settled_overhead_is_the_monitor_cpu_of_what_was_recorded_since() -> None:
    from leanml.demo.monitoring import settled_overhead
    from leanml.monitor import ModelMonitor

    m = ModelMonitor("x", sinks=[])  # its flusher running
    m.record("warm", "a", 0.9, 0.001, input="some text")
    m.flush()
    before = m.stats()
    for i in range(500):
        m.record(f"p{i}", "a", 0.9, 0.001, input=f"text {i}")
    own = settled_overhead(m, before)
    assert m.stats()["counts"]["buffered"] == 0  # the flusher took them (waited for)
    assert own["monitor_cpu_per_prediction_us"] > 0
    # one snapshot for both: the CPU over the 500 predictions and over their 0.5 s of model time
    per_model_s = own["monitor_cpu_per_prediction_us"] * 500 / 1e6 / 0.5
    assert own["self_measured_overhead_pct"] == pytest.approx(100 * per_model_s)
    assert own["flusher_cpu_per_prediction_us"] > 0  # its step took them
    assert own["caller_cpu_per_prediction_us"] >= 0  # record() alone times no caller samples
    assert own["caller_cpu_per_prediction_us"] + own["flusher_cpu_per_prediction_us"] == (
        pytest.approx(own["monitor_cpu_per_prediction_us"])
    )
    m.close()
