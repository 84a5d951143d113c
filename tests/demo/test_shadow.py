"""The demo's shadow check: the guard's sampling and counts, checked against scikit-learn on the
same texts, its always-valid test failing a compact that disagrees, and a whole simulated day of a
tiny model with the check on (its figures in the day's results, the report and the table)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline

from leanml._intervals import wilson
from leanml.config import ServingConfig
from leanml.dashboard import build_report
from leanml.datasets import Dataset
from leanml.demo.day import DAY_S, simulate_day
from leanml.demo.output import _day_table, shadow_cell
from leanml.demo.run import _day_shadow, _shadow_result
from leanml.demo.shadow import DayShadow
from leanml.monitor import MonitorStore
from leanml.registry import ModelRegistry

DAY = 19_675 * 86_400.0  # 2023-11-14 00:00 UTC


@pytest.fixture(scope="module")
def nb(tiny_texts: tuple[list[str], np.ndarray]) -> Pipeline:
    """A second model of the same task: it disagrees with the logistic regression on some."""
    X, y = tiny_texts
    return make_pipeline(TfidfVectorizer(), MultinomialNB(alpha=5.0)).fit(X, y)


def _texts(n: int) -> list[str]:
    words = "buy cheap pills meeting notes budget lunch money click review offer monday".split()
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(words, 4)) for _ in range(n)]


def _serve(shadow: DayShadow, compact: Pipeline, texts: list[str], batch: int = 7) -> list[str]:
    labels = compact.predict(texts).astype(str)
    conf = compact.predict_proba(texts).max(axis=1)
    ids = [f"p{i}" for i in range(len(texts))]
    for i in range(0, len(texts), batch):
        sl = slice(i, i + batch)
        shadow.offer(texts[sl], ids[sl], labels[sl].tolist(), conf[sl])
    shadow.decide(1.0)
    return ids


def test_every_offered_text_is_counted_as_scikit_learn_scores_it(
    tiny_pipeline: Pipeline, nb: Pipeline
) -> None:
    texts = _texts(500)
    shadow = DayShadow(tiny_pipeline, rate=1.0, threshold=0.5)
    ids = _serve(shadow, nb, texts)
    agree = nb.predict(texts) == tiny_pipeline.predict(texts)
    assert 0 < agree.sum() < len(texts)  # the two models differ on some texts
    got = shadow.summary()
    assert got["shadowed"] == 500 and got["agreement"] == pytest.approx(agree.mean())
    lo, hi = wilson(agree.sum(), 500)
    assert (got["agreement_lower"], got["agreement_upper"]) == pytest.approx((lo, hi))
    diff = np.abs(nb.predict_proba(texts).max(axis=1) - tiny_pipeline.predict_proba(texts).max(1))
    assert got["proba_diff_mean"] == pytest.approx(diff.mean())
    truth = tiny_pipeline.predict(texts)  # the original is always right here
    shadow.joined(zip(ids[:200], truth[:200].tolist(), strict=True))
    got = shadow.summary()
    assert got["joined"] == 200 and got["accuracy_original"] == 1.0
    assert got["accuracy_compact"] == pytest.approx(agree[:200].mean())
    assert not got["fallen_back"] and got["seconds"] > 0


def test_a_sample_at_the_rate_and_a_failing_compact_falls_back(
    tiny_pipeline: Pipeline, tiny_texts: tuple[list[str], np.ndarray]
) -> None:
    X, y = tiny_texts
    flipped = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
        X, np.where(y == "spam", "ham", "spam")
    )
    texts = _texts(20_000)
    shadow = DayShadow(tiny_pipeline, rate=0.01, threshold=0.97, seed=3)
    _serve(shadow, flipped, texts, batch=50)
    got = shadow.summary()
    assert abs(got["shadowed"] - 200) < 5 * np.sqrt(200 * 0.99)  # binomial(20000, 1%)
    assert got["agreement"] == 0.0 and got["fallen_back"] and got["fallen_back_at"] == 1.0
    assert (
        got["reason"].startswith("live agreement 0.000 [0.000, ") and "< 0.97 over" in got["reason"]
    )
    assert shadow_cell(got).endswith(f"n={got['shadowed']:,} FAILED")


def test_cells_say_why_there_is_no_agreement() -> None:
    assert shadow_cell(None) == "-"
    off = {"enabled": False, "reason": "serving the original: guard failed"}
    assert shadow_cell(off) == "— serving the original: guard failed"
    figures = {"enabled": True, "shadowed": 4210, "agreement": 0.987}
    figures |= {"agreement_lower": 0.9833, "agreement_upper": 0.9903, "fallen_back": False}
    assert shadow_cell(figures) == "0.987 [0.983, 0.990] n=4,210"


def test_a_simulated_day_with_the_shadow_check(
    tmp_path: Path, tiny_pipeline: Pipeline, nb: Pipeline, tiny_texts: tuple[list[str], np.ndarray]
) -> None:
    X, y = tiny_texts
    ds = Dataset("tiny", "email", X, y, X, y, _texts(300), tiny_pipeline.predict(_texts(300)),
                 "test", "-", "-")  # fmt: skip
    url = f"sqlite:///{tmp_path / 'store.db'}"
    MonitorStore(url).close()
    shadow = DayShadow(tiny_pipeline, rate=0.01, threshold=0.5, seed=0)
    day = simulate_day(nb, ds, url, name="tiny", task="email", day_start=DAY, shadow=shadow)
    got = shadow.summary()
    # about 1% of the day's predictions, each re-scored by the original
    assert abs(got["shadowed"] - day["predictions"] / 100) < 5 * np.sqrt(day["predictions"] / 100)
    assert 0 < got["agreement"] < 1 and got["agreement_lower"] < got["agreement"]
    assert 0 < got["joined"] < got["shadowed"]  # late labels: about 65% arrive, some too late
    assert got["accuracy_original"] == 1.0  # the test labels are the original's answers
    report = build_report(
        url,
        tmp_path / "report",
        since=DAY,
        until=DAY + DAY_S + 60,
        serving={"tiny": {"variant": "compact", "shadow": got}},
    )
    doc = report.html_path.read_text(encoding="utf-8")
    n = got["shadowed"]
    assert f"live agreement with the original: {got['agreement']:.3f} [" in doc
    assert f"over {n:,} shadowed (threshold 0.5)" in doc
    result = {
        "dataset": "tiny",
        "served_variant": "compact",
        "fallback_reason": None,
        "variants": {},
        "monitoring": {},
        "day": day,
        "shadow": got,
    }
    console = Console(file=io.StringIO(), width=250, record=True)
    console.print(_day_table({"tiny": result}))
    text = console.export_text()
    assert "shadow agreement [95%]" in text and shadow_cell(got) in text


def test_without_a_compact_serving_the_day_says_why(
    tmp_path: Path, tiny_pipeline: Pipeline, nb: Pipeline
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    reg.register("spam", tiny_pipeline, task="email")
    original = reg.load("spam", variant="original")
    on, off = ServingConfig(), ServingConfig(shadow="off")
    # the compression guard kept no compact variant: its reason
    assert _day_shadow(original, original, on, 0) is None
    rejected = {"fallback_reason": "no candidate passed the guard"}
    assert _shadow_result(None, original, on, rejected) == {
        "enabled": False,
        "reason": "serving the original: no candidate passed the guard",
    }
    # a compact variant that serves, with the check off
    reg.register("spam", nb, task="email", variant="compact", version=original.version)
    reg.set_active_variant("spam", "compact")
    compact = reg.load("spam", original=original)
    assert compact.variant == "compact" and _day_shadow(original, compact, off, 0) is None
    assert (
        _shadow_result(None, compact, off)["reason"] == "shadow check off ([serving] shadow = off)"
    )
    shadow = _day_shadow(original, compact, on, 0)
    assert shadow is not None and shadow.original is original.model  # the loaded one, reused
    assert shadow.threshold == 0.97  # no guard verdict stored: 0.99 - 0.02
