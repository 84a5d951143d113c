from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import leanml._prometheus as prom
from leanml._prometheus import CONTENT_TYPE, Exposition, escape_label, format_value
from leanml.monitor import PROMETHEUS_CONTENT_TYPE, ModelMonitor, render_prometheus
from leanml.serving.batching import SIZE_BUCKETS, WAIT_BUCKETS
from leanml.serving.metrics import render_service

NAME = 'in"tent\nmodel\\x'


def test_escape_label_escapes_backslash_newline_and_quote() -> None:
    assert escape_label(NAME) == 'in\\"tent\\nmodel\\\\x'
    assert escape_label(200) == "200"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "NaN"),
        (True, "1"),
        (False, "0"),
        (7, "7"),
        (np.int64(7), "7"),
        (0.1, "0.1"),
        (np.float64(0.25), "0.25"),
        (1e-05, "1e-05"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),  # the format writes NaN
    ],
)
def test_format_value(value, text) -> None:
    assert format_value(value) == text


def test_exposition_writes_each_family_head_once_and_histograms() -> None:
    out = Exposition()
    for model in ("a", "b"):
        out.family("x_total", "counter", "Xs.")
        out.sample("x_total", {"model": model}, 3)
    out.family("h", "histogram", "H.")
    out.histogram("h", {"model": "a"}, (0.5, 1.0), [1, 2], 4, 2.5)
    text = out.text()
    assert text.count("# TYPE x_total counter") == 1
    assert text.endswith("\n")
    fam = {f.name: f for f in text_string_to_metric_families(text)}
    buckets = {s.labels["le"]: s.value for s in fam["h"].samples if s.name == "h_bucket"}
    assert buckets == {"0.5": 1, "1.0": 2, "+Inf": 4}
    assert [s.value for s in fam["h"].samples if s.name == "h_sum"] == [2.5]
    assert len(fam["x"].samples) == 2


def test_content_type_is_the_monitors() -> None:
    assert PROMETHEUS_CONTENT_TYPE == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


class _Cache(SimpleNamespace):
    def __len__(self) -> int:
        return 2


def _service(monitor: ModelMonitor) -> SimpleNamespace:
    handle = SimpleNamespace(
        name=NAME,
        cache=_Cache(hits=1, misses=2, evictions=0, expired=0, invalidations=0, bytes=64),
        cached_predictions=1,
        monitoring_paused=False,
        unmonitored=0,
        batcher=SimpleNamespace(
            size_counts=[1] + [0] * len(SIZE_BUCKETS),
            items=1,
            wait_counts=[1] + [0] * len(WAIT_BUCKETS),
            wait_sum=0.001,
        ),
        monitor_list=lambda: [monitor],
        shadow_stats=lambda: None,  # no compact variant serving: no shadow check
    )
    return SimpleNamespace(
        handles={NAME: handle},
        http_counts={("/predict", 200): 1},
        store=None,
        config=SimpleNamespace(monitoring=True),
    )


def test_monitor_and_service_families_go_through_the_one_writer(monkeypatch) -> None:
    m = ModelMonitor(NAME, clock=lambda: 1_000.0, start=False, sinks=[])
    m.record("p1", "x", 0.5, 0.002)
    m.flush()

    def spy(value: object) -> str:  # marks what went through the one escape function
        return "SPY" + escape_label(value)

    plain_text = render_prometheus([m])
    monkeypatch.setattr(prom, "escape_label", spy)
    monitor_text = render_prometheus([m])
    service_text = render_service(_service(m))  # type: ignore[arg-type]
    m.close()
    want = 'model="SPYin\\"tent\\nmodel\\\\x"'
    # every sample labelled with the model, from both writers, was escaped by the one function
    assert 'model="in' not in monitor_text + service_text
    assert monitor_text.count(want) == plain_text.count('model="in\\"tent\\nmodel\\\\x"')
    assert service_text.count(want) > monitor_text.count(want) > 0
    for name in ("leanml_predictions_total", "leanml_cache_hits_total", "leanml_batch_size_count"):
        (line,) = [ln for ln in service_text.splitlines() if ln.startswith(name + "{")]
        assert want in line
    assert service_text.startswith(monitor_text)
    fam = {f.name: f for f in text_string_to_metric_families(service_text)}
    assert fam["leanml_cache_hits"].samples[0].labels["model"] == "SPY" + NAME
    assert fam["leanml_predictions"].samples[0].labels["model"] == "SPY" + NAME
    fam = {f.name: f for f in text_string_to_metric_families(plain_text)}
    assert fam["leanml_predictions"].samples[0].labels["model"] == NAME  # escaped as it parses
