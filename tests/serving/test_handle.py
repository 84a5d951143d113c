"""The served model's batch path: compact text models predict in one pass (issue #17)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from leanml.compress import to_compact
from leanml.config import ServingConfig
from leanml.datasets import load_dataset
from leanml.monitor import MonitorConfig
from leanml.registry import ModelRegistry
from leanml.serving.handle import ModelHandle


def test_compact_batches_predict_in_one_pass_and_score_oov_of_every_prediction(
    tmp_path: Path,
) -> None:
    ds = load_dataset("email")
    train = [t[:1500] for t in ds.X_train[:600]]
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2), LogisticRegression())
    pipe.fit(train, ds.y_train[:600])
    compact, _ = to_compact(pipe)
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", pipe, task="email")
    reg.register("email", compact, task="email", variant="compact")
    # nothing sampled: only the one-pass counts can give out-of-vocabulary rates
    mc = MonitorConfig(sampling_rate=0.0, flush_interval_s=3600.0)
    handle = ModelHandle(reg, "email", config=ServingConfig(variant="compact"), monitor_config=mc)
    handle.install(handle.load("compact"))
    texts = [t[:1500] for t in ds.X_test[:120]]

    async def serve() -> list[dict]:
        answers = await asyncio.gather(
            *(handle.predict([t], True, time.perf_counter()) for t in texts)
        )
        return [a[1][0] for a in answers]

    out = asyncio.run(serve())
    assert handle.batcher.items == len(texts)
    proba = pipe.predict_proba(texts)
    np.testing.assert_allclose(
        [[a["probabilities"][c] for c in pipe.classes_] for a in out], proba, atol=1e-6
    )
    assert [a["label"] for a in out] == pipe.predict(texts).tolist()
    # the labels are the served class objects themselves (the monitor's lookups find them by
    # identity), not new strings per prediction
    classes = handle.state.classes  # type: ignore[union-attr]
    assert all(any(a["label"] is c for c in classes) for a in out)
    mon = handle.state.monitor  # type: ignore[union-attr]
    mon.flush()
    oov = np.sort(mon.state.recent_oov.values())
    vec = pipe[0]
    analyze = TfidfVectorizer(**{**vec.get_params(), "ngram_range": (1, 1)}).build_analyzer()
    want = []
    for t in texts:
        words = analyze(t)
        if words:
            want.append(sum(1 for w in words if w not in vec.vocabulary_) / len(words))
    assert oov.size == len(want) > 0  # every prediction, none sampled
    np.testing.assert_allclose(oov, np.sort(want), atol=1e-12)
    mon.close()


def test_the_served_monitor_counts_its_caller_side_cost(tmp_path: Path) -> None:
    """The handle times its record_batch on one batch in 64: the monitor's overhead figure
    then holds a caller-side share next to the flusher's CPU."""
    ds = load_dataset("email")
    train = [t[:500] for t in ds.X_train[:300]]
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(train, ds.y_train[:300])
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", pipe, task="email")
    mc = MonitorConfig(flush_interval_s=3600.0)
    handle = ModelHandle(reg, "email", config=ServingConfig(), monitor_config=mc)
    handle.install(handle.load("original"))
    mon = handle.state.monitor  # type: ignore[union-attr]
    assert mon.stats()["overhead"]["caller_samples"] == 0

    async def serve() -> None:
        for t in train[:130]:  # one at a time: one batch each
            await handle.predict([t], False, time.perf_counter())

    asyncio.run(serve())
    assert handle.batcher.batches == 130
    mon.flush()
    ov = mon.stats()["overhead"]
    assert ov["caller_samples"] == 2 and ov["caller_s"] > 0
    assert ov["monitor_cpu_s"] == pytest.approx(ov["flusher_cpu_s"] + ov["caller_s"])
    mon.close()


def test_a_served_original_scores_the_oov_rate_of_its_sampled_inputs(tmp_path: Path) -> None:
    """An original pipeline counts no tokens: its monitor tokenizes sampled inputs again (the
    words, as the reference and a compact variant count them), within the budget."""
    ds = load_dataset("email")
    train = [t[:500] for t in ds.X_train[:300]]
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    pipe.fit(train, ds.y_train[:300])
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", pipe, task="email")
    mc = MonitorConfig(flush_interval_s=3600.0, sampling_rate=1.0, overhead_budget=1e6)
    handle = ModelHandle(reg, "email", config=ServingConfig(), monitor_config=mc)
    handle.install(handle.load("original"))
    mon = handle.state.monitor  # type: ignore[union-attr]
    texts = [t[:500] for t in ds.X_test[:40]]

    async def serve(batch: list[str]) -> None:
        await asyncio.gather(*(handle.predict([t], False, time.perf_counter()) for t in batch))

    asyncio.run(serve(texts[:1]))  # the budget's first item measures the cost
    mon.flush()
    asyncio.run(serve(texts[1:]))
    mon.flush()
    live = mon.state.recent_oov.values()
    vec = pipe[0]
    analyze = TfidfVectorizer(**{**vec.get_params(), "ngram_range": (1, 1)}).build_analyzer()
    want = [
        sum(1 for w in words if w not in vec.vocabulary_) / len(words)
        for words in map(analyze, texts)
        if words
    ]
    assert live.size == len(want) > 30
    np.testing.assert_allclose(np.sort(live), np.sort(want), atol=1e-12)
    mon.close()
