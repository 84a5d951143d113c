"""The shadow check on real servers (loopback): a compact variant that disagrees with its
original is detected and every worker sharing the store falls back; a good one keeps serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serving.conftest import CONFIG, admin_headers, make_registry, running, wait_for

from leanml.monitor import MonitorStore
from leanml.registry import ModelRegistry
from leanml.serving.shadow import shadow_tables

SHADOW = CONFIG.replace(
    "[serving]\n",
    "[serving]\nshadow_rate = 1.0\nshadow_budget = 100.0\nshadow_interval_s = 0.2\n",
    1,
)


def _bad_registry(root: Path, models: tuple[Any, Any]) -> Path:
    """The intent model served as "compact" by a ComplementNB that disagrees with it."""
    make_registry(root, models)
    ModelRegistry(root).set_active_variant("intent", "compact")
    return root


def _good_registry(root: Path, models: tuple[Any, Any]) -> Path:
    """A compact variant that is the original itself (agreement 1)."""
    lr, _ = models
    reg = ModelRegistry(root)
    reg.register("intent", lr.pipeline, task="intent", metrics=lr.metrics)
    reg.register(
        "intent",
        lr.pipeline,
        task="intent",
        variant="compact",
        metrics=lr.metrics,
        extra={"guard": {"passed": True, "min_agreement": 0.99}},
    )
    reg.set_active_variant("intent", "compact")
    return root


def _predict_all(c: httpx.Client, texts: list[str], rounds: int) -> None:
    for r in range(rounds):
        for i in range(0, len(texts), 16):
            batch = [f"{t} #{r}" for t in texts[i : i + 16]]
            assert c.post("/v1/models/intent/predict", json={"inputs": batch}).status_code == 200


def test_bad_compact_falls_back_in_every_worker_and_switches_back(
    tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    models = _bad_registry(tmp_path / "reg", intent_models)
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    with (
        running(models, store, tmp_path, config=SHADOW) as a,
        running(models, store, tmp_path, config=SHADOW) as b,
    ):
        ca, cb = a.client(), b.client()
        assert ca.get("/v1/models/intent").json()["variant"] == "compact"
        # only worker a gets traffic: b must follow the decision through the store
        _predict_all(ca, intent_texts, 3)

        def fell_back(c: httpx.Client) -> dict[str, Any] | None:
            info = c.get("/v1/models/intent").json()
            return info if info["variant"] == "original" else None

        info = wait_for(lambda: fell_back(ca), timeout=30)
        assert info, ca.get("/v1/models/intent").json()
        assert info["requested_variant"] == "compact"
        reason = info["fallback_reason"]
        assert reason.startswith("live agreement") and "shadowed predictions" in reason
        sh = info["shadow"]
        assert sh["fallen_back"] and sh["agreement"] < sh["threshold"]
        assert sh["shadowed"] <= 500  # the target: fallback within 500 shadowed predictions
        assert sh["original_memory_bytes"] > 0
        lo, hi = sh["agreement_lower"], sh["agreement_upper"]
        assert lo <= sh["agreement"] <= hi
        info_b = wait_for(lambda: fell_back(cb), timeout=30)
        assert info_b and info_b["fallback_reason"] == reason
        # the alert history has one row, written once for both workers
        st = MonitorStore(store)
        alerts = [r for r in st.read_table("alerts") if r["rule"] == "shadow_agreement"]
        assert len(alerts) == 1 and alerts[0]["reason"].startswith(reason)
        # /metrics carries the live figures
        metrics = ca.get("/metrics").text
        assert 'leanml_shadow_agreement{model="intent"' in metrics
        assert "leanml_shadow_agreement_lower" in metrics
        if shutil.which("promtool"):
            lint = subprocess.run(
                ["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
        # `leanml models show` reads the decision from the store
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "leanml.cli",
                "models",
                "show",
                "intent",
                "--models-dir",
                str(models),
                "--store",
                store,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(shown.stdout)["shadow"]["reason"] == reason
        # switching back is one admin command; every worker follows
        r = cb.put(
            "/v1/models/intent/variant", json={"variant": "compact"}, headers=admin_headers()
        )
        assert r.status_code == 200, r.text
        assert wait_for(lambda: ca.get("/v1/models/intent").json()["variant"] == "compact")
        _, state = shadow_tables(st)
        rows = st.engine.connect().execute(state.select()).all()
        assert rows[0].epoch == 1 and rows[0].fallen_back == 0
        st.close()


def test_good_compact_keeps_serving(
    tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    models = _good_registry(tmp_path / "reg", intent_models)
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    with running(models, store, tmp_path, config=SHADOW) as a:
        c = a.client()
        _predict_all(c, intent_texts, 3)

        def settled() -> dict[str, Any] | None:
            sh = c.get("/v1/models/intent/stats").json().get("shadow") or {}
            done = (sh.get("budget") or {}).get("done")
            return sh if sh.get("shadowed", 0) >= 30 and sh["shadowed"] == done else None

        sh = wait_for(settled, timeout=30)
        assert sh, json.dumps(c.get("/v1/models/intent/stats").json().get("shadow"))
        assert sh["agreement"] == 1.0 and not sh["fallen_back"]
        assert sh["threshold"] == pytest.approx(0.97)
        assert c.get("/v1/models/intent").json()["variant"] == "compact"
