"""Each insight rule on constructed situations: it fires when it should, stays silent otherwise."""

from __future__ import annotations

import pytest

from leanml.dashboard.data import ModelData, ReportData, WindowPoint
from leanml.dashboard.insights import (
    accuracy_drop,
    calibration_gap,
    class_mix_shift,
    compression_result,
    error_rate,
    generate_insights,
    label_coverage,
    latency_vs_load,
    memory_growth,
)
from leanml.monitor import DRIFT_SCORES

T0 = 1_800_000_000.0


def windows(n: int = 9, **per_window) -> list[WindowPoint]:
    """n one-minute windows; keyword values are constants or callables of the window index."""
    out = []
    for i in range(n):
        kw = {k: (v(i) if callable(v) else v) for k, v in per_window.items()}
        kw.setdefault("count", 600)
        kw.setdefault("confidence_sum", 0.9 * kw["count"])
        out.append(WindowPoint(T0 + 60 * i, 60.0, **kw))
    return out


def model(ws: list[WindowPoint] | None = None, **kw) -> ModelData:
    md = ModelData("email", windows=ws or [], **kw)
    md.count = md.count or sum(w.count for w in md.windows)
    return md


def test_latency_vs_load_blames_load_when_throughput_rose_with_p99():
    ws = windows(
        count=lambda i: 600 if i < 3 else 1800,
        p99=lambda i: 0.002 if i < 3 else 0.006,
        p50=0.001,
    )
    md = model(ws, serving={"batching": {"queue_wait_p99_s": 0.004}})
    ins = latency_vs_load(md)
    assert ins is not None and "the cause is load, not the model" in ins.text
    assert "2.00 ms to 6.00 ms" in ins.text and "10.0 to 30.0 predictions/s" in ins.text
    assert "queue wait p99 is 4.00 ms" in ins.text


def test_latency_vs_load_blames_the_model_when_load_is_flat():
    ws = windows(p99=lambda i: 0.002 if i < 3 else 0.005, p50=0.001)
    ins = latency_vs_load(model(ws))
    assert ins is not None and "the cause is not load" in ins.text


def test_latency_vs_load_silent_when_p99_is_stable_or_data_thin():
    assert latency_vs_load(model(windows(p99=0.002, p50=0.001))) is None
    assert latency_vs_load(model(windows(2, p99=lambda i: 0.001 * (1 + 5 * i)))) is None
    assert latency_vs_load(model([])) is None


def test_accuracy_drop_names_drift_as_the_cause():
    ws = windows(
        confidence_sum=lambda i: 600 * (0.9 if i < 6 else 0.6),
        drift=lambda i: {
            "class_psi": 0.02 if i < 6 else 0.4,
            "confidence_ks": 0.3 * (i >= 6),
            "oov_delta": 0.1 * (i >= 6),
        },
    )
    ins = accuracy_drop(model(ws))
    assert ins is not None and ins.severity == "critical"
    assert "estimated accuracy fell from 0.900 to 0.600" in ins.text
    assert "class PSI 0.40" in ins.text and "the traffic changed" in ins.text
    # the evidence carries every drift score of the recent windows (None where none was scored)
    drift = {k: ins.evidence[k] for k in DRIFT_SCORES}
    assert drift == pytest.approx(
        {
            "class_psi": 0.4,
            "class_chi2": None,
            "confidence_ks": 0.3,
            "input_length_ks": None,
            "oov_delta": 0.1,
        }
    )


def test_accuracy_drop_prefers_realized_accuracy_and_says_when_no_drift():
    ws = windows(
        labeled=100,
        labeled_correct=lambda i: 90 if i < 6 else 70,
        drift={"class_psi": 0.01},
    )
    ins = accuracy_drop(model(ws))
    assert ins is not None and ins.evidence["kind"] == "realized"
    assert "without input drift" in ins.text and "0.900 to 0.700" in ins.text


def test_accuracy_drop_silent_when_stable():
    assert accuracy_drop(model(windows())) is None
    small = windows(confidence_sum=lambda i: 600 * (0.9 if i < 6 else 0.88))
    assert accuracy_drop(model(small)) is None


def test_calibration_gap_fires_on_overconfidence_only_with_enough_labels():
    ws = windows(labeled=50, labeled_correct=35)  # realized 0.70, estimated 0.90
    ins = calibration_gap(model(ws))
    assert ins is not None and "over-confident by 0.200" in ins.text and "450 labeled" in ins.text
    assert calibration_gap(model(windows(1, labeled=50, labeled_correct=35))) is None  # n < 100
    assert calibration_gap(model(windows(labeled=50, labeled_correct=44))) is None  # gap 0.02


def test_class_mix_shift():
    md = model(
        windows(1),
        label_counts={"spam": 500, "ham": 100},
        reference_counts={"spam": 300, "ham": 700},
    )
    ins = class_mix_shift(md)
    assert ins is not None and "83.3% of predictions against 30.0%" in ins.text
    md.label_counts = {"spam": 190, "ham": 410}
    assert class_mix_shift(md) is None
    md.reference_counts = None
    assert class_mix_shift(md) is None


def test_label_coverage():
    md = model(windows(), joined=20)
    ins = label_coverage(md)
    assert ins is not None and "only 0.4% of 5400 predictions" in ins.text
    md.joined = 0
    none = label_coverage(md)
    assert none is not None and "none of 5400 predictions received ground truth" in none.text
    md.joined = 1000
    assert label_coverage(md) is None


def test_error_rate():
    md = model(windows(), errors=300)
    ins = error_rate(md)
    assert ins is not None and ins.severity == "critical" and "300 of 5700" in ins.text
    md.errors = 10
    assert error_rate(md) is None


def test_compression_result_passed_and_failed():
    guard = {
        "passed": True,
        "original_bytes": 10 * 2**20,
        "compact_bytes": 2 * 2**20,
        "accuracy_before": 0.97,
        "accuracy_after": 0.969,
        "agreement": 0.995,
        "reason": "accepted",
    }
    ins = compression_result(model(compression={"guard": guard}))
    assert ins is not None and "80.0% smaller" in ins.text and "99.50% agreement" in ins.text
    failed = compression_result(
        model(compression={"guard": {"passed": False, "reason": "not smaller"}})
    )
    assert failed is not None and "no compact variant passed" in failed.text
    assert compression_result(model()) is None


def _resources(rss_end: int) -> list[dict]:
    return [
        {"ts": T0, "process": "h:1", "rss_bytes": 200 * 2**20, "cpu_percent": 5.0},
        {"ts": T0 + 600, "process": "h:1", "rss_bytes": rss_end, "cpu_percent": 5.0},
    ]


def test_memory_growth():
    data = ReportData(T0, T0 + 600, {}, _resources(400 * 2**20))
    ins = memory_growth(data)
    assert ins is not None and "from 200 to 400 MiB in 10 min" in ins.text
    assert memory_growth(ReportData(T0, T0 + 600, {}, _resources(210 * 2**20))) is None


def test_generate_insights_runs_every_rule_and_cites_numbers():
    md = model(windows(), errors=300, joined=1000)
    data = ReportData(T0, T0 + 600, {"email": md}, _resources(400 * 2**20))
    rules = {i.rule for i in generate_insights(data)}
    assert rules == {"error_rate", "memory_growth"}
