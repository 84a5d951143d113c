"""``run_demo`` end to end on the bundled data: each variant is read from the registry once.

A skops load of an original with a large vocabulary takes seconds; the compression, the figures of
each variant, the day's shadow check and the report all use the one load of each variant (issue
#22: the demo finishes in under 3 minutes). Slow: it trains, compresses and simulates a day for
the three demo models.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

import leanml.registry as registry_module
from leanml.config import Settings
from leanml.demo import run_demo


@pytest.mark.slow
def test_the_demo_reads_each_variant_from_the_registry_once(tmp_path, monkeypatch):
    settings = Settings.load(env={}).replace(
        cache_dir=tmp_path / "cache", models_dir=tmp_path / "models", allow_download=False
    )  # offline: the bundled data
    reads: Counter[tuple[str, ...]] = Counter()
    load = registry_module.load_model

    def counted(directory, **kwargs):
        reads[Path(directory).parts[-3:]] += 1
        return load(directory, **kwargs)

    monkeypatch.setattr(registry_module, "load_model", counted)
    out = run_demo(
        settings=settings,
        store_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        report_dir=tmp_path / "report",
        n_requests=50,
        console=Console(file=io.StringIO()),
    )
    doc = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    expected = Counter()
    for name, r in out["models"].items():
        expected[(name, str(r["version"]), "original")] = 1
        if "compact" in r["variants"]:
            expected[(name, str(r["version"]), "compact")] = 1
        # the report's registry figures are those of the demo's own loads
        assert r["model"] == "trained" and r["variants"]["original"]["load_ms"] >= 0
        # the day's shadow check: the loaded original re-scored ~1% of what the compact served
        shadow = r["shadow"]
        if r["served_variant"] == "compact":
            assert shadow["enabled"] and shadow["shadowed"] > 0 and shadow["seconds"] > 0
            assert shadow["agreement_lower"] <= shadow["agreement"] <= shadow["agreement_upper"]
            assert f"over {shadow['shadowed']:,} shadowed" in doc
        else:  # the accuracy guard kept no compact variant, or the registry fell back
            why = r["fallback_reason"] or (r["compression"] or {}).get("fallback_reason")
            assert shadow == {"enabled": False, "reason": f"serving the original: {why}"}
            assert why
    assert reads == expected  # the shadow check loaded nothing again
