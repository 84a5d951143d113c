from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leanml.errors import MonitorError
from leanml.monitor import MonitorHub, MonitorStore


def test_hub_shares_one_store_and_renders_all(tmp_path: Path, clock) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with MonitorHub(url, clock=clock, start=False, sinks=[]) as hub:
        a = hub.get("email", "original")
        assert hub.get("email", "original") is a
        b = hub.get("email", "compact", version="3")
        a.record("1", "ham", 0.9, 0.001)
        b.record_batch(["2", "3"], ["spam", "ham"], [0.8, 0.7], 0.002)
        hub.flush()
        assert set(hub.stats()) == {"email/original", "email/compact"}
        fams = {f.name for f in text_string_to_metric_families(hub.prometheus_text())}
        assert "leanml_predictions" in fams  # the parser strips _total from counter names
    with pytest.raises(MonitorError):
        hub.get("intent")
    store = MonitorStore(url)
    assert store.merged("email")["count"] == 3
    assert store.merged("email", "compact")["count"] == 2
