"""The served model's batch path: compact text models predict in one pass (issue #17)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
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
