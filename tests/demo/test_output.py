"""The demo's printed tables and JSON carry every figure of the results."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from leanml.demo.output import print_results, write_json


def _results() -> dict:
    figures = {
        "accuracy": 0.912,
        "artifact_bytes": 2048,
        "load_ms": 12.0,
        "p50_ms": 0.101,
        "p95_ms": 0.202,
        "p99_ms": 0.303,
        "predictions_per_s": 9876.0,
    }
    monitoring = {
        "overhead_pct": 4.0,
        "predict_us": 100.0,
        "monitored_predict_us": 104.0,
        "true_accuracy": 0.9,
        "joined_accuracy": 0.88,
        "estimated_accuracy": None,
        "ground_truth": {"joined": 70, "late": 3, "duplicate": 2, "unknown": 5},
        "labels_missing": 30,
        "health": "ok",
    }
    day = {
        "day": "2023-11-14",
        "start": 1_699_920_000.0,
        "predictions": 40123,
        "peak_per_s": 1.16,
        "peak_hour": 10,
        "night_per_s": 0.13,
        "labels_joined": 24070,
        "labels_late": 1356,
        "labels_missing": 14041,
        "drift": {
            "name": "spam wave",
            "what": "spam wave: 80% of the mail is spam",
            "start": 1_699_920_000.0 + 13 * 3600,
            "end": 1_699_920_000.0 + 15 * 3600,
            "rule": "class_drift",
            "detection_s": 1800.0,
        },
        "alerts_fired": 2,
        "alerts_resolved": 2,
        "health": "healthy",
    }
    model = {
        "dataset": "spamassassin",
        "served_variant": "compact",
        "fallback_reason": None,
        "variants": {"original": figures, "compact": {**figures, "accuracy": 0.905}},
        "monitoring": monitoring,
        "day": day,
        "shadow": {
            "enabled": True,
            "shadowed": 412,
            "agreement": 0.9927,
            "agreement_lower": 0.9787,
            "agreement_upper": 0.9975,
            "fallen_back": False,
        },
    }
    intent = {
        **model,
        "fallback_reason": "guard failed",
        "shadow": {"enabled": False, "reason": "serving the original: guard failed"},
    }
    return {
        "models": {"email": model, "intent": intent},
        "models_dir": "/tmp/models",
        "store_url": "sqlite:///m.db",
        "notes": ["intent: bundled subset"],
        "report": "/tmp/report/report.html",
        "elapsed_s": 1.5,
    }


def test_print_results_shows_both_tables_and_every_note() -> None:
    console = Console(record=True, width=200)
    print_results(console, _results())
    text = console.export_text()
    assert "compact (serving)" in text and "0.905" in text and "2.0 KB" in text
    assert "+4.0 µs (+4%)" in text and "0.880" in text
    assert "intent: serving the original: guard failed" in text
    assert "email: serving the original" not in text
    assert "note: intent: bundled subset" in text
    assert "report: /tmp/report/report.html" in text and "finished in 1.5 s" in text
    # the day's summary: predictions, peak vs night, labels, the drift phase, detection, alerts
    assert "a simulated day (2023-11-14, UTC)" in text and "40,123" in text
    assert "1.16/0.13" in text and "13:00 spam wave, +30 min" in text and "2 / 2" in text
    # the shadow check: the compact's live agreement, or "—" and why there is none
    assert "shadow agreement [95%]" in text and "0.993 [0.979, 0.998] n=412" in text
    assert "— serving the original: guard failed" in text
    assert "shadow check failed" not in text


def test_a_failed_shadow_check_is_a_note_with_its_time_and_reason() -> None:
    out = _results()
    email = out["models"]["email"]
    reason = "live agreement 0.912 [0.880, 0.936] < 0.97 over 412 shadowed predictions"
    start = email["day"]["start"]
    email["shadow"] |= {"fallen_back": True, "fallen_back_at": start + 9.5 * 3600, "reason": reason}
    console = Console(record=True, width=250)
    print_results(console, out)
    text = console.export_text()
    assert "0.993 [0.979, 0.998] n=412 FAILED" in text
    assert "email: the shadow check failed at 09:30 (leanml serve would fall back" in text
    assert reason in text


def test_write_json_round_trips(tmp_path: Path) -> None:
    out = _results()
    path = tmp_path / "deep" / "demo.json"
    write_json(out, path, Console(record=True))
    assert json.loads(path.read_text()) == out


def test_the_overhead_cell_adds_the_self_measured_share() -> None:
    from leanml.demo.output import _overhead

    m = {"predict_us": 40.0, "monitored_predict_us": 42.0, "overhead_pct": 5.0}
    assert _overhead(m) == "+2.0 µs (+5%)"
    assert _overhead({**m, "self_measured_overhead_pct": 3.24}) == "+2.0 µs (+5%), self 3.2%"
    both = {**m, "self_measured_overhead_pct": 3.24, "monitor_cpu_per_prediction_us": 1.26}
    assert _overhead(both) == "+2.0 µs (+5%), self 3.2% (1.3 µs)"
