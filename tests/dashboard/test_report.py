"""The report end to end: a real monitored run (two worker processes, delayed ground truth, a
drift phase) fills a SQLite store; the report reads it back merged, and every chart, the health,
the insights and the suggestions are checked against that data."""

from __future__ import annotations

import html
import json
import os
import re
import time
import uuid

import pytest
from tests.conftest import count_registry_loads

from leanml.cli import main
from leanml.dashboard import ModelData, ReportData, build_report
from leanml.dashboard import charts as ch
from leanml.dashboard.report import render_html
from leanml.monitor import MonitorStore
from leanml.registry import ModelRegistry

from .helpers import assert_valid_png
from .scenario import run, scenario_rules

EXPECTED_CHARTS = {
    "intent-latency",
    "intent-throughput",
    "intent-accuracy",
    "intent-confusion",
    "intent-drift",
    "intent-class-mix",
    "resources",
    "compression-size",
    "compression-components",
    "compression-quality",
}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'store.db'}"
    start = time.time() - 50 * 60
    sc = run(url, root / "models", start=start)
    return sc, url, root


@pytest.fixture(scope="module")
def report(filled):
    sc, url, root = filled
    return build_report(
        url,
        root / "out",
        registry=ModelRegistry(root / "models"),
        since=sc.start - 60,
        until=sc.end + 60,
        rules=scenario_rules(),
    )


def test_store_is_read_merged_across_processes(filled, report):
    sc, _, _ = filled
    md = report.data.models["intent"]
    assert md.count == sc.predictions  # both workers' windows summed
    assert len(md.processes) == 2
    assert md.joined == sc.labels_sent  # every delivered label joined and persisted
    assert sum(map(sum, md.confusion)) == md.joined
    assert len(md.windows) in (45, 46)  # 45 minutes, not aligned to window edges
    assert md.latency["p50"] <= md.latency["p99"]


def test_every_chart_is_a_valid_non_blank_png_with_its_data_beside_it(report):
    assert set(report.charts) == EXPECTED_CHARTS
    for key, path in report.charts.items():
        assert path.name == f"{key}.png"
        assert_valid_png(path.read_bytes())
        assert json.loads(path.with_suffix(".json").read_text())  # the data it plots
    windows = report.data.models["intent"].windows
    throughput = json.loads(report.charts["intent-throughput"].with_suffix(".json").read_text())
    assert throughput["series"]["count"] == [w.count for w in windows]


def test_html_is_self_contained_and_holds_health_insights_suggestions(report):
    doc = report.html_path.read_text(encoding="utf-8")
    md = report.data.models["intent"]
    # health at the top, computed from the replayed alert history
    assert md.health == "unhealthy"
    assert doc.index("Model health") < doc.index("Insights") < doc.index("Optimization")
    assert "<span class='badge unhealthy'>unhealthy</span>" in doc
    assert md.alert_history and all(html.escape(r, quote=True) in doc for r in md.reasons)
    # charts embedded: one data URI per chart, no external reference at all
    assert doc.count("data:image/png;base64,") == len(report.charts)
    assert not re.search(r"(src|href)=['\"]https?://", doc)
    # insights: the drift phase is found and explained with its numbers
    rules = {i.rule: i for i in report.insights}
    assert "accuracy_drop" in rules and "inputs drifted" in rules["accuracy_drop"].text
    assert rules["accuracy_drop"].evidence["kind"] == "realized"
    assert (
        rules["accuracy_drop"].evidence["after"] < 0.5 < rules["accuracy_drop"].evidence["before"]
    )
    assert "compression_result" in rules
    for ins in report.insights:
        assert html.escape(ins.text, quote=True) in doc
    # suggestions: retrain (persistent drift + falling estimate), switch to compact, cache
    sugg = {s.rule: s for s in report.suggestions}
    assert {"retrain", "compact_variant", "cache"} <= set(sugg)
    assert "leanml models switch intent compact" in sugg["compact_variant"].action
    for s in report.suggestions:
        assert html.escape(s.action, quote=True) in doc
        assert html.escape(s.evidence, quote=True) in doc
    # standard-vs-optimized table with the reference system's figures beside ours
    assert "93,738 ns" in doc and "10,668" in doc
    assert "+0.35% (quantized)" in doc and "-16.50% (quantized)" in doc
    assert re.search(
        r"model size, intent: original vs compact</td><td>[^<]+</td><td>[^<]*-9\d\.\d%", doc
    )


def test_cli_writes_the_report(filled, tmp_path, capsys):
    sc, url, root = filled
    out = tmp_path / "cli"
    argv = ["report", "--store", url, "--models-dir", str(root / "models"), "--out", str(out)]
    assert main([*argv, "--since", "2h", "--models", "intent"]) == 0
    text = capsys.readouterr().out
    assert "intent: " in text and "report written to" in text
    assert (out / "report.html").is_file() and (out / "intent-latency.png").is_file()
    assert main([*argv, "--since", "5 parsecs"]) == 2
    assert main(["report", "--store", f"sqlite:///{tmp_path / 'missing.db'}"]) == 1
    assert not (tmp_path / "missing.db").exists()


def test_labels_and_names_are_escaped():
    evil = "<script>alert(1)</script>"
    md = ModelData(evil, label_counts={evil: 3}, reasons=[f"x: critical - {evil}"])
    md.health = "unhealthy"
    doc = render_html(ReportData(0.0, 60.0, {evil: md}, []), [], [], {})
    assert evil not in doc and "&lt;script&gt;alert(1)&lt;/script&gt;" in doc


def test_charts_say_nothing_without_data():
    md = ModelData("empty")
    assert ch.model_charts(md) == {}
    assert ch.resources_chart(ReportData(0.0, 1.0, {}, [])) is None
    assert ch.compression_size_chart([md]) is None


def test_standard_vs_optimized_table_uses_benchmark_json(tmp_path):
    from leanml.dashboard import load_benchmarks

    (tmp_path / "m.json").write_text('{"record_ns": 250, "overhead_pct_email": 1.5}')
    (tmp_path / "s.json").write_text(
        '{"rps_leanml": 5000, "rps_monitor_off": 5100, "rps_cache_off": 1000, "rps_cache50": 1800}'
    )
    bench = load_benchmarks([tmp_path / "m.json", tmp_path / "s.json"])
    doc = render_html(ReportData(0.0, 60.0, {}, [], benchmarks=bench), [], [], {})
    assert "250 ns, 4,000,000 monitored predictions/s" in doc
    assert "93,738 ns, 10,668 /s" in doc and "1.5%" in doc
    assert "1,800 (1.80x)" in doc and "5,100" in doc
    empty = render_html(ReportData(0.0, 60.0, {}, []), [], [], {})
    assert "not measured: run benchmarks/monitor_overhead.py --json FILE" in empty


@pytest.mark.postgres
def test_report_from_postgresql(tmp_path):
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set (PostgreSQL tests need a server)")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    sc = run(
        url,
        tmp_path / "models",
        start=time.time() - 15 * 60,
        normal_minutes=6,
        drift_minutes=4,
        table_prefix=prefix,
    )
    store = MonitorStore(url, table_prefix=prefix, create=False)
    try:
        rep = build_report(
            store,
            tmp_path / "out",
            registry=ModelRegistry(tmp_path / "models"),
            since=sc.start - 60,
            until=sc.end + 60,
            rules=scenario_rules(),
        )
        md = rep.data.models["intent"]
        assert md.count == sc.predictions and len(md.processes) == 2
        assert md.joined == sc.labels_sent
        for path in rep.charts.values():
            assert_valid_png(path.read_bytes())
        assert "accuracy_drop" in {i.rule for i in rep.insights}
    finally:
        store.drop_all()
        store.close()


def test_variants_handed_over_are_not_loaded_again(filled, monkeypatch):
    """The demo hands its loaded variants to the report: sizes, load times and the component
    breakdown come from them, and no artifact is read again."""
    from leanml.dashboard.data import collect

    sc, url, root = filled
    registry = ModelRegistry(root / "models")
    original = registry.load("intent", variant="original")
    compact = registry.load("intent", variant="compact")
    assert compact.variant == "compact"
    loads = count_registry_loads(monkeypatch)
    store = MonitorStore(url)
    try:
        data = collect(
            store,
            registry=registry,
            since=sc.start - 60,
            until=sc.end + 60,
            loaded={"intent": {"original": original, "compact": compact}},
        )
    finally:
        store.close()
    md = data.models["intent"]
    assert loads == []
    variants = md.registry["variants"]
    assert variants["original"]["load_seconds"] == round(original.load_seconds, 4)
    assert variants["compact"]["load_seconds"] == round(compact.load_seconds, 4)
    assert set(md.components) == {"original", "compact"} and md.components["compact"]
    # without them, each variant is loaded for the registry report and the breakdown
    store = MonitorStore(url)
    try:
        collect(store, registry=registry, since=sc.start - 60, until=sc.end + 60)
    finally:
        store.close()
    assert len(loads) == 4
