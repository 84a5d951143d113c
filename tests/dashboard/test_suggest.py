"""Each suggestion rule on constructed situations: fires with evidence and the exact setting,
stays silent otherwise."""

from __future__ import annotations

from leanml.dashboard.data import ModelData, ReportData, WindowPoint
from leanml.dashboard.suggest import (
    generate_suggestions,
    suggest_cache,
    suggest_compact_variant,
    suggest_max_wait,
    suggest_retention,
    suggest_retrain,
    suggest_sampling_rate,
)

T0 = 1_800_000_000.0


def md(**kw) -> ModelData:
    return ModelData("intent", **kw)


# -- cache -----------------------------------------------------------------------------------
def test_cache_enable_when_inputs_repeat_and_cache_is_off():
    s = suggest_cache(md(sampled=1000, sampled_unique_inputs=400))
    assert s is not None and s.rule == "cache" and "Enable" in s.title
    assert "60% of the 1000 sampled inputs" in s.evidence
    assert "max_entries = 10000" in s.action


def test_cache_grow_when_it_evicts_and_misses_repeats():
    cache = {"enabled": True, "hits": 100, "misses": 900, "evictions": 5000, "max_entries": 500}
    s = suggest_cache(md(sampled=1000, sampled_unique_inputs=400, serving={"cache": cache}))
    assert s is not None and "Grow" in s.title and "max_entries = 1000" in s.action
    assert "hit rate is only 10%" in s.evidence


def test_cache_silent_when_inputs_are_unique_or_cache_works():
    assert suggest_cache(md(sampled=1000, sampled_unique_inputs=950)) is None
    assert suggest_cache(md(sampled=10, sampled_unique_inputs=2)) is None  # thin sample
    good = {"enabled": True, "hits": 550, "misses": 450, "evictions": 10, "max_entries": 10_000}
    assert (
        suggest_cache(md(sampled=1000, sampled_unique_inputs=400, serving={"cache": good})) is None
    )


# -- compact variant -------------------------------------------------------------------------
GUARD = {"passed": True, "reason": "accepted int8", "original_bytes": 100, "compact_bytes": 20}


def test_compact_variant_when_guard_passed_and_original_serves():
    s = suggest_compact_variant(
        md(compression={"guard": GUARD}, registry={"active_variant": "original"})
    )
    assert s is not None and s.action.startswith("leanml models switch intent compact")
    assert "PUT" in s.action and "/v1/models/intent/variant" in s.action
    assert "80.0% smaller" in s.evidence


def test_compact_variant_silent_when_active_or_guard_failed():
    active = md(compression={"guard": GUARD}, registry={"active_variant": "compact"})
    assert suggest_compact_variant(active) is None
    failed = {**GUARD, "passed": False}
    assert suggest_compact_variant(md(compression={"guard": failed})) is None
    assert suggest_compact_variant(md()) is None


# -- sampling rate ---------------------------------------------------------------------------
def test_sampling_rate_raised_when_interval_is_wide():
    s = suggest_sampling_rate(md(joined=60, correct=48), sampling_rate=0.2)
    assert s is not None and "95% interval" in s.evidence and "on 60 labels" in s.evidence
    assert s.values["rate"] > 0.2 and f"sampling_rate = {s.values['rate']:g}" in s.action
    assert "PATCH" in s.action and "/v1/monitoring/config" in s.action


def test_sampling_rate_silent_with_enough_labels_or_none():
    assert suggest_sampling_rate(md(joined=5000, correct=4500)) is None
    assert suggest_sampling_rate(md(joined=0, correct=0)) is None
    assert suggest_sampling_rate(md(joined=60, correct=48), sampling_rate=1.0) is None


# -- max_wait_ms -----------------------------------------------------------------------------
def test_max_wait_lowered_when_queue_wait_dominates_p99():
    serving = {"batching": {"queue_wait_p99_s": 0.004, "max_wait_ms": 5.0}}
    s = suggest_max_wait(md(latency={"p99": 0.006}, serving=serving))
    assert s is not None and "max_wait_ms = 2.5" in s.action and "67% of the latency" in s.evidence


def test_max_wait_silent_when_wait_is_small_or_unknown():
    serving = {"batching": {"queue_wait_p99_s": 0.001, "max_wait_ms": 5.0}}
    assert suggest_max_wait(md(latency={"p99": 0.006}, serving=serving)) is None
    assert suggest_max_wait(md(latency={"p99": 0.006})) is None


# -- retrain ---------------------------------------------------------------------------------
def _windows(conf: list[float], psi: list[float]) -> list[WindowPoint]:
    return [
        WindowPoint(T0 + 60 * i, 60, count=500, confidence_sum=500 * c, drift={"class_psi": p})
        for i, (c, p) in enumerate(zip(conf, psi, strict=True))
    ]


def test_retrain_when_drift_persists_and_estimate_falls():
    ws = _windows([0.9] * 4 + [0.8] * 3, [0.02] * 4 + [0.3] * 3)
    s = suggest_retrain(md(windows=ws, registry={"task": "intent"}))
    assert s is not None and s.action.startswith("leanml train intent --name intent")
    assert "last 3 windows" in s.evidence and "class_psi 0.30 > 0.1" in s.evidence
    assert "from 0.900 to 0.800" in s.evidence


def test_retrain_silent_on_transient_drift_or_stable_accuracy():
    blip = _windows([0.9] * 4 + [0.8] * 3, [0.02] * 5 + [0.3] * 2)  # drift only 2 windows
    assert suggest_retrain(md(windows=blip)) is None
    stable = _windows([0.9] * 7, [0.02] * 4 + [0.3] * 3)  # drift but accuracy holds
    assert suggest_retrain(md(windows=stable)) is None


# -- retention -------------------------------------------------------------------------------
def _disk(mib_per_hour: float) -> list[dict]:
    return [
        {
            "ts": T0 + 600 * i,
            "process": "h:1",
            "disk_bytes": int((1 + i * mib_per_hour / 6) * 2**20),
        }
        for i in range(7)
    ]


def test_retention_when_store_outgrows_budget():
    data = ReportData(T0, T0 + 3600, {}, _disk(100), store_budget_bytes=2**30)
    data.retention_max_age_s = 30 * 86_400  # 100 MiB/h * 720 h = 70 GiB > 1 GiB
    s = suggest_retention(data)
    assert s is not None and "2400.0 MiB/day" in s.evidence
    assert s.values["new_max_age_s"] <= 2**30 / (100 * 2**20 / 3600)
    assert f"retention_max_age_s = {s.values['new_max_age_s']}" in s.action


def test_retention_silent_within_budget_or_without_one():
    small = ReportData(T0, T0 + 3600, {}, _disk(0.01), store_budget_bytes=2**30)
    assert suggest_retention(small) is None
    assert suggest_retention(ReportData(T0, T0 + 3600, {}, _disk(100))) is None  # no budget


def test_generate_suggestions_collects_rules():
    m = md(sampled=1000, sampled_unique_inputs=400, joined=60, correct=48)
    data = ReportData(T0, T0 + 3600, {"intent": m}, [])
    assert {s.rule for s in generate_suggestions(data)} == {"cache", "sampling_rate"}
