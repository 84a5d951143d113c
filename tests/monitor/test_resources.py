from __future__ import annotations

import gc

from leanml.monitor import ModelMonitor, MonitorConfig
from leanml.monitor.resources import IdleCollector, ResourceSampler, freeze_after_load


def test_sampler_is_bounded_and_reports() -> None:
    r = ResourceSampler(history=3, disk_usage=lambda: 1234)
    for t in range(5):
        s = r.sample(float(t))
    assert len(r.series()) == 3 and r.evicted == 2
    assert s["rss_bytes"] > 10_000_000
    assert s["disk_bytes"] == 1234
    assert len(s["gc_counts"]) == 3 and len(s["gc_collections"]) == 3
    assert r.latest()["ts"] == 4.0

    def broken() -> int:
        raise OSError("gone")

    assert ResourceSampler(disk_usage=broken).sample(0.0)["disk_bytes"] is None


def test_freeze_after_load() -> None:
    try:
        n = freeze_after_load()
        assert n > 0 and gc.get_freeze_count() == n
        assert ResourceSampler().sample(0.0)["gc_frozen"] == n  # counted once, at the freeze
    finally:
        gc.unfreeze()


def test_idle_collector() -> None:
    c = IdleCollector(idle_s=5.0, generation=0)
    c.activity(100.0)
    assert not c.maybe_collect(102.0)
    assert c.maybe_collect(106.0)
    assert not c.maybe_collect(120.0)  # once per idle period
    c.activity(121.0)
    assert c.maybe_collect(130.0)
    assert c.collections == 2
    auto = IdleCollector(idle_s=5.0, disable_automatic=True, max_interval_s=10.0)
    try:
        assert not gc.isenabled()
        auto.activity(0.0)
        assert auto.maybe_collect(11.0)
    finally:
        auto.close()
    assert gc.isenabled()


def test_monitor_samples_resources_and_collects_when_idle(clock) -> None:
    cfg = MonitorConfig(resource_interval_s=10.0, gc_idle_collect=True, gc_idle_s=1.0)
    m = ModelMonitor("r", config=cfg, clock=clock, start=False, sinks=[])
    m.record("a", 1, 0.9, 0.001)
    m.flush()
    assert m.stats()["resources"]["rss_bytes"] > 0
    clock.advance(2.0)
    m.flush()
    assert m.gc is not None and m.gc.collections == 1
    m.close()
