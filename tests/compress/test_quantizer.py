"""The accuracy guard: never a candidate that breaks tolerance, never a larger artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.compress import (
    CandidateReport,
    CompactModel,
    ModelQuantizer,
    candidate_recipes,
    choose_candidate,
    compress,
    compress_many,
    serialized_size,
)
from leanml.compress.quantizer import check_candidate
from leanml.errors import ParameterError

from .conftest import Texts

reports = st.lists(
    st.builds(
        CandidateReport,
        recipe=st.just({}),
        label=st.text(min_size=1, max_size=5),
        bytes=st.integers(1, 10_000),
        accuracy=st.floats(0, 1),
        agreement=st.floats(0, 1),
        max_proba_error=st.none() | st.floats(0, 1),
    ),
    max_size=30,
)


@given(
    reports,
    st.integers(1, 10_000),
    st.floats(0, 1),
    st.floats(0, 0.2),
    st.floats(0.5, 1),
    st.none() | st.floats(0, 1),
)
def test_guard_choice_property(
    candidates: list[CandidateReport],
    original_bytes: int,
    accuracy_before: float,
    tolerance: float,
    min_agreement: float,
    max_proba_error: float | None,
) -> None:
    kw = {
        "original_bytes": original_bytes,
        "accuracy_before": accuracy_before,
        "tolerance": tolerance,
        "min_agreement": min_agreement,
        "max_proba_error": max_proba_error,
    }
    chosen = choose_candidate(candidates, **kw)
    passing = [c for c in candidates if check_candidate(c, **kw) is None]
    if chosen is None:
        assert passing == []
        return
    assert chosen.bytes is not None and chosen.bytes < original_bytes
    assert accuracy_before - (chosen.accuracy or 0) <= tolerance + 1e-12
    assert (chosen.agreement or 0) >= min_agreement
    assert chosen.bytes == min(c.bytes or 0 for c in passing)
    if max_proba_error is not None and chosen.max_proba_error is not None:
        assert chosen.max_proba_error <= max_proba_error


_CASE: dict[str, object] = {}


def _case(emails: Texts) -> tuple[Pipeline, int]:
    """A small model and its original size, built once (kept out of hypothesis' reprs)."""
    if not _CASE:
        pipe = Pipeline([("v", TfidfVectorizer(min_df=2)), ("c", LogisticRegression(C=10))])
        pipe.fit(emails.X_train, emails.y_train)
        _CASE["pipe"], _CASE["bytes"] = pipe, serialized_size(pipe)
    return _CASE["pipe"], _CASE["bytes"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def small_pipe(emails: Texts) -> Pipeline:
    return _case(emails)[0]


@settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    tolerance=st.sampled_from([0.0, 0.002, 0.01, 0.05]),
    min_agreement=st.sampled_from([0.9, 0.97, 0.99, 1.0]),
    prune=st.sampled_from([(0.0, 0.9), (0.5, 0.98), "none"]),
)
def test_guard_end_to_end_property(
    emails: Texts, tolerance: float, min_agreement: float, prune: object
) -> None:
    pipe, original_bytes = _case(emails)
    X_val, y_val = emails.X_val[:200], emails.y_val[:200]
    result = ModelQuantizer(latency_calls=0).compress(
        pipe, X_val, y_val, tolerance=tolerance, min_agreement=min_agreement,
        prune=list(prune) if isinstance(prune, tuple) else prune,
        original_bytes=original_bytes,
    )  # fmt: skip
    if result.compressed:
        assert isinstance(result.model, CompactModel)
        assert result.compact_bytes < result.original_bytes == original_bytes
        assert result.compact_bytes == serialized_size(result.model)  # the real saved bytes
        assert result.accuracy_before - result.accuracy_after <= tolerance + 1e-12
        assert result.agreement >= min_agreement
        y = result.model.predict(X_val)
        assert np.mean(y == pipe.predict(X_val)) == pytest.approx(result.agreement)
        accepted = [c for c in result.candidates if c.accepted]
        assert len(accepted) == 1 and accepted[0].bytes == result.compact_bytes
        assert result.guard_verdict()["passed"] is True
    else:
        assert result.model is pipe and result.fallback_reason
    for candidate in result.rejected:
        assert candidate.reason  # every rejected candidate says why


def test_rejected_model_falls_back_and_says_why(small_pipe: Pipeline, emails: Texts) -> None:
    result = compress(
        small_pipe, emails.X_val, emails.y_val, precision="int8", prune=0.99,
        min_agreement=1.0, tolerance=0.0,
    )  # fmt: skip
    assert not result.compressed
    assert result.model is small_pipe
    assert "no candidate passed the guard" in (result.fallback_reason or "")
    assert "agreement" in (result.fallback_reason or "") or "accuracy" in (
        result.fallback_reason or ""
    )
    verdict = result.guard_verdict()
    assert verdict["passed"] is False and verdict["reason"] == result.fallback_reason
    assert isinstance(result.rejected_model, CompactModel)  # kept to record the verdict
    assert result.compact_bytes == result.original_bytes and result.ratio == 1.0


def test_max_proba_error_bound(small_pipe: Pipeline, emails: Texts) -> None:
    result = ModelQuantizer(latency_calls=0).compress(
        small_pipe, emails.X_val, emails.y_val, prune=[0.0, 0.9], max_proba_error=0.01
    )
    assert result.compressed and (result.max_proba_error or 0) <= 0.01
    for candidate in result.candidates:
        if (candidate.max_proba_error or 0) > 0.01:
            assert not candidate.accepted


def test_never_larger_than_the_original(small_pipe: Pipeline, emails: Texts) -> None:
    result = ModelQuantizer(latency_calls=0).compress(
        small_pipe, emails.X_val, emails.y_val, original_bytes=1000, prune="none"
    )
    assert not result.compressed
    reasons = [c.reason for c in result.candidates]
    assert all("not smaller than the original" in r for r in reasons), reasons


def test_result_fields_and_latency(small_pipe: Pipeline, emails: Texts) -> None:
    result = ModelQuantizer(latency_calls=20, batch_size=100).compress(
        small_pipe, emails.X_val, emails.y_val, prune=[0.0, 0.9]
    )
    assert result.compressed and result.recipe is not None
    for name in ("single_us_before", "single_us_after", "batch_per_s_before", "batch_per_s_after"):
        assert (getattr(result, name) or 0) > 0
    assert result.max_proba_error is not None and 0 <= result.max_proba_error <= 1
    data = result.to_dict()
    assert data["recipe_label"] == result.recipe_label and "model" not in data
    assert len(data["candidates"]) == len(candidate_recipes("auto", [0.0, 0.9]))


def test_compress_many(small_pipe: Pipeline, emails: Texts) -> None:
    results = compress_many(
        {
            "a": (small_pipe, emails.X_val, emails.y_val),
            "b": (small_pipe, emails.X_val[:100], emails.y_val[:100]),
        },
        prune="none",
        confidence=0.9,
    )
    assert set(results) == {"a", "b"} and results["a"].compressed
    # 100 validation rows cannot show 99% agreement at 90% confidence: the guard says so
    assert not results["b"].compressed
    assert "lower confidence bound" in (results["b"].fallback_reason or "")


def test_parameter_errors(small_pipe: Pipeline, emails: Texts) -> None:
    with pytest.raises(ParameterError, match="'tolerance' parameter"):
        compress(small_pipe, emails.X_val, emails.y_val, tolerance=-1)
    with pytest.raises(ParameterError, match="'precision' parameter"):
        candidate_recipes("int4")
    with pytest.raises(ParameterError, match="'prune' parameter"):
        candidate_recipes("auto", "lots")
    with pytest.raises(ParameterError, match="'X_val' parameter"):
        compress(small_pipe, emails.X_val[:3], emails.y_val[:4])
    assert len(candidate_recipes("fp16", {"threshold": 0.1})) == 2


def test_unfitted_or_non_classifier_is_refused(tmp_path: Path) -> None:
    from leanml.compress import to_compact
    from leanml.errors import CompressionError

    with pytest.raises(CompressionError, match="classes_"):
        to_compact(TfidfVectorizer())
