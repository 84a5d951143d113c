"""The online shadow check in the report, its overview, the CLI summary and the live dashboard's
data: a real :class:`ShadowGuard` re-scores served texts with the original and writes a real
SQLite store; the figures read back are the guard's own, and nothing shows where none ran."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.cli import main
from leanml.config import ServingConfig
from leanml.dashboard import build_report, collect
from leanml.dashboard.web import MonitorProvider, dashboard_app, model_entry
from leanml.monitor import MonitorConfig, MonitorStore, monitored
from leanml.monitor.shadow import read_decision
from leanml.registry import ModelRegistry
from leanml.serving.shadow import ShadowGuard

SHADOW = ServingConfig(shadow_rate=1.0, shadow_budget=100.0, shadow_interval_s=0.05)


def _registry(root: Path, original: Pipeline, compact: Pipeline) -> ModelRegistry:
    reg = ModelRegistry(root)
    reg.register("spam", original, task="email")
    reg.register(
        "spam",
        compact,
        task="email",
        variant="compact",
        extra={"guard": {"passed": True, "min_agreement": 0.99}},
    )
    reg.set_active_variant("spam", "compact")
    return reg


def _wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _shadow_run(
    reg: ModelRegistry, store: MonitorStore, texts: list[str], y: np.ndarray
) -> dict[str, Any]:
    """Serve ``texts`` with the compact variant through a real guard (every one shadowed), join
    their ground truth, and return the guard's own figures once the store has them."""
    compact = reg.load("spam", variant="compact")
    guard = ShadowGuard(reg, "spam", SHADOW, store, seed=0)
    try:
        guard.follow(compact.version, "compact", "compact")
        _wait(lambda: guard.test is not None, "the original to load")
        labels = compact.model.predict(texts).tolist()
        conf = compact.model.predict_proba(texts).max(axis=1)
        ids = [f"id{i}" for i in range(len(texts))]
        guard.offer(texts, ids, labels, conf, 0.01)
        _wait(lambda: guard.local["n"] == len(texts), "every text to be re-scored")
        guard.joined(list(zip(ids, y.tolist(), strict=True)))
        version = compact.version
        _wait(
            lambda: (read_decision(store, "spam", version) or {}).get("joined") == len(texts),
            "the store to hold the merged counts",
        )
        # the guard takes the merged counts with the decision made on them, after the store
        return _wait(
            lambda: (s := guard.stats())["joined"] == len(texts) and s, "the guard's decision"
        )
    finally:
        guard.close()


@pytest.fixture
def flipped(tiny_texts: tuple[list[str], np.ndarray]) -> Pipeline:
    """A "compact" variant that answers the opposite of the original."""
    X, y = tiny_texts
    other = np.where(y == "spam", "ham", "spam")
    return Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(X, other)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MonitorStore]:
    st = MonitorStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield st
    st.close()


def _report_text(tmp_path: Path, store: MonitorStore, reg: ModelRegistry) -> str:
    now = time.time()
    out = build_report(store, tmp_path / "out", registry=reg, since=now - 600, until=now + 60)
    return out.html_path.read_text(encoding="utf-8")


def test_the_report_shows_the_live_agreement_and_both_realized_accuracies(
    tmp_path: Path, store: MonitorStore, tiny_pipeline: Pipeline, tiny_texts: Any, capsys: Any
) -> None:
    X, y = tiny_texts
    reg = _registry(tmp_path / "models", tiny_pipeline, tiny_pipeline)  # agrees with itself
    stats = _shadow_run(reg, store, X, y)
    assert stats["shadowed"] == 60 and stats["agreement"] == 1.0 and stats["threshold"] == 0.97
    md = collect(store, registry=reg, since=time.time() - 600).models["spam"]
    assert md.shadow is not None
    for key in ("shadowed", "agreement", "agreement_lower", "joined", "accuracy_compact"):
        assert md.shadow[key] == pytest.approx(stats[key])  # the guard's own figures
    lo = stats["agreement_lower"]
    acc = stats["accuracy_compact"]
    lines = [
        f"live agreement with the original: 1.000 [{lo:.3f}, 1.000] over 60 shadowed "
        "(threshold 0.97); mean top-class probability difference 0.0000",
        "fallback: none (the agreement test holds)",
        f"realized accuracy of the 60 shadowed with ground truth: compact {acc:.3f} "
        f"[{stats['accuracy_compact_lower']:.3f}, {stats['accuracy_compact_upper']:.3f}], "
        f"original {acc:.3f} [{stats['accuracy_original_lower']:.3f}, "
        f"{stats['accuracy_original_upper']:.3f}]",
    ]
    doc = _report_text(tmp_path, store, reg)
    for line in lines:
        assert line in doc
    assert doc.index(lines[0]) < doc.index("id='health'")  # in the overview too
    assert doc.count(lines[0]) == 2  # and in the model's section
    argv = ["report", "--store", store.url, "--out", str(tmp_path / "cli")]
    argv += ["--models-dir", str(tmp_path / "models"), "--since", "10m"]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"spam: healthy, 0 predictions shadow check: {lines[0]} shadow check: " in printed


def test_a_fallback_shows_with_its_reason_in_the_report_and_the_overview(
    tmp_path: Path,
    store: MonitorStore,
    tiny_pipeline: Pipeline,
    flipped: Pipeline,
    tiny_texts: Any,
) -> None:
    X, y = tiny_texts
    reg = _registry(tmp_path / "models", tiny_pipeline, flipped)
    stats = _shadow_run(reg, store, X, y)
    assert stats["fallen_back"] and stats["agreement"] == 0.0
    doc = _report_text(tmp_path, store, reg)
    reason = html.escape(f"fell back to the original: {stats['reason']}")
    assert stats["reason"].startswith("live agreement 0.000 [") and reason in doc
    assert f"shadow check: {reason}." in doc  # the overview's "what changed"
    assert "shadow_agreement" in doc  # the alert the guard wrote, in the health section


def test_no_shadow_data_shows_nothing(
    tmp_path: Path, store: MonitorStore, tiny_pipeline: Pipeline
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    reg.register("spam", tiny_pipeline, task="email")
    doc = _report_text(tmp_path, store, reg)
    assert "shadow check" not in doc and "live agreement" not in doc
    assert model_entry("spam", {"variant": "original"})["shadow"] == []
    # a server that serves a compact variant without a shadow check says so; a monitor cannot
    assert model_entry("spam", {"variant": "compact", "shadow": None})["shadow"] == [
        "shadow check off"
    ]
    assert model_entry("spam", {"variant": "compact"})["shadow"] == []


def test_the_live_dashboard_data_carries_the_shadow_check(
    tmp_path: Path, store: MonitorStore, tiny_pipeline: Pipeline, flipped: Pipeline, tiny_texts: Any
) -> None:
    X, y = tiny_texts
    reg = _registry(tmp_path / "models", tiny_pipeline, flipped)
    stats = _shadow_run(reg, store, X, y)
    # leanml serve's stats carry the guard's figures: what ServiceProvider hands the page
    served = model_entry("spam", {"variant": "original", "shadow": stats})
    assert served["shadow"][0].startswith("live agreement with the original: 0.000 [0.000, ")
    assert served["shadow"][1] == f"fell back to the original: {stats['reason']}"
    assert served["shadow_failed"] and served["shadow_agreement"] == 0.0
    # a dashboard over monitors and the store reads the same decision from the store
    version = str(reg.serving_version("spam"))
    est = monitored(
        flipped, "spam", version=version, config=MonitorConfig(), store=store, start=False
    )
    try:
        est.predict(X[:5])
        app = dashboard_app(MonitorProvider({"spam": est.monitor}, store=store))
        transport = httpx.ASGITransport(app=app)

        async def fetch() -> dict[str, Any]:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return (await c.get("/data.json")).json()

        (m,) = asyncio.run(fetch())["models"]
    finally:
        est.monitor.close()
    assert m["shadow"][0].startswith("live agreement with the original: 0.000 [0.000, ")
    assert "over 60 shadowed (threshold 0.97)" in m["shadow"][0]
    assert m["shadow"][1] == f"fell back to the original: {stats['reason']}"
