from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leanml.groundtruth import GroundTruth
from leanml.monitor import ModelMonitor, MonitorConfig, render_prometheus
from leanml.monitor.prometheus import LATENCY_BUCKETS


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_parses_and_matches_stats(clock) -> None:
    ref = {"class_counts": {"ham": 1, "spam": 1}, "confidences": [0.9, 0.8]}
    a = ModelMonitor("email", variant="compact", clock=clock, start=False, sinks=[], reference=ref)
    b = ModelMonitor('in"tent', clock=clock, start=False, sinks=[])
    lat = np.random.default_rng(0).lognormal(-8, 1.0, 5000)  # mostly sub-millisecond
    gt = GroundTruth(clock=clock)
    a.ground_truth = gt
    ids = gt.issue(5000, 0, [0, 1] * 2500, 0.9)
    a.record_batch(ids, ["ham", "spam"] * 2500, np.full(5000, 0.9), lat)
    b.record("b1", "x", 0.5, 0.02)
    assert gt.join([(ids[0], "ham"), ("zz", "ham")])[0] == ["joined", "never_seen"]
    a.record_joined([ids[0]], ["ham"], ["ham"], [0.9], [clock.t])
    a.record_error()
    clock.advance(1)
    a.flush()
    b.flush()
    text = render_prometheus([a, b])
    fam = _families(text)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in fam.values() for s in f.samples
    }

    def val(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    base = {"model": "email", "variant": "compact"}
    assert val("leanml_predictions_total", **base) == 5000
    assert val("leanml_predictions_total", model='in"tent', variant="default") == 1
    assert val("leanml_predictions_by_label_total", label="spam", **base) == 2500
    assert val("leanml_prediction_errors_total", **base) == 1
    assert val("leanml_ground_truth_total", outcome="joined", **base) == 1
    assert val("leanml_ground_truth_total", outcome="never_seen", **base) == 1
    assert val("leanml_monitor_dropped_total", buffer="record_buffer", **base) == 0
    assert fam["leanml_prediction_latency_seconds"].type == "histogram"
    assert val("leanml_prediction_latency_seconds_count", **base) == 5000
    assert val("leanml_prediction_latency_seconds_sum", **base) == pytest.approx(lat.sum())
    for le in LATENCY_BUCKETS:
        got = val("leanml_prediction_latency_seconds_bucket", le=repr(float(le)), **base)
        lo = int((lat <= le * (1 - 0.01)).sum())
        hi = int((lat <= le * (1 + 0.01)).sum())
        assert lo <= got <= hi, le  # exact up to values within the sketch accuracy of a bound
    assert val("leanml_prediction_latency_seconds_bucket", le="+Inf", **base) == 5000
    sub_ms = [le for le in LATENCY_BUCKETS if le < 1e-3]
    assert len(sub_ms) >= 6
    p99 = val("leanml_prediction_latency_window_seconds", quantile="0.99", **base)
    assert p99 == pytest.approx(a.stats()["latency"]["p99"])
    assert val("leanml_accuracy", kind="estimated", **base) == pytest.approx(0.9)
    assert val("leanml_accuracy", kind="realized", **base) == 1.0
    # intervals and sample sizes: Wilson for the one labeled prediction, the estimate's own
    st = a.stats()
    assert val("leanml_accuracy_lower", kind="realized", **base) == pytest.approx(
        st["accuracy"]["realized"]["accuracy_lower"]
    )
    assert val("leanml_accuracy_lower", kind="realized", **base) < 0.25  # one label: wide
    assert val("leanml_accuracy_upper", kind="realized", **base) == 1.0
    assert val("leanml_accuracy_samples", kind="realized", **base) == 1
    assert val("leanml_accuracy_samples", kind="estimated", **base) == 2000  # recent window
    lo = val("leanml_accuracy_lower", kind="estimated", **base)
    assert lo < 0.9 < val("leanml_accuracy_upper", kind="estimated", **base)
    for side in ("lower", "upper"):
        assert val(f"leanml_drift_score_{side}", score="class_psi", **base) == pytest.approx(
            st["drift"]["intervals"]["class_psi"][side == "upper"]  # type: ignore[index]
        )
    assert val("leanml_drift_samples", score="confidence_ks", **base) == 2000
    assert val("leanml_model_health", **base) == 0
    assert val("leanml_alert_level", rule="latency_p99", **base) == 0
    assert val("leanml_pending_joins", **base) == 4999
    assert ("leanml_drift_score", tuple(sorted({"score": "class_psi", **base}.items()))) in samples
    # every family appears once even with two monitors
    assert text.count("# TYPE leanml_predictions_total ") == 1
    assert a.prometheus_text().startswith("# HELP")
    a.close()
    b.close()


def test_empty_monitor_renders(clock) -> None:
    m = ModelMonitor("e", clock=clock, start=False, sinks=[], config=MonitorConfig())
    fam = _families(m.prometheus_text())
    assert "leanml_prediction_latency_seconds" in fam
    m.close()


def test_a_class_psi_without_interval_exports_the_samples_it_needs(clock) -> None:
    """150 reference classes, 200 predictions: no class_psi interval (< 5 per class), said in
    stats() and as leanml_drift_interval_needed_samples (750)."""
    ref = {"class_counts": {f"c{i}": 10 for i in range(150)}, "confidences": [0.5, 0.9]}
    m = ModelMonitor("intent", clock=clock, start=False, sinks=[], reference=ref)
    m.record_batch([f"i{i}" for i in range(200)], [f"c{i % 150}" for i in range(200)],
                   np.full(200, 0.6), np.full(200, 0.001))  # fmt: skip
    clock.advance(1)
    m.flush()
    drift = m.stats()["drift"]
    assert drift is not None and "class_psi" not in drift["intervals"]
    assert drift["no_interval"]["class_psi"]["needed"] == 750  # type: ignore[typeddict-item]
    samples = {
        (s.name, s.labels.get("score")): s.value
        for f in _families(m.prometheus_text()).values()
        for s in f.samples
    }
    assert samples[("leanml_drift_interval_needed_samples", "class_psi")] == 750
    assert ("leanml_drift_score_lower", "class_psi") not in samples
    assert ("leanml_drift_score_lower", "confidence_ks") in samples
    m.close()
