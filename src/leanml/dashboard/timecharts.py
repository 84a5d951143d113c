"""The report's charts over time: latency, throughput, accuracy and drift, with their data.

Each chart is drawn from a plain dict (:func:`latency_data`, :func:`throughput_data`,
:func:`accuracy_data`, :func:`drift_data`; all of them: :func:`time_chart_data`) that the report
also writes as JSON beside the PNG, so what a chart shows can be checked without reading pixels.
The dict holds the window times (``t``: window midpoints, epoch seconds, and ``time``: ISO 8601
UTC), one list per plotted ``series`` (``None`` where a window has no value), the alert
``thresholds`` drawn, and the ``alert_periods`` shaded (from the store's alert history: when a
rule left ``ok`` and when it came back; ``end`` ``None``: still open at the end of the range).

Times are UTC on hour ticks; latencies in milliseconds. The realized accuracy carries a 95%
Wilson band from each window's labeled count; the estimated accuracy (the mean calibrated
P(correct)) a 95% band too (``estimated_low`` / ``estimated_high``): Wilson at the estimate
with the window's count, conservative (the windows keep the sum of P(correct), not its
variance, and a Poisson-binomial variance is at most the binomial one).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.dates import AutoDateLocator, DateFormatter, HourLocator, num2date

from leanml.config import AlertRule
from leanml.dashboard._figure import new_figure, to_png
from leanml.dashboard.data import ModelData, WindowPoint, wilson_interval
from leanml.monitor.drift import DRIFT_SCORES

__all__ = [
    "accuracy_chart",
    "accuracy_data",
    "alert_periods",
    "drift_chart",
    "drift_data",
    "latency_chart",
    "latency_data",
    "throughput_chart",
    "throughput_data",
    "time_axis",
    "time_chart_data",
]

_COLORS = {"p50": "#2b7bba", "p95": "#f0a202", "p99": "#d7263d"}
_LEVEL_COLORS = {"warning": "#f0a202", "critical": "#d7263d"}
_RANK = {"ok": 0, "warning": 1, "critical": 2}
#: the drift chart's panels: the scores each draws and the alert rule metric it sits against.
#: A score of DRIFT_SCORES not placed here is not drawn: the chi-square statistic grows with the
#: window's size, and the OOV delta is a signed change of a rate.
_DRIFT_PANELS = (
    ("class PSI", ("class_psi",), "drift_class_psi"),
    ("KS statistic", ("confidence_ks", "input_length_ks"), "drift_confidence_ks"),
)
_DRIFT_NAMES = {
    "class_psi": "class PSI",
    "confidence_ks": "confidence KS",
    "input_length_ks": "input length KS",
}


def _rule(rules: Iterable[AlertRule], metric: str) -> AlertRule | None:
    return next((r for r in rules if r.metric == metric), None)


def _thresholds(rule: AlertRule | None, scale: float = 1.0) -> list[dict[str, Any]]:
    if rule is None:
        return []
    return [
        {"rule": rule.name, "metric": rule.metric, "level": level, "value": value * scale}
        for level, value in (("warning", rule.warning), ("critical", rule.critical))
        if value is not None
    ]


def alert_periods(
    history: Sequence[dict[str, Any]], rules: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """When each rule was above ``ok`` (worst level over processes), from the alert history."""
    keep = set(rules) if rules is not None else None
    by_process: dict[str, dict[tuple[Any, Any], str]] = defaultdict(dict)
    open_: dict[str, tuple[float, str]] = {}
    out: list[dict[str, Any]] = []
    for a in sorted(history, key=lambda a: a["ts"]):
        rule = a["rule"]
        if keep is not None and rule not in keep:
            continue
        levels = by_process[rule]
        levels[(a.get("variant"), a.get("process"))] = a["level"]
        worst = max(levels.values(), key=lambda lv: _RANK.get(lv, 0))
        current = open_.get(rule)
        if current is not None and current[1] != worst:
            out.append({"rule": rule, "level": current[1], "start": current[0], "end": a["ts"]})
            del open_[rule]
        if worst != "ok" and rule not in open_:
            open_[rule] = (float(a["ts"]), worst)
    for rule, (start, level) in open_.items():
        out.append({"rule": rule, "level": level, "start": start, "end": None})
    return sorted(out, key=lambda p: p["start"])


def _base(md: ModelData, kind: str, points: Sequence[Any], unit: str) -> dict[str, Any]:
    mids = [w.start + w.width / 2 for w in points]
    return {
        "chart": kind,
        "model": md.name,
        "unit": unit,
        "window_s": points[0].width if points else None,
        "t": mids,
        "time": [_iso(t) for t in mids],
        "series": {},
        "thresholds": [],
        "alert_periods": [],
    }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _none(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def latency_data(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, Any] | None:
    pts = [w for w in md.windows if w.p50 is not None]
    if not pts:
        return None
    d = _base(md, "latency", pts, "ms")
    for q in ("p50", "p95", "p99"):
        d["series"][q] = [getattr(w, q) * 1000 for w in pts]
    top = max(d["series"]["p99"])
    rule = _rule(rules, "latency_p99_s")
    if rule is not None and rule.warning is not None and rule.warning * 1000 <= top * 1.5:
        d["thresholds"] = _thresholds(rule, 1000)
    names = [r.name for r in rules if r.metric.startswith("latency_")]
    d["alert_periods"] = alert_periods(md.alert_history, names)
    return d


def throughput_data(md: ModelData) -> dict[str, Any] | None:
    if not md.windows:
        return None
    d = _base(md, "throughput", md.windows, "predictions/s")
    d["series"]["predictions"] = [w.throughput for w in md.windows]
    d["series"]["count"] = [w.count for w in md.windows]
    if any(w.errors for w in md.windows):
        d["series"]["errors"] = [w.errors / w.width for w in md.windows]
    return d


def _estimated_band(w: WindowPoint) -> tuple[float, float] | None:
    est = w.estimated_accuracy
    n = w.count if w.confidence_count is None else w.confidence_count
    return None if est is None or not n else wilson_interval(round(est * n), n)


def accuracy_data(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, Any] | None:
    pts = [w for w in md.windows if w.count or w.labeled]
    if not pts or not any(w.count for w in pts):
        return None
    d = _base(md, "accuracy", pts, "share correct")
    s = d["series"]
    s["estimated"] = [_none(w.estimated_accuracy) if w.count else None for w in pts]
    s["realized"] = [_none(w.realized_accuracy) for w in pts]
    s["labeled"] = [w.labeled for w in pts]
    bands = [wilson_interval(w.labeled_correct, w.labeled) for w in pts]
    s["realized_low"] = [b[0] if b else None for b in bands]
    s["realized_high"] = [b[1] if b else None for b in bands]
    est_bands = [_estimated_band(w) for w in pts]
    s["estimated_low"] = [b[0] if b else None for b in est_bands]
    s["estimated_high"] = [b[1] if b else None for b in est_bands]
    d["thresholds"] = _thresholds(_rule(rules, "realized_accuracy")) + _thresholds(
        _rule(rules, "estimated_accuracy")
    )
    d["alert_periods"] = alert_periods(md.alert_history)
    return d


def drift_data(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, Any] | None:
    pts = [w for w in md.windows if w.drift]
    if not pts:
        return None
    d = _base(md, "drift", pts, "score")
    for key in DRIFT_SCORES:
        if key not in _DRIFT_NAMES:
            continue
        ys = [_none(w.drift.get(key)) for w in pts]
        if any(y is not None for y in ys):
            d["series"][key] = ys
            bands = [w.drift_intervals.get(key) for w in pts]
            if any(b is not None for b in bands):  # the 95% bootstrap band, per window
                d["series"][f"{key}_low"] = [_none(b[0]) if b else None for b in bands]
                d["series"][f"{key}_high"] = [_none(b[1]) if b else None for b in bands]
    d["count"] = [w.count for w in pts]
    names = []
    for _, _, metric in _DRIFT_PANELS:
        rule = _rule(rules, metric)
        d["thresholds"] += _thresholds(rule)
        if rule is not None:
            names.append(rule.name)
    d["alert_periods"] = alert_periods(md.alert_history, names)
    return d


def time_chart_data(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, dict[str, Any]]:
    """The data of every time chart that has some, keyed like the report's PNG files."""
    out = {
        "latency": latency_data(md, rules),
        "throughput": throughput_data(md),
        "accuracy": accuracy_data(md, rules),
        "drift": drift_data(md, rules),
    }
    return {k: v for k, v in out.items() if v is not None}


# ---------------------------------------------------------------------------------- drawing
def _times(ts: Iterable[float]) -> Any:
    return [dt.datetime.fromtimestamp(t, tz=dt.UTC) for t in ts]


def _floats(values: Iterable[float | None]) -> Any:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def time_axis(ax: Any, maxticks: int = 8) -> None:
    """UTC time ticks: every 1-6 hours across a day or more, else automatic; the date below."""
    lo, hi = ax.get_xlim()  # days; a single window would give the locator nothing to divide
    if hi - lo < 10 / 1440:
        mid = (lo + hi) / 2
        lo, hi = mid - 5 / 1440, mid + 5 / 1440
        ax.set_xlim(lo, hi)
    hours = (hi - lo) * 24
    if 4 <= hours <= 48:
        step = next(s for s in (1, 2, 3, 4, 6) if hours / s <= maxticks + 1)
        ax.xaxis.set_major_locator(HourLocator(byhour=range(0, 24, step), tz=dt.UTC))
    else:
        ax.xaxis.set_major_locator(AutoDateLocator(maxticks=maxticks, tz=dt.UTC))
    fmt = "%H:%M" if hours <= 48 else "%m-%d %H:%M"
    ax.xaxis.set_major_formatter(DateFormatter(fmt, tz=dt.UTC))
    data_lo, data_hi = ax.dataLim.intervalx  # the dates of the data, not of the margins
    first = _day(data_lo if np.isfinite(data_lo) else lo)
    last = _day(data_hi if np.isfinite(data_hi) else hi)
    ax.set_xlabel(f"time (UTC), {first}" + (f" to {last}" if last != first else ""))
    ax.grid(alpha=0.3)


def _day(days: float) -> str:
    return num2date(days, tz=dt.UTC).strftime("%Y-%m-%d")


def _draw_thresholds(ax: Any, thresholds: Sequence[dict[str, Any]], style: str = "--") -> None:
    for th in thresholds:
        ax.axhline(
            th["value"],
            color=_LEVEL_COLORS[th["level"]],
            linestyle=style,
            linewidth=1,
            label=f"{th['rule']} {th['level']} {th['value']:.3g}",
        )


def _shade(ax: Any, periods: Sequence[dict[str, Any]], t_end: float) -> None:
    """Shade when any of ``periods`` was open: warning, and critical over it (merged spans)."""
    for level in ("warning", "critical"):
        spans = sorted(
            (p["start"], p["end"] if p["end"] is not None else t_end)
            for p in periods
            if _RANK[p["level"]] >= _RANK[level]
        )
        merged: list[list[float]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for i, (lo, hi) in enumerate(merged):
            a, b = _times([lo, hi])
            label = f"alert {level}" if i == 0 else None
            ax.axvspan(a, b, color=_LEVEL_COLORS[level], alpha=0.12, lw=0, label=label)


def _legend(ax: Any, ncol: int = 4) -> None:
    ax.legend(
        fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False
    )


def _end(d: dict[str, Any]) -> float:
    return float(d["t"][-1] + (d["window_s"] or 0) / 2) if d["t"] else 0.0


def latency_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    d = latency_data(md, rules)
    if d is None:
        return None
    fig = new_figure(3.6)
    ax = fig.add_subplot()
    t = _times(d["t"])
    for q in ("p50", "p95", "p99"):
        ax.plot(t, d["series"][q], marker=".", label=q, color=_COLORS[q])
    _draw_thresholds(ax, d["thresholds"])
    _shade(ax, d["alert_periods"], _end(d))
    lows = [v for v in d["series"]["p50"] if v > 0]
    if lows and max(d["series"]["p99"]) / min(lows) > 30:  # p50 would sit on the axis
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log scale)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel("latency (ms)")
    ax.set_title(f"{md.name}: latency p50 / p95 / p99 per window (all processes merged)")
    time_axis(ax)
    _legend(ax)
    return to_png(fig)


def throughput_chart(md: ModelData) -> bytes | None:
    d = throughput_data(md)
    if d is None:
        return None
    fig = new_figure(3.4)
    ax = fig.add_subplot()
    t = _times(d["t"])
    ys = d["series"]["predictions"]
    ax.plot(t, ys, marker=".", color="#2b7bba", label="predictions")
    ax.fill_between(t, ys, color="#2b7bba", alpha=0.12)
    if "errors" in d["series"]:
        ax.plot(t, d["series"]["errors"], color=_LEVEL_COLORS["critical"], label="errors")
    ax.set_ylabel("predictions per second")
    ax.set_ylim(bottom=0)
    width = (d["window_s"] or 0) / 60
    ax.set_title(f"{md.name}: throughput per {width:g}-minute window")
    time_axis(ax)
    _legend(ax)
    return to_png(fig)


def accuracy_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    d = accuracy_data(md, rules)
    if d is None:
        return None
    s = d["series"]
    fig = new_figure(3.8)
    ax = fig.add_subplot()
    t = _times(d["t"])
    est, real = _floats(s["estimated"]), _floats(s["realized"])
    ax.plot(t, est, marker=".", color="#2b7bba", label="estimated (calibrated confidence)")
    if "estimated_low" in s:
        _band(ax, t, s["estimated_low"], s["estimated_high"], "#2b7bba", "estimated, interval")
    if not np.all(np.isnan(real)):
        _band(ax, t, s["realized_low"], s["realized_high"], "#1b998b", "realized, 95% interval")
        ax.plot(t, real, marker="o", ms=4, color="#1b998b", label="realized (labels joined)")
    real_th = [x for x in d["thresholds"] if x["metric"] == "realized_accuracy"]
    _draw_thresholds(ax, real_th)
    _draw_thresholds(ax, [x for x in d["thresholds"] if x not in real_th], ":")
    _shade(ax, d["alert_periods"], _end(d))
    values = [v for v in (*s["estimated"], *s["realized_low"]) if v is not None]
    values += [x["value"] for x in d["thresholds"]]
    ax.set_ylim(max(0.0, min(values, default=0.0) - 0.05), 1.01)
    ax.set_ylabel("accuracy (share correct)")
    ax.set_title(f"{md.name}: realized vs estimated accuracy, by prediction time")
    time_axis(ax)
    _legend(ax, 3)
    return to_png(fig)


def _band(ax: Any, t: Any, low: Any, high: Any, color: str, label: str) -> None:
    ax.fill_between(t, _floats(low), _floats(high), color=color, alpha=0.2, lw=0, label=label)


def drift_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    d = drift_data(md, rules)
    if d is None:
        return None
    panels = [p for p in _DRIFT_PANELS if any(k in d["series"] for k in p[1])]
    fig = new_figure(2.6 + 2.4 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    t = _times(d["t"])
    for ax, (ylabel, keys, metric) in zip(axes, panels, strict=True):
        for key in keys:
            if key in d["series"]:
                line = ax.plot(t, _floats(d["series"][key]), marker=".", label=_DRIFT_NAMES[key])
                if f"{key}_low" in d["series"]:
                    s = d["series"]
                    _band(ax, t, s[f"{key}_low"], s[f"{key}_high"], line[0].get_color(), "95%")
        ths = [x for x in d["thresholds"] if x["metric"] == metric]
        _draw_thresholds(ax, ths)
        rules_here = {x["rule"] for x in ths}
        _shade(ax, [p for p in d["alert_periods"] if p["rule"] in rules_here], _end(d))
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left", ncol=2)
    axes[0].set_title(f"{md.name}: drift per window against the training reference")
    time_axis(axes[-1])
    return to_png(fig)
