"""The demo's simulated day, read back from the report's chart data: its meaning, not its pixels.

One email day (the bundled SpamAssassin corpus, a small TF-IDF + logistic regression) is simulated
into a SQLite store and reported; the tests read the JSON the report writes beside each PNG. The
day, its report and the model take 25-30 s on the shared 2-core machine, so those tests are
``slow``; the pieces of the plan (traffic shape, drift phases, fitted rules) are tested directly.
``test_readme_images_come_from_the_day`` also regenerates the two report charts the README shows
(docs/report-drift.png, docs/report-accuracy.png): both are deterministic in the seed (the drift
and accuracy of the day do not depend on measured latencies), so a rerun rewrites them unchanged.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from leanml.config import AlertRule, Settings
from leanml.dashboard import build_report
from leanml.datasets import load_dataset
from leanml.demo.day import (
    DAY_S,
    WINDOW_S,
    day_rules,
    drift_phase,
    simulate_day,
    traffic_rate,
)
from leanml.monitor import MonitorStore
from leanml.training import make_reference

REPO = Path(__file__).resolve().parents[2]
DAY = 19_675 * 86_400.0  # 2023-11-14 00:00 UTC
WINDOWS = int(DAY_S // WINDOW_S)


def test_the_traffic_shape_has_a_morning_peak_and_a_quiet_night():
    rate = {h: traffic_rate(h) for h in np.arange(0, 24, 0.5)}
    night = max(r for h, r in rate.items() if h < 5)
    assert max(r for h, r in rate.items() if 7 <= h < 12) >= 5 * night
    assert max(rate, key=rate.__getitem__) in (9.0, 9.5, 10.0, 10.5, 11.0)
    assert min(rate.values()) * WINDOW_S >= 200  # every window holds a rule's min_samples


def test_each_task_drifts_in_the_afternoon_in_its_own_way():
    y = np.array(["ham"] * 6 + ["spam"] * 3 + ["hard_ham"])
    email = drift_phase("email", y, np.ones(len(y), bool))
    assert email.weights["spam"] == pytest.approx(0.8) and 12 <= email.start_h < email.end_h <= 18
    sentiment = drift_phase("sentiment", ["negative", "neutral", "positive"], np.ones(3, bool))
    assert sentiment.end_h == 24 and sentiment.weights["negative"] == pytest.approx(0.75)
    intents = np.array([f"i{k}" for k in range(10)] * 10)
    correct = np.array([k % 10 not in (3, 7) for k in range(100)])  # i3 and i7 always wrong
    intent = drift_phase("intent", intents, correct)
    hot = sorted(intent.weights, key=intent.weights.__getitem__)[-4:]
    assert {"i3", "i7"} <= set(hot) and sum(intent.weights[c] for c in hot) == pytest.approx(0.85)
    assert intent.active(15.0) and not intent.active(11.0)


def test_rules_sit_above_the_sampling_noise_of_each_score():
    few = {"class_counts": {"a": 60, "b": 40}, "confidences": [0.9] * 500}
    many = {"class_counts": {f"c{k}": 20 for k in range(150)}, "confidences": [0.7] * 3000}
    by_name = [{r.name: r for r in day_rules(ref, 0.9)} for ref in (few, many)]
    assert by_name[0]["class_drift"].warning == 0.1  # two classes: the usual PSI threshold holds
    assert by_name[1]["class_drift"].warning > 1.0  # 150 classes in 200 predictions: noise > 1
    assert by_name[0]["confidence_drift"].warning > 0.1  # KS noise of 200 against 500
    assert by_name[0]["realized_accuracy"].warning == pytest.approx(0.82)
    assert by_name[1]["estimated_accuracy"].warning == pytest.approx(0.62)
    assert "throughput_drop" not in by_name[0]  # a daily shape would fire it every evening


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("day")
    ds = load_dataset("email", settings=Settings.load(env={}).replace(allow_download=False))
    model = make_pipeline(
        TfidfVectorizer(min_df=2, max_features=20_000, sublinear_tf=True),
        LogisticRegression(max_iter=300),
    ).fit([x[:3000] for x in ds.X_train], ds.y_train)  # heads of the mails: a quicker fit
    url = f"sqlite:///{tmp / 'store.db'}"
    MonitorStore(url).close()  # the tables
    summary = simulate_day(
        model,
        ds,
        url,
        name="email",
        task="email",
        day_start=DAY,
        reference=make_reference(model, ds.X_val, ds.y_val),  # with its calibration
    )
    report = build_report(
        url,
        tmp / "report",
        since=DAY,
        until=DAY + DAY_S + 60,
        rules={"email": [AlertRule(**r) for r in summary["rules"]]},
    )
    charts = {p.stem: json.loads(p.read_text()) for p in (tmp / "report").glob("*.json")}
    return {"summary": summary, "report": report, "charts": charts, "dir": tmp / "report"}


def _hours(chart: dict[str, Any]) -> np.ndarray:
    return (np.asarray(chart["t"]) - DAY) / 3600.0


@pytest.mark.slow
def test_the_morning_peak_has_three_times_the_night_throughput(day):
    chart = day["charts"]["email-throughput"]
    hours, rate = _hours(chart), np.asarray(chart["series"]["predictions"])
    night = rate[hours < 5].mean()
    peak = rate[(hours >= 7) & (hours < 12)].max()
    assert peak >= 3 * night, (peak, night)
    s = day["summary"]
    assert s["peak_per_s"] >= 3 * s["night_per_s"] and 7 <= s["peak_hour"] < 12
    assert sum(chart["series"]["count"]) == s["predictions"]  # every prediction was seen


@pytest.mark.slow
def test_drift_crosses_its_threshold_in_the_drift_phase_and_not_before(day):
    chart = day["charts"]["email-drift"]
    drift = day["summary"]["drift"]
    warning = next(
        x["value"]
        for x in chart["thresholds"]
        if x["rule"] == "class_drift" and x["level"] == "warning"
    )
    t, psi = np.asarray(chart["t"]), np.asarray(chart["series"]["class_psi"], dtype=float)
    before = psi[t < drift["start"]]
    during = psi[(t >= drift["start"]) & (t < drift["end"])]
    assert len(before) > 20 and len(during) >= 3
    assert before.max() <= warning < during.max()
    assert drift["alerts_before_start"] == 0


@pytest.mark.slow
def test_an_alert_opens_and_closes_and_health_comes_back(day):
    s = day["summary"]
    drift = s["drift"]
    assert drift["rule"] == "class_drift"
    assert 0 < drift["detection_s"] <= 3600  # the closing note's promise: within an hour
    assert drift["resolved"] is not None and drift["resolved"] > drift["detected"]
    assert s["alerts_fired"] >= 1 and s["alerts_resolved"] >= 1 and s["health"] == "healthy"
    periods = [
        p for p in day["charts"]["email-drift"]["alert_periods"] if p["rule"] == "class_drift"
    ]
    assert periods and all(p["end"] is not None and p["end"] > p["start"] for p in periods)
    assert periods[0]["start"] >= drift["start"]
    # the first screen tells it: healthy now, what changed and when, with the levels' times
    html = day["report"].html_path.read_text()
    glance = html[html.index("At a glance") : html.index("id='health'")]
    assert "badge healthy'>healthy<" in glance
    assert re.search(r"class_drift: (warning|critical) at 1[34]:\d\d, .*ok at 1[5-7]:\d\d", glance)


@pytest.mark.slow
def test_ground_truth_is_late_and_partly_missing(day):
    s = day["summary"]
    assert s["labels_missing"] > 0.25 * s["predictions"]
    assert s["labels_late"] > 0 and s["labels_joined"] > 0.5 * s["predictions"]
    accuracy = day["charts"]["email-accuracy"]["series"]
    labeled = [n for n in accuracy["labeled"] if n]
    assert len(labeled) == WINDOWS and sum(labeled) <= s["labels_joined"]


@pytest.mark.slow
def test_each_png_decodes_and_its_data_has_the_expected_points(day):
    expected = {"throughput": WINDOWS, "latency": WINDOWS, "drift": WINDOWS, "accuracy": WINDOWS}
    for kind, n in expected.items():
        chart = day["charts"][f"email-{kind}"]
        assert len(chart["t"]) == n, kind
        assert chart["t"][0] == DAY + WINDOW_S / 2 and chart["t"][-1] == DAY + DAY_S - WINDOW_S / 2
        for name, values in chart["series"].items():
            assert len(values) == n, (kind, name)
    assert all(v is not None for v in day["charts"]["email-latency"]["series"]["p99"])
    pngs = sorted(day["dir"].glob("*.png"))
    assert {p.stem for p in pngs} == set(day["charts"])  # every PNG has its data beside it
    for png in pngs:
        img = mpimg.imread(io.BytesIO(png.read_bytes()), format="png")
        assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 400, png.name


@pytest.mark.slow
def test_readme_images_come_from_the_day(day):
    readme = (REPO / "README.md").read_text()
    for kind in ("drift", "accuracy"):
        target = REPO / "docs" / f"report-{kind}.png"
        source = day["dir"] / f"email-{kind}.png"
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
        assert f"docs/report-{kind}.png" in readme
