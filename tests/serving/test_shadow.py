"""The shadow check on real servers (loopback): a compact variant that disagrees with its
original is detected and every worker sharing the store falls back (SQLite and PostgreSQL), on
another host too (its own models directory, one store); ``leanml models switch NAME compact``
and the admin API switch back; ``fallback = "off"`` alerts without switching; both variants'
realized accuracy on shadowed predictions once labels are joined; a good compact keeps
serving."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.serving.conftest import (
    CONFIG,
    admin_headers,
    fresh_postgres,
    make_registry,
    running,
    wait_for,
)

from leanml.datasets import load_email_intents
from leanml.monitor import MonitorStore
from leanml.registry import ModelRegistry
from leanml.serving.shadow import read_decision, shadow_tables

SHADOW = CONFIG.replace(
    "[serving]\n",
    "[serving]\nshadow_rate = 1.0\nshadow_budget = 100.0\nshadow_interval_s = 0.2\n",
    1,
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def _store(backend: str, tmp: Path) -> Iterator[str]:
    """The monitor store's URL: a SQLite file, or a database of its own on PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'monitor.db'}"
    else:
        with fresh_postgres("shadow") as url:
            yield url


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


def _fell_back(c: httpx.Client) -> dict[str, Any] | None:
    info = c.get("/v1/models/intent").json()
    return info if info["variant"] == "original" else None


def _serves(c: httpx.Client, variant: str) -> bool:
    return bool(c.get("/v1/models/intent").json()["variant"] == variant)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leanml.cli", *args], capture_output=True, text=True, check=True
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_compact_falls_back_in_every_worker_and_switches_back(
    backend: str, tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    models = _bad_registry(tmp_path / "reg", intent_models)
    with (
        _store(backend, tmp_path) as store,
        running(models, store, tmp_path, config=SHADOW) as a,
        running(models, store, tmp_path, config=SHADOW) as b,
    ):
        ca, cb = a.client(), b.client()
        assert ca.get("/v1/models/intent").json()["variant"] == "compact"
        # only worker a gets traffic: b must follow the decision through the store
        _predict_all(ca, intent_texts, 3)
        info = wait_for(lambda: _fell_back(ca), timeout=30)
        assert info, ca.get("/v1/models/intent").json()
        assert info["requested_variant"] == "compact"
        reason = info["fallback_reason"]
        assert reason.startswith("live agreement") and "shadowed predictions" in reason
        sh = info["shadow"]
        assert sh["fallen_back"] and sh["alarm"] and sh["agreement"] < sh["threshold"]
        assert sh["shadowed"] <= 500  # the target: fallback within 500 shadowed predictions
        assert sh["original_memory_bytes"] > 0
        lo, hi = sh["agreement_lower"], sh["agreement_upper"]
        assert lo <= sh["agreement"] <= hi
        info_b = wait_for(lambda: _fell_back(cb), timeout=30)
        assert info_b and info_b["fallback_reason"] == reason
        assert info_b["shadow"]["local_shadowed"] == 0  # b re-scored nothing itself
        # the alert history has one row, written once for both workers
        st = MonitorStore(store)
        alerts = [r for r in st.read_table("alerts") if r["rule"] == "shadow_agreement"]
        assert len(alerts) == 1 and alerts[0]["reason"].startswith(reason)
        assert alerts[0]["reason"].endswith("; fell back to the original")
        # /metrics carries the live figures
        metrics = ca.get("/metrics").text
        assert 'leanml_shadow_agreement{model="intent"' in metrics
        assert "leanml_shadow_agreement_lower" in metrics
        assert 'leanml_shadow_fallback{model="intent"} 1' in metrics
        if shutil.which("promtool"):
            lint = subprocess.run(
                ["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
        # `leanml models show` reads the decision from the store
        shown = _cli(
            "models", "show", "intent", "--models-dir", str(models), "--store", store, "--json"
        )
        assert json.loads(shown.stdout)["shadow"]["reason"] == reason
        # switching back is one admin command; every worker follows
        r = cb.put(
            "/v1/models/intent/variant", json={"variant": "compact"}, headers=admin_headers()
        )
        assert r.status_code == 200, r.text
        assert wait_for(lambda: _serves(ca, "compact"))
        _, state = shadow_tables(st)
        with st.engine.connect() as conn:
            rows = conn.execute(state.select()).all()
        assert len(rows) == 1 and rows[0].epoch == 1 and rows[0].fallen_back == 0
        st.close()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fallback_reaches_another_host_through_the_store_only(
    backend: str, tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    """Two hosts: a ``leanml serve`` each with its own copy of the models directory (host b's
    copied before either server ran) and one store. Only host a gets traffic and decides; host b
    falls back with nothing on its disk saying so, then ``leanml models switch intent compact``
    run against host b's directory and the store brings both hosts back to the compact."""
    models_a = _bad_registry(tmp_path / "models-a", intent_models)
    models_b = tmp_path / "models-b"
    shutil.copytree(models_a, models_b)
    disk_b = _files(models_b)
    with (
        _store(backend, tmp_path) as store,
        running(models_a, store, tmp_path, config=SHADOW) as a,
        running(models_b, store, tmp_path, config=SHADOW) as b,
    ):
        ca, cb = a.client(), b.client()
        assert _serves(ca, "compact") and _serves(cb, "compact")
        _predict_all(ca, intent_texts, 3)
        info_a = wait_for(lambda: _fell_back(ca), timeout=30)
        assert info_a, ca.get("/v1/models/intent").json()
        info_b = wait_for(lambda: _fell_back(cb), timeout=30)
        assert info_b, cb.get("/v1/models/intent").json()
        assert info_b["fallback_reason"] == info_a["fallback_reason"]
        assert info_b["shadow"]["local_shadowed"] == 0  # b decided nothing: it read a's decision
        assert _files(models_b) == disk_b  # b's models directory never changed
        r = cb.post("/v1/models/intent/predict", json={"inputs": ["move my meeting to 3pm"]})
        assert r.json()["variant"] == "original"
        # the CLI on host b: its directory and the shared store
        out = _cli(
            "models", "switch", "intent", "compact", "--models-dir", str(models_b), "--store", store
        )
        assert "compact" in out.stdout, out.stdout + out.stderr
        assert wait_for(lambda: _serves(cb, "compact") and _serves(ca, "compact"), timeout=30)
        r = ca.post("/v1/models/intent/predict", json={"inputs": ["move my meeting to 3pm"]})
        assert r.json()["variant"] == "compact"
        st = MonitorStore(store)
        decision = read_decision(st, "intent", 1)
        st.close()
        assert decision is not None
        assert decision["epoch"] == 1 and not decision["fallen_back"] and decision["reason"] is None
        for c in (ca, cb):  # a fresh epoch: fresh counts, a fresh test
            sh = c.get("/v1/models/intent").json()["shadow"]
            assert sh["epoch"] == 1 and not sh["fallen_back"] and not sh["alarm"]


def test_fallback_off_alerts_and_keeps_serving_the_compact(
    tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    models = _bad_registry(tmp_path / "reg", intent_models)
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    config = SHADOW.replace("[serving]\n", '[serving]\nfallback = "off"\n', 1)
    with running(models, store, tmp_path, config=config) as a:
        c = a.client()
        _predict_all(c, intent_texts, 3)

        def alarmed() -> dict[str, Any] | None:
            sh = c.get("/v1/models/intent/stats").json().get("shadow") or {}
            return sh if sh.get("reason") else None

        sh = wait_for(alarmed, timeout=30)
        assert sh, c.get("/v1/models/intent/stats").json().get("shadow")
        assert sh["fallback"] == "off" and sh["alarm"] and not sh["fallen_back"]
        assert sh["reason"].startswith("live agreement") and sh["agreement"] < sh["threshold"]
        assert sh["test"]["alarmed"] and sh["test"]["log_ratio"] >= sh["test"]["log_boundary"]
        st = MonitorStore(store)
        alerts = wait_for(
            lambda: [r for r in st.read_table("alerts") if r["rule"] == "shadow_agreement"]
        )
        st.close()
        assert len(alerts) == 1 and alerts[0]["reason"] == sh["reason"]  # no "fell back"
        # every reader of the store sees an alarm, not a fallback
        decision = read_decision(MonitorStore(store), "intent", 1)
        assert decision is not None and decision["fallback"] == "off"
        assert decision["alarm"] and not decision["fallen_back"]
        shown = _cli("models", "show", "intent", "--models-dir", str(models), "--store", store)
        assert "shadow alarm" in shown.stdout and "shadow fallback" not in shown.stdout
        # many sync intervals later the compact still answers
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            r = c.post("/v1/models/intent/predict", json={"inputs": ["cancel my 3pm meeting"]})
            assert r.json()["variant"] == "compact"
        info = c.get("/v1/models/intent").json()
        assert info["variant"] == "compact" and info["fallback_reason"] is None
        # and it is still shadowed: the live figures go on after the alarm (what was queued
        # before it has long been scored by now)
        mid = c.get("/v1/models/intent/stats").json()["shadow"]["shadowed"]
        _predict_all(c, [f"{t} after the alarm" for t in intent_texts[:64]], 1)  # not cached
        later = wait_for(
            lambda: (s := c.get("/v1/models/intent/stats").json()["shadow"])["shadowed"] > mid and s
        )
        assert later and later["alarm"] and not later["fallen_back"]
        metrics = c.get("/metrics").text
        assert 'leanml_shadow_fallback{model="intent"} 0' in metrics


def test_realized_accuracy_of_both_variants_on_joined_labels(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    """Every served prediction is shadowed (rate 1); the true labels of all of them are sent
    as feedback: the shadow check reports each variant's accuracy on them, which the test
    computes from the served labels and the original's own predictions."""
    models = _bad_registry(tmp_path / "reg", intent_models)
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    ds = load_email_intents()
    texts, truth = [str(t) for t in ds.X_test], [str(y) for y in ds.y_test]
    assert len(set(texts)) == len(texts)  # no cache hits: every text is a model call
    # the threshold is low enough never to fire: the compact keeps serving and being shadowed
    config = SHADOW.replace("[serving]\n", "[serving]\nshadow_threshold = 0.5\n", 1)
    with running(models, store, tmp_path, config=config) as a:
        c = a.client()
        ids, served = [], []
        for i in range(0, len(texts), 16):
            r = c.post("/v1/models/intent/predict", json={"inputs": texts[i : i + 16]})
            assert r.status_code == 200 and r.json()["variant"] == "compact", r.text
            ids += [p["id"] for p in r.json()["predictions"]]
            served += [str(p["label"]) for p in r.json()["predictions"]]

        def stats() -> dict[str, Any]:
            return c.get("/v1/models/intent/stats").json()["shadow"]

        assert wait_for(lambda: stats()["local_shadowed"] == len(texts), timeout=30), stats()
        for i in range(0, len(ids), 20):
            pairs = zip(ids[i : i + 20], truth[i : i + 20], strict=True)
            items = [{"id": p, "label": y} for p, y in pairs]
            r = c.post("/v1/models/intent/feedback", json={"items": items})
            assert r.status_code == 200, r.text
        sh = wait_for(lambda: (s := stats())["joined"] == len(texts) and s, timeout=30)
        assert sh, stats()
    original = [str(y) for y in intent_models[0].pipeline.predict(texts)]
    n = len(texts)
    want_compact = sum(s == y for s, y in zip(served, truth, strict=True)) / n
    want_original = sum(o == y for o, y in zip(original, truth, strict=True)) / n
    assert want_compact != want_original  # two different models: the figures are told apart
    assert sh["accuracy_compact"] == pytest.approx(want_compact, abs=1e-12)
    assert sh["accuracy_original"] == pytest.approx(want_original, abs=1e-12)
    agree = sum(s == o for s, o in zip(served, original, strict=True))
    assert sh["shadowed"] == n and sh["agreement"] == pytest.approx(agree / n, abs=1e-12)
    assert not sh["fallen_back"]
    for v in ("compact", "original"):
        assert sh[f"accuracy_{v}_lower"] <= sh[f"accuracy_{v}"] <= sh[f"accuracy_{v}_upper"]


@contextlib.contextmanager
def _good_server(tmp_path: Path, intent_models: tuple[Any, Any]) -> Iterator[httpx.Client]:
    """A running server (SQLite store) whose compact variant is the original itself."""
    models = _good_registry(tmp_path / "reg", intent_models)
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    with running(models, store, tmp_path, config=SHADOW) as a:
        yield a.client()


def test_good_compact_keeps_serving(
    tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    with _good_server(tmp_path, intent_models) as c:
        # ready only once the check's original is loaded (no load stalls the first requests)
        assert c.get("/v1/models/intent/stats").json()["shadow"]["original_memory_bytes"]
        _predict_all(c, intent_texts, 3)

        def settled() -> dict[str, Any] | None:
            sh = c.get("/v1/models/intent/stats").json().get("shadow") or {}
            done = (sh.get("budget") or {}).get("done")
            # every sampled text scored (none queued for the next tick) and synced
            idle = sh.get("queued") == 0
            return sh if idle and sh.get("shadowed", 0) >= 30 and sh["shadowed"] == done else None

        sh = wait_for(settled, timeout=30)
        assert sh, json.dumps(c.get("/v1/models/intent/stats").json().get("shadow"))
        assert sh["agreement"] == 1.0 and not sh["fallen_back"]
        assert sh["budget"]["share"] == pytest.approx(1.0)  # everything sampled was scored
        assert sh["loop_cpu_s"] > 0  # by the server's event loop
        assert sh["threshold"] == pytest.approx(0.97)
        assert c.get("/v1/models/intent").json()["variant"] == "compact"


def _guard_scores(registry: Path, texts: list[str]) -> tuple[Any, list[Any]]:
    """A ShadowGuard (no store) that shadows every text of ``texts`` in batches of 32; returns
    it once every text is scored, and the original pipeline's labels for them."""
    from leanml.config import ServingConfig
    from leanml.serving.shadow import ShadowGuard

    cfg = ServingConfig(shadow_rate=1.0, shadow_budget=100.0, shadow_interval_s=0.05)
    guard = ShadowGuard(ModelRegistry(registry), "intent", cfg, None, seed=0)
    guard.follow(1, "compact", "compact")
    try:
        wait_for(lambda: guard.original, timeout=60)
        assert guard.original is not None
        for s in range(0, len(texts), 32):
            part = texts[s : s + 32]
            guard.offer(
                part,
                [f"p{s + i}" for i in range(len(part))],
                ["x"] * len(part),
                [0.5] * len(part),
                0.01,
            )
        assert wait_for(lambda: guard.local["n"] >= len(texts), timeout=60)
    finally:
        guard.close()
    return guard, list(guard.original.model.predict(texts))


def test_the_lossless_conversion_re_scores_once_it_matched_the_original(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    # more than one predict call of the scorer (256 texts) can come due at one tick
    data = load_email_intents()
    texts = [str(t) for t in [*data.X_test, *data.X_train][:600]]
    assert len(texts) == 600
    guard, original = _guard_scores(_good_registry(tmp_path / "reg", intent_models), texts)
    # checked on the first ticks' texts, at least 32 (how many came by then depends on timing)
    checked = re.fullmatch(r"lossless conversion \(checked on (\d+)\)", guard.scorer)
    assert checked and 32 <= int(checked[1]) <= len(texts), guard.scorer
    assert guard.scorer_bytes and guard.scorer_bytes > 0
    stats = guard.stats()
    assert stats["scorer"] == guard.scorer
    # the thread's CPU, of which its syncs (each tick's merge and decision, after its scoring)
    assert 0 < stats["sync_cpu_s"] < stats["thread_cpu_s"]
    # what it re-scored is the original's labels: the shadowed pairs hold them
    assert [guard._shadowed[f"p{i}"][1] for i in range(len(texts))] == original


def test_a_conversion_that_differs_leaves_the_original_scoring(
    tmp_path: Path, intent_models: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from leanml.compress import to_compact
    from leanml.serving import shadow

    class Shifted:  # the conversion, every label moved to the next class
        def __init__(self, model: Any) -> None:
            self.model, self.classes_ = model, model.classes_

        def predict_proba(self, X: Any) -> Any:
            return np.roll(self.model.predict_proba(X), 1, axis=1)

    monkeypatch.setattr(shadow, "to_compact", lambda m: (Shifted(to_compact(m)[0]), []))
    texts = [str(t) for t in load_email_intents().X_test[:64]]
    guard, original = _guard_scores(_good_registry(tmp_path / "reg", intent_models), texts)
    assert guard.scorer == "original" and guard.scorer_bytes is None
    assert [guard._shadowed[f"p{i}"][1] for i in range(len(texts))] == original


def _intent_guard(tmp_path: Path, intent_models: tuple[Any, Any]) -> Any:
    """A ShadowGuard (no store; every text shadowed, 50 ms ticks) following the compact intent
    model of a good registry."""
    from leanml.config import ServingConfig
    from leanml.serving.shadow import ShadowGuard

    cfg = ServingConfig(shadow_rate=1.0, shadow_budget=100.0, shadow_interval_s=0.05)
    registry = ModelRegistry(_good_registry(tmp_path / "reg", intent_models))
    guard = ShadowGuard(registry, "intent", cfg, None, seed=0)
    guard.follow(1, "compact", "compact")
    return guard


def _offer_agreeing(
    guard: Any, intent_models: tuple[Any, Any], part: list[str], tag: str, model_s: float
) -> None:
    """Offer ``part`` as served with the labels the original gives (ids ``tag0``, ``tag1``...)."""
    ids = [f"{tag}{i}" for i in range(len(part))]
    labels = list(intent_models[0].pipeline.predict(part))
    guard.offer(part, ids, labels, [0.5] * len(part), model_s)


def test_readers_see_the_counts_that_fired_the_test_only_with_the_fallback(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    """The guard takes the merged counts and the decision made on them at once: stats() read
    while the test decides never shows those counts without the fallback they cause."""
    from leanml.config import ServingConfig
    from leanml.serving.shadow import ShadowGuard

    texts = [str(t) for t in load_email_intents().X_test[:64]]
    store = MonitorStore(f"sqlite:///{tmp_path / 'store.db'}")
    cfg = ServingConfig(shadow_rate=1.0, shadow_budget=100.0, shadow_interval_s=0.05)
    registry = ModelRegistry(_good_registry(tmp_path / "reg", intent_models))
    guard = ShadowGuard(registry, "intent", cfg, store, seed=0)
    seen: list[tuple[int, bool, dict[str, Any]]] = []
    try:
        guard.follow(1, "compact", "compact")
        assert guard.wait_loaded(60) and guard.test is not None
        update = guard.test.update

        def deciding(k: int, n: int) -> bool:
            fired = bool(update(k, n))
            seen.append((n, fired, guard.stats()))  # what a reader sees meanwhile
            return fired

        guard.test.update = deciding  # type: ignore[method-assign]
        pipe = intent_models[0].pipeline
        wrong = np.roll(pipe.classes_, 1)[np.searchsorted(pipe.classes_, pipe.predict(texts))]
        guard.offer(texts, [f"p{i}" for i in range(len(texts))], list(wrong), [0.5] * 64, 0.01)
        assert wait_for(lambda: guard.stats()["fallen_back"], timeout=60)
    finally:
        guard.close()
        store.close()
    n, fired, during = next(s for s in seen if s[1])
    assert n > 0 and not (during["shadowed"] == n and not during["alarm"])
    after = guard.stats()
    assert after["shadowed"] >= n and after["alarm"] and after["reason"].startswith("live agree")


def test_a_paused_guard_samples_nothing_releases_the_original_and_resumes(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    texts = [str(t) for t in load_email_intents().X_test[:96]]
    guard = _intent_guard(tmp_path, intent_models)

    def offer(part: list[str], tag: str) -> None:
        _offer_agreeing(guard, intent_models, part, tag, 0.01)

    try:
        assert guard.wait_loaded(60) and guard.original is not None
        offer(texts[:32], "a")
        assert wait_for(lambda: guard.local["n"] >= 32, timeout=60)
        test = guard.test
        guard.pause()
        assert wait_for(lambda: guard.original is None and guard._scorer is None, timeout=30)
        assert guard.stats()["paused"] and guard.stats()["original_memory_bytes"] is None
        offer(texts[32:64], "b")
        assert not guard._queue and guard.local["n"] == 32  # nothing sampled while paused
        guard.resume()
        assert wait_for(lambda: guard.original, timeout=60)
        offer(texts[64:], "c")
        assert wait_for(lambda: guard.local["n"] >= 64, timeout=60)
        assert not guard.stats()["paused"] and guard.test is test  # the same test carries on
        assert guard.agreement() == 1.0 and not guard.fallen_back
        assert {p[0] for p in guard._shadowed} == {"a", "c"}
    finally:
        guard.close()


def test_the_serving_event_loop_re_scores_and_the_thread_takes_over_once_it_closed(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    import asyncio
    import threading

    texts = [str(t) for t in load_email_intents().X_test[:200]]
    guard = _intent_guard(tmp_path, intent_models)
    scored_on: set[int] = set()
    score_batch = guard._score_batch

    def spy(*args: Any) -> int:
        scored_on.add(threading.get_ident())
        return score_batch(*args)

    guard._score_batch = spy  # type: ignore[method-assign]

    def offer(part: list[str], tag: str) -> None:  # model_s 1 s: a budget for every text
        _offer_agreeing(guard, intent_models, part, tag, 1.0)

    async def serve() -> int:  # offers from inside a running loop, which stays responsive
        offer(texts[:100], "a")
        for _ in range(600):
            if guard.local["n"] >= 100 and not guard._queue:
                break
            await asyncio.sleep(0.05)
        return threading.get_ident()

    try:
        assert guard.wait_loaded(60) and guard.original is not None
        loop = asyncio.new_event_loop()
        try:
            loop_thread = loop.run_until_complete(serve())
        finally:
            loop.close()
        assert guard.local["n"] == 100
        assert scored_on == {loop_thread} and guard.stats()["loop_cpu_s"] > 0
        offer(texts[100:], "b")  # the loop is closed: the guard's thread re-scores
        # (what the CPU budget's burst lets through of the 100)
        assert wait_for(lambda: guard.local["n"] > 100 and not guard._queue, timeout=60)
        assert guard._loop is None and len(scored_on) == 2
        assert guard.agreement() == 1.0 and not guard.fallen_back
    finally:
        guard.close()


def test_a_re_scoring_step_on_the_loop_holds_about_2_ms_of_the_scorer_s_measured_cost(
    tmp_path: Path,
) -> None:
    from leanml.config import ServingConfig
    from leanml.serving.shadow import ShadowGuard

    guard = ShadowGuard(ModelRegistry(tmp_path / "reg"), "intent", ServingConfig(), None)
    assert guard._step() == 4  # nothing measured yet
    guard.budget.cost = 50e-6  # the e-mail conversion's order: 40 texts
    assert guard._step() == 40
    guard._candidate = object()  # the conversion checked beside the original: half
    assert guard._step() == 20
    guard.budget.cost = 0.030  # a slow original: one text a step, never none
    assert guard._step() == 1


def test_the_admin_api_pauses_and_resumes_the_check_in_the_process(
    tmp_path: Path, intent_models: tuple[Any, Any], intent_texts: list[str]
) -> None:
    with _good_server(tmp_path, intent_models) as c:
        url = "/v1/models/intent/shadow"
        r = c.put(url, json={"shadow": "off"})
        assert r.status_code == 401 and r.json()["field"] == "authorization"
        r = c.put(url, json={"shadow": "paused"}, headers=admin_headers())
        assert r.status_code == 422 and "shadow" in json.dumps(r.json())
        _predict_all(c, intent_texts[:64], 1)

        def shadow() -> dict[str, Any]:
            return dict(c.get("/v1/models/intent/stats").json()["shadow"])

        distinct = len(set(intent_texts[:64]))  # the cache answers repeats: not shadowed
        assert wait_for(lambda: shadow()["local_shadowed"] >= distinct, timeout=30)
        r = c.put(url, json={"shadow": "off"}, headers=admin_headers())
        assert r.status_code == 200 and r.json()["shadow"]["paused"], r.text
        assert wait_for(lambda: shadow()["original_memory_bytes"] is None, timeout=30)
        before = shadow()["local_shadowed"]
        _predict_all(c, [f"{t} paused" for t in intent_texts[:64]], 1)
        time.sleep(0.5)  # several ticks: nothing was sampled to score
        assert shadow()["local_shadowed"] == before and shadow()["queued"] == 0
        assert c.get("/v1/models/intent").json()["variant"] == "compact"
        r = c.put(url, json={"shadow": "on"}, headers=admin_headers())
        assert r.status_code == 200 and not r.json()["shadow"]["paused"]
        _predict_all(c, [f"{t} resumed" for t in intent_texts[:64]], 1)
        assert wait_for(lambda: shadow()["local_shadowed"] >= before + distinct, timeout=60)
        assert shadow()["original_memory_bytes"]


def test_pausing_a_check_the_server_does_not_run_is_a_409(
    tmp_path: Path, intent_models: tuple[Any, Any]
) -> None:
    models = _good_registry(tmp_path / "reg", intent_models)
    config = SHADOW.replace("[serving]\n", '[serving]\nshadow = "off"\n', 1)
    with running(models, f"sqlite:///{tmp_path / 'm.db'}", tmp_path, config=config) as a:
        r = a.client().put(
            "/v1/models/intent/shadow", json={"shadow": "off"}, headers=admin_headers()
        )
        assert r.status_code == 409 and r.json()["field"] == "shadow", r.text
