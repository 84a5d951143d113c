"""The time charts' data and drawing, on constructed windows: hour ticks, alert periods, bands."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from matplotlib.dates import date2num

from leanml.config import AlertRule
from leanml.dashboard import ModelData, ReportData, WindowPoint
from leanml.dashboard._figure import new_figure
from leanml.dashboard.overview import model_overview, overview_html
from leanml.dashboard.suggest import suggest_drift_review
from leanml.dashboard.timecharts import (
    accuracy_chart,
    accuracy_data,
    alert_periods,
    drift_chart,
    drift_data,
    latency_chart,
    time_axis,
    time_chart_data,
)

from .helpers import assert_valid_png

DAY = 19_675 * 86_400.0  # 2023-11-14 00:00 UTC
RULES = (
    AlertRule("class_drift", "drift_class_psi", "above", 0.1, 0.25, 10),
    AlertRule("realized_accuracy", "realized_accuracy", "below", 0.8, 0.6, 10),
)


def _event(hour: float, level: str, previous: str, process: str = "p1") -> dict:
    return {"ts": DAY + hour * 3600, "rule": "class_drift", "level": level,
            "previous": previous, "value": 0.3, "variant": "v", "process": process}  # fmt: skip


def _day_model() -> ModelData:
    """48 half-hour windows; class PSI 0.5 from 13:00 to 15:00, labels on every window."""
    md = ModelData("email")
    for k in range(48):
        hour = k / 2
        w = WindowPoint(DAY + k * 1800.0, 1800.0, count=100 + k, confidence_sum=90.0 + k)
        w.p50, w.p95, w.p99 = 0.0003, 0.004, 0.009 + (0.03 if k == 20 else 0.0)
        w.labeled, w.labeled_correct = 50, 45 if not 13 <= hour < 15 else 30
        w.drift = {"class_psi": 0.5 if 13 <= hour < 15 else 0.02, "confidence_ks": 0.05}
        md.windows.append(w)
    md.alert_history = [_event(13.5, "warning", "ok"), _event(15.5, "ok", "warning")]
    md.levels = {"class_drift": "ok"}
    return md


def test_alert_periods_take_the_worst_process_and_stay_open_at_the_end():
    history = [
        _event(1, "warning", "ok", "a"),
        _event(2, "critical", "ok", "b"),
        _event(3, "ok", "critical", "b"),
        _event(4, "ok", "warning", "a"),
        _event(5, "warning", "ok", "a"),
    ]
    periods = alert_periods(history)
    spans = [(p["level"], (p["start"] - DAY) / 3600, p["end"]) for p in periods]
    assert spans[:3] == [
        ("warning", 1, DAY + 2 * 3600),
        ("critical", 2, DAY + 3 * 3600),
        ("warning", 3, DAY + 4 * 3600),
    ]
    assert spans[3] == ("warning", 5, None)  # still open at the end of the range
    assert alert_periods(history, ["other_rule"]) == []


def test_chart_data_has_one_point_per_window_and_the_rules_thresholds():
    md = _day_model()
    data = time_chart_data(md, RULES)
    assert set(data) == {"latency", "throughput", "accuracy", "drift"}
    for d in data.values():
        assert len(d["t"]) == 48 and all(len(v) == 48 for v in d["series"].values())
        assert d["time"][0] == "2023-11-14T00:15:00Z"
    drift = drift_data(md, RULES)
    assert drift is not None
    assert [x["value"] for x in drift["thresholds"]] == [0.1, 0.25]
    (period,) = drift["alert_periods"]
    assert period == {
        "rule": "class_drift",
        "level": "warning",
        "start": DAY + 13.5 * 3600,
        "end": DAY + 15.5 * 3600,
    }
    acc = accuracy_data(md, RULES)
    assert acc is not None
    low, real, high = (acc["series"][k][0] for k in ("realized_low", "realized", "realized_high"))
    assert low < real == 0.9 < high  # a 95% band around 45/50
    # the estimate's band: Wilson at the estimate with the window's count (conservative)
    e_low, est, e_high = (
        acc["series"][k][0] for k in ("estimated_low", "estimated", "estimated_high")
    )
    assert e_low < est < e_high


def test_a_day_gets_hour_ticks_and_its_date():
    fig = new_figure()
    ax = fig.add_subplot()
    times = [dt.datetime.fromtimestamp(DAY + k * 1800 + 900, tz=dt.UTC) for k in range(48)]
    ax.plot(times, range(48))
    time_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:4] == ["00:00", "03:00", "06:00", "09:00"] and "21:00" in labels
    assert ax.get_xlabel() == "time (UTC), 2023-11-14"
    ticks = ax.get_xticks()
    assert ticks[1] - ticks[0] == pytest.approx(date2num(times[6]) - date2num(times[0]))


def test_time_charts_draw():
    md = _day_model()
    for png in (latency_chart(md, RULES), accuracy_chart(md, RULES), drift_chart(md, RULES)):
        assert png is not None
        assert_valid_png(png)


def test_first_screen_says_health_what_changed_and_what_to_do():
    md = _day_model()
    md.health, md.levels = "degraded", {"class_drift": "warning"}
    md.alert_history = md.alert_history[:1]
    for w in md.windows[-3:]:
        w.drift["class_psi"] = 0.4
    data = ReportData(DAY, DAY + 86_400, {"email": md}, [], rules=RULES)
    suggestion = suggest_drift_review(md, RULES)
    assert suggestion is not None and "since 13:30 UTC" in suggestion.evidence
    assert suggestion.action.startswith("leanml train email --name email")
    other = dataclasses.replace(suggestion, rule="cache", title="Enable the cache")
    overview = model_overview(md, data, (), [other, suggestion])
    assert [s.rule for s in overview.actions] == ["drift_review", "cache"]  # the alert's first
    assert overview.changes == [
        "class_drift: warning at 13:30 (0.3 when it went warning); still open."
    ]
    page = overview_html(data, (), [suggestion], {"email": "model-email"})
    assert "not healthy (degraded)" in page and "leanml train email --name email" in page
    assert "Evidence:" in page and "href='#model-email'" in page
    # back to ok: healthy, nothing open, and no review suggested
    assert suggest_drift_review(_day_model(), RULES) is None


def test_drift_chart_draws_the_windows_bootstrap_band_when_one_process_scored_them():
    windows = [
        WindowPoint(1_700_000_000.0 + 60 * i, 60.0, count=300,
                    drift={"class_psi": 0.1 * i, "confidence_ks": 0.05},
                    drift_intervals={"class_psi": [0.1 * i - 0.02, 0.1 * i + 0.03]} if i else {})
        for i in range(3)
    ]  # fmt: skip
    md = ModelData("email", windows=windows)
    d = drift_data(md)
    assert d is not None
    assert d["series"]["class_psi_low"] == [None, pytest.approx(0.08), pytest.approx(0.18)]
    assert d["series"]["class_psi_high"][2] == pytest.approx(0.23)
    assert "confidence_ks_low" not in d["series"]  # no interval there: no band
    assert_valid_png(drift_chart(md))
