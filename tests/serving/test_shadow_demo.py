"""The shadow check on the real demo models (issue #19's targets), through
``benchmarks/shadow_false_alarms.py``: the demo's three models trained and compressed as
``leanml demo`` does, the server's ShadowGuard (default rate, threshold and alpha) driven on
their test texts. No healthy compact falls back in 20 seeded runs of 50,000 predictions
checked after every batch of 32; an over-pruned compact at ~89% agreement falls back within
500 shadowed predictions in every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "shadow_false_alarms.py"


@pytest.mark.slow
def test_no_false_fallback_on_the_demo_models_and_a_damaged_one_falls_back(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--models-dir", str(tmp_path / "models"), "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"email", "intent", "sentiment"}
    for name, m in res["models"].items():
        print(name, json.dumps({k: v for k, v in m.items() if k != "healthy"}))
        assert m["served_variant"] == "compact", m
        assert m["threshold"] == pytest.approx(m["guard_min_agreement"] - 0.02)
        assert m["alpha"] == 0.01
        h = m["healthy"]
        assert h["runs"] == 20 and h["predictions_per_run"] == 50_000
        for r in h["run_details"]:
            assert not r["fell_back"], (name, r)
            assert 380 <= r["shadowed"] <= 620, (name, r)  # ~1% of 50,000 (sd ~22)
            assert r["max_log_ratio"] < m["log_boundary"], (name, r)
        assert h["fallbacks"] == 0 and h["min_margin"] > 0
        d = m["damaged"]
        assert abs(d["test_agreement"] - 0.89) <= 0.01, d
        assert d["fallbacks"] == d["runs"] == 100, d
        assert d["within_500"] == d["runs"], d
        assert d["fallback_at_shadowed"]["max"] <= 500, d
    assert res["total_fallbacks_healthy"] == 0
