"""The performance report: one self-contained HTML file plus the PNG charts beside it.

:func:`build_report` reads the store (merged across processes) and optionally the registry,
computes health, insights and suggestions, renders every chart (matplotlib, Agg) and writes
``report.html`` (charts embedded as base64, so the file can be mailed alone) and ``*.png`` into
``out_dir``, each PNG with the data it plots beside it (``*.json``, see
:mod:`~leanml.dashboard.timecharts`). Every string that comes from data (model names, labels,
reasons) is HTML-escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from leanml.config import AlertRule, MonitorConfig
from leanml.dashboard import charts
from leanml.dashboard.data import (
    ModelData,
    ReportData,
    collect,
    model_shadow_lines,
    wilson_interval,
)
from leanml.dashboard.insights import Insight, generate_insights
from leanml.dashboard.overview import overview_html
from leanml.dashboard.suggest import Suggestion, generate_suggestions
from leanml.monitor.store import MonitorStore

__all__ = [
    "REFERENCE_FIGURES",
    "Report",
    "build_report",
    "load_benchmarks",
    "render_html",
]

#: The reference system's published figures, shown beside ours.
REFERENCE_FIGURES = {
    "monitored_predictions_per_s": 10_668,
    "record_ns": 93_738,
    "sampling_rate": 0.2,  # the reference system's, not our default
    "batch": 10,
    "size_change_pct": {"email": -16.5, "intent": +0.35, "sentiment": +2.4},
}


@dataclasses.dataclass
class Report:
    """What :func:`build_report` wrote and computed."""

    html_path: Path
    charts: dict[str, Path]
    data: ReportData
    insights: list[Insight]
    suggestions: list[Suggestion]


def load_benchmarks(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Merge the JSON outputs of ``benchmarks/*.py --json`` (later files win on equal keys)."""
    out: dict[str, Any] = {}
    for p in paths:
        loaded = json.loads(Path(p).read_text())
        if isinstance(loaded, dict):
            out.update(loaded)
    return out


def build_report(
    store: MonitorStore | str,
    out_dir: str | Path,
    *,
    registry: Any | None = None,
    since: float | None = None,
    until: float | None = None,
    models: Sequence[str] | None = None,
    serving: Mapping[str, Mapping[str, Any]] | None = None,
    benchmarks: Mapping[str, Any] | None = None,
    sampling_rate: float = MonitorConfig.sampling_rate,
    retention_max_age_s: float | None = MonitorConfig.retention_max_age_s,
    store_budget_bytes: int | None = None,
    rules: Sequence[AlertRule] | Mapping[str, Sequence[AlertRule]] | None = None,
    loaded: Mapping[str, Mapping[str, Any]] | None = None,
) -> Report:
    """Collect, analyse, chart and write the report; return where it went and what it says.

    ``rules`` and ``loaded`` go to :func:`~leanml.dashboard.data.collect`."""
    own = isinstance(store, str)
    st = MonitorStore(store, create=False) if isinstance(store, str) else store
    try:
        data = collect(
            st,
            since=since,
            until=until,
            models=models,
            registry=registry,
            serving=serving,
            benchmarks=benchmarks,
            rules=rules,
            loaded=loaded,
        )
    finally:
        if own:
            st.close()
    data.retention_max_age_s = retention_max_age_s
    data.store_budget_bytes = store_budget_bytes
    insights = generate_insights(data)
    suggestions = generate_suggestions(data, sampling_rate)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    chart_data: dict[str, dict[str, Any]] = {}
    for md in data.models.values():
        rules_md = data.rules_for(md)
        for kind, png in charts.model_charts(md, rules_md).items():
            pngs[f"{_slug(md.name)}-{kind}"] = png
        for kind, values in charts.model_chart_data(md, rules_md).items():
            chart_data[f"{_slug(md.name)}-{kind}"] = values
    chart_data.update(charts.report_chart_data(data))
    for key, maybe in (
        ("resources", charts.resources_chart(data)),
        ("compression-size", charts.compression_size_chart(list(data.models.values()))),
        (
            "compression-components",
            charts.compression_components_chart(list(data.models.values())),
        ),
        ("compression-quality", charts.compression_quality_chart(list(data.models.values()))),
    ):
        if maybe is not None:
            pngs[key] = maybe
    paths: dict[str, Path] = {}
    for key, png in pngs.items():
        paths[key] = out / f"{key}.png"
        paths[key].write_bytes(png)
        if key in chart_data:  # the data behind the chart, beside it
            text = json.dumps(_finite(chart_data[key]), indent=1, default=str, allow_nan=False)
            (out / f"{key}.json").write_text(text + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(render_html(data, insights, suggestions, pngs), encoding="utf-8")
    return Report(html_path, paths, data, insights, suggestions)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "model"


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.3f}"


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _img(pngs: Mapping[str, bytes], key: str, alt: str) -> str:
    png = pngs.get(key)
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2933}
h1{margin-bottom:0}h2{border-bottom:2px solid #d0d5db;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d5db;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f3f5f7}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-weight:600}
.healthy{background:#1b998b}.degraded{background:#f0a202}.unhealthy{background:#d7263d}
.chart{max-width:100%;display:block;margin:.5em 0}.muted{color:#6b7785}
code{background:#f3f5f7;padding:.1em .3em;word-break:break-all}
li{margin:.35em 0}.sev-critical{color:#d7263d}.sev-warning{color:#b57800}
.overview td{width:43%}.overview td:first-child{width:14%}.overview ul{margin:0;padding-left:1.1em}
"""


def render_html(
    data: ReportData,
    insights: Sequence[Insight],
    suggestions: Sequence[Suggestion],
    pngs: Mapping[str, bytes],
) -> str:
    """The report as one HTML document (charts embedded)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>leanml performance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>leanml performance report</h1>",
        f"<p class='muted'>{_e(_ts(data.since))} to {_e(_ts(data.until))} &middot; store "
        f"<code>{_e(data.store_url)}</code> &middot; {len(data.models)} model(s), every "
        "serving process merged</p>",
        overview_html(data, insights, suggestions, {n: f"model-{_slug(n)}" for n in data.models}),
        _health_section(data),
        _insights_section(insights),
        _suggestions_section(suggestions),
    ]
    for md in data.models.values():
        parts.append(_model_section(md, pngs))
    parts.append("<h2 id='resources'>System resources</h2>")
    parts.append(
        _img(pngs, "resources", "CPU, RSS, GC collections and store disk usage over time")
        or "<p class='muted'>No resource samples in this range.</p>"
    )
    parts.append(_compression_section(data, pngs))
    parts.append(_comparison_section(data))
    parts.append(
        "<p class='muted'>Latency quantiles come from mergeable log sketches (relative error "
        "bounded by the monitor's relative_accuracy), merged per window over every process. "
        "Realized accuracy counts predictions made in a window whose ground truth has arrived; "
        "estimated accuracy is the mean probability of being correct, each prediction's "
        "top-class confidence mapped through the calibration fitted on the model's validation "
        "split. Intervals are 95% (Wilson for accuracies, basic bootstrap for drift scores)."
        "</p></body></html>"
    )
    return "\n".join(parts)


def _health_section(data: ReportData) -> str:
    rows = []
    for md in data.models.values():
        reasons = "<br>".join(_e(r) for r in md.reasons) or "no active alerts"
        hist = "".join(
            f"<tr><td>{_e(_ts(a['ts']))}</td><td>{_e(a['rule'])}</td><td>{_e(a['previous'])} "
            f"&rarr; {_e(a['level'])}</td><td>{_e(_num(a['value'], '.4g'))}</td>"
            f"<td>{_e(a['reason'])}</td></tr>"
            for a in reversed(md.alert_history[-50:])
        )
        history = (
            f"<details><summary>{len(md.alert_history)} alert transition(s)</summary><table>"
            "<tr><th>time</th><th>rule</th><th>change</th><th>value</th><th>reason</th></tr>"
            f"{hist}</table></details>"
            if md.alert_history
            else "<span class='muted'>no alert transitions</span>"
        )
        rows.append(
            f"<tr><td><a href='#model-{_e(_slug(md.name))}'>{_e(md.name)}</a></td>"
            f"<td><span class='badge {_e(md.health)}'>{_e(md.health)}</span></td>"
            f"<td>{reasons}</td><td>{history}</td></tr>"
        )
    return (
        "<h2 id='health'>Model health</h2><table><tr><th>model</th><th>health</th>"
        "<th>reasons (active alerts)</th><th>alert history</th></tr>" + "".join(rows) + "</table>"
    )


def _insights_section(insights: Sequence[Insight]) -> str:
    if not insights:
        return "<h2 id='insights'>Insights</h2><p class='muted'>Nothing notable in this range.</p>"
    items = "".join(
        f"<li class='sev-{_e(i.severity)}' data-rule='{_e(i.rule)}'>{_e(i.text)}</li>"
        for i in insights
    )
    return f"<h2 id='insights'>Insights</h2><ul>{items}</ul>"


def _suggestions_section(suggestions: Sequence[Suggestion]) -> str:
    if not suggestions:
        return (
            "<h2 id='suggestions'>Optimization suggestions</h2><p class='muted'>No rule fired: "
            "cache, variant, sampling, batching, drift and retention all look right.</p>"
        )
    items = "".join(
        f"<li data-rule='{_e(s.rule)}'><b>{_e(s.title)}</b> <span class='muted'>[{_e(s.rule)}]"
        f"</span><br>Evidence: {_e(s.evidence)}<br>Apply: <code>{_e(s.action)}</code></li>"
        for s in suggestions
    )
    return f"<h2 id='suggestions'>Optimization suggestions</h2><ul>{items}</ul>"


def _model_section(md: ModelData, pngs: Mapping[str, bytes]) -> str:
    slug = _slug(md.name)
    lat = md.latency
    ci = wilson_interval(md.correct, md.joined)
    real = (
        f"{md.realized_accuracy:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}, n={md.joined})"
        if ci and md.realized_accuracy is not None
        else "no labels yet"
    )
    # the windows keep the sum of P(correct), not its variance: the binomial (Wilson) bound at
    # the estimate is the conservative interval
    eci = (
        wilson_interval(round(md.estimated_accuracy * md.estimated_n), md.estimated_n)
        if md.estimated_accuracy is not None
        else None
    )
    est = (
        f"{md.estimated_accuracy:.3f} (95% CI {eci[0]:.3f}-{eci[1]:.3f}, n={md.estimated_n})"
        if eci and md.estimated_accuracy is not None
        else "-"
    )
    span = sum(w.width for w in md.windows) or 1.0
    reg = md.registry or {}
    facts = [
        ("predictions", f"{md.count:,} ({md.count / span:.1f}/s over windows with traffic)"),
        ("errors", f"{md.errors:,}"),
        (
            "latency p50 / p95 / p99 / p99.9 (ms)",
            " / ".join(_ms(lat.get(k)) for k in ("p50", "p95", "p99", "p999")),
        ),
        ("accuracy: realized (labeled)", real),
        ("accuracy: estimated (calibrated confidences)", est),
        ("ground-truth coverage", _num(md.label_coverage, ".1%")),
        (
            "duplicate inputs (sampled)",
            _num(md.duplicate_rate, ".1%") + f" of {md.sampled} sampled",
        ),
        ("variants served", ", ".join(md.variants_seen) or "-"),
        ("active variant (registry)", reg.get("active_variant", "-")),
        ("processes", str(len(md.processes))),
    ]
    facts += [
        ("shadow check (vs the original)" if i == 0 else "", line)
        for i, line in enumerate(model_shadow_lines(md))
    ]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    captions = {
        "latency": "Latency p50/p95/p99 over time",
        "throughput": "Throughput over time",
        "accuracy": "Realized vs estimated accuracy with alert thresholds",
        "confusion": "Confusion matrix of labeled predictions",
        "drift": "Drift scores per window",
        "class-mix": "Predicted-class mix vs the reference",
        "cache": "Prediction cache hit rate",
        "batches": "Micro-batch sizes",
    }
    body = []
    for kind, caption in captions.items():
        img = _img(pngs, f"{slug}-{kind}", f"{md.name}: {caption}")
        if img:
            body.append(f"<h3>{_e(caption)}</h3>{img}")
        else:
            body.append(f"<h3>{_e(caption)}</h3><p class='muted'>{_e(_missing(kind))}</p>")
    return (
        f"<h2 id='model-{_e(slug)}'>{_e(md.name)} <span class='badge {_e(md.health)}'>"
        f"{_e(md.health)}</span></h2><table>{table}</table>" + "".join(body)
    )


def _missing(kind: str) -> str:
    return {
        "cache": "No cache figures: they are recorded by leanml serve (pass its stats to the "
        "report with --server URL).",
        "batches": "No micro-batch figures: they are recorded by leanml serve (--server URL).",
        "confusion": "No ground truth joined in this range.",
        "accuracy": "No predictions in this range.",
        "drift": "No drift scores: the model has no drift reference or no window has closed.",
        "class-mix": "No predictions in this range.",
    }.get(kind, "No data in this range.")


def _compression_section(data: ReportData, pngs: Mapping[str, bytes]) -> str:
    rows = []
    for md in data.models.values():
        variants = (md.registry or {}).get("variants", {})
        guard = (md.compression or {}).get("guard") or {}
        o, c = variants.get("original", {}), variants.get("compact", {})
        ob = o.get("artifact_bytes")
        cb = c.get("artifact_bytes")
        change = f"{100 * (cb / ob - 1):+.1f}%" if ob and cb else "-"
        verdict = (
            ("passed" if guard.get("passed") else "failed") + f": {guard.get('reason', '')}"
            if guard
            else "no compact variant"
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_e(v)}</td>"
                for v in (
                    md.name,
                    _bytes(ob),
                    _bytes(cb),
                    change,
                    _num(o.get("test_accuracy"), ".4f"),
                    _num(c.get("test_accuracy"), ".4f"),
                    _num(guard.get("agreement"), ".4f"),
                    _num(o.get("load_seconds"), ".3f") + " / " + _num(c.get("load_seconds"), ".3f"),
                    verdict,
                )
            )
            + "</tr>"
        )
    head = (
        "<tr><th>model</th><th>original</th><th>compact</th><th>size change</th><th>accuracy "
        "original</th><th>accuracy compact</th><th>agreement</th><th>load s (orig / compact)"
        "</th><th>guard</th></tr>"
    )
    imgs = _img(pngs, "compression-components", "Size by component, original vs compact")
    imgs += _img(pngs, "compression-size", "Stored artifact by payload file") + _img(
        pngs, "compression-quality", "Accuracy and agreement per variant"
    )
    return f"<h2 id='compression'>Compression</h2><table>{head}{''.join(rows)}</table>{imgs}"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _comparison_section(data: ReportData) -> str:
    ref, b = REFERENCE_FIGURES, data.benchmarks
    rows: list[tuple[str, str, str, str]] = []
    sizes: dict[str, float] = ref["size_change_pct"]  # type: ignore[assignment]
    for name in dict.fromkeys([*data.models, *sizes]):
        md = data.models.get(name) or ModelData(name)
        variants = (md.registry or {}).get("variants", {})
        ob = variants.get("original", {}).get("artifact_bytes")
        cb = variants.get("compact", {}).get("artifact_bytes")
        ours = (
            f"{_bytes(ob)} &rarr; {_bytes(cb)} ({100 * (cb / ob - 1):+.1f}%)"
            if ob and cb
            else (f"{_bytes(ob)}, no compact variant" if ob else "not in this report")
        )
        theirs = sizes.get(md.name)
        rows.append(
            (
                f"model size, {_e(md.name)}: original vs compact",
                _e(_bytes(ob)),
                ours,
                f"{theirs:+.2f}% (quantized)" if theirs is not None else "-",
            )
        )
    rec = b.get("record_ns")
    rows.append(
        (
            "monitoring off vs on: cost per monitored prediction",
            "0 ns (off)",
            f"{rec:,.0f} ns, {1e9 / rec:,.0f} monitored predictions/s" if rec else _bench_hint(),
            f"{ref['record_ns']:,} ns, {ref['monitored_predictions_per_s']:,} /s "
            f"(sampling {ref['sampling_rate']:.0%}, batches of {ref['batch']})",
        )
    )
    if b.get("overhead_pct_email") is not None:
        rows.append(
            (
                "monitoring overhead on the email model's predict",
                "-",
                f"{b['overhead_pct_email']:.1f}%",
                "-",
            )
        )
    off, on = b.get("rps_monitor_off"), b.get("rps_leanml")
    rows.append(
        (
            "served requests/s, monitoring off vs on",
            _num(off, ",.0f"),
            _num(on, ",.0f") if on else _bench_hint("serving"),
            "-",
        )
    )
    c0, c1 = b.get("rps_cache_off"), b.get("rps_cache50")
    rows.append(
        (
            "served requests/s at 50% duplicates, cache off vs on",
            _num(c0, ",.0f"),
            (f"{c1:,.0f} ({c1 / c0:.2f}x)" if c0 and c1 else _bench_hint("serving")),
            "no cache (a next step in the reference)",
        )
    )
    body = "".join(
        f"<tr><td>{a}</td><td>{s}</td><td>{o}</td><td>{r}</td></tr>" for a, s, o, r in rows
    )
    return (
        "<h2 id='comparison'>Standard vs optimized</h2><table><tr><th>comparison</th>"
        "<th>standard</th><th>optimized (leanml)</th><th>reference system (published)</th></tr>"
        f"{body}</table>"
    )


def _bench_hint(kind: str = "monitor_overhead") -> str:
    return f"not measured: run benchmarks/{kind}.py --json FILE and pass --bench FILE"
