"""Small real-text fixtures for the compression tests (the bundled SpamAssassin emails)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanml.compress import CompactModel


@dataclasses.dataclass
class Texts:
    X_train: list[str]
    y_train: np.ndarray
    X_val: list[str]
    y_val: np.ndarray
    X_test: list[str]
    y_test: np.ndarray


@pytest.fixture(scope="session")
def emails() -> Texts:
    """About 1,500 emails (3 classes) split train / val / test; offline, bundled data."""
    from leanml.datasets import load_dataset

    ds = load_dataset("email")
    rng = np.random.default_rng(0)

    def cut(X: list[str], y: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
        idx = np.sort(rng.permutation(len(X))[:n])
        # emails are long; the first 1,500 characters keep the tests fast
        return [X[i][:1500] for i in idx], np.asarray(y)[idx]

    return Texts(
        *cut(ds.X_train, ds.y_train, 700),
        *cut(ds.X_val, ds.y_val, 400),
        *cut(ds.X_test, ds.y_test, 400),
    )


@pytest.fixture(scope="session")
def binary_emails(emails: Texts) -> Texts:
    """Spam vs not spam."""

    def b(y: np.ndarray) -> np.ndarray:
        return np.where(y == "spam", "spam", "ham")

    return Texts(
        emails.X_train, b(emails.y_train), emails.X_val, b(emails.y_val), emails.X_test,
        b(emails.y_test),
    )  # fmt: skip


def roundtrip(model: CompactModel, tmp_path: Path) -> CompactModel:
    """Save and load a compact model, refusing any unpickling on the way."""
    import pickle

    names = model.save_payload(tmp_path)
    assert sorted(names) == ["arrays.npz", "spec.json"]
    original_loads, original_load = pickle.loads, pickle.load

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle used while loading a compact model")

    pickle.loads, pickle.load = forbidden, forbidden  # type: ignore[assignment]
    try:
        return CompactModel.load_payload(tmp_path)
    finally:
        pickle.loads, pickle.load = original_loads, original_load  # type: ignore[assignment]


def agreement(a: Any, b: Any) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def check_strategy(
    pipe: Any,
    data: Texts,
    tmp_path: Path,
    *,
    proba_atol: float = 1e-5,
    exact_agreement: float = 1.0,
    guard: bool = True,
) -> Any:
    """The checks every strategy must pass on a fitted ``pipe``:

    * fp32, no pruning: after a save/load round trip without pickle the predictions equal the
      original's (``exact_agreement``) and ``predict_proba`` is within ``proba_atol``;
    * the accuracy guard (defaults) accepts a candidate that is smaller than the original and,
      on held-out test data, agrees with it at >= 97% (the guard's 99% holds on validation);
    * single-document and batch predictions of the compact model are identical.
    Returns the guard's result.
    """
    from leanml.compress import ModelQuantizer, Recipe, to_compact

    compact, passthrough = to_compact(pipe, Recipe())
    assert passthrough == []
    exact = roundtrip(compact, tmp_path / "fp32")
    assert agreement(exact.predict(data.X_test), pipe.predict(data.X_test)) >= exact_agreement
    if hasattr(pipe, "predict_proba"):
        np.testing.assert_allclose(
            exact.predict_proba(data.X_test), pipe.predict_proba(data.X_test), atol=proba_atol
        )
    if not guard:
        return None
    # a short pruning grid keeps the suite fast; the guard logic is the same as with "auto"
    result = ModelQuantizer(latency_calls=0).compress(
        pipe, data.X_val, data.y_val, prune=[0.0, 0.9]
    )
    assert result.compressed, result.fallback_reason
    assert result.compact_bytes < result.original_bytes
    assert result.agreement >= 0.99
    assert result.accuracy_before - result.accuracy_after <= 0.005 + 1e-12
    loaded = roundtrip(result.model, tmp_path / "guarded")
    batch = loaded.predict(data.X_test)
    assert agreement(batch, pipe.predict(data.X_test)) >= 0.97
    single = [loaded.predict([x])[0] for x in data.X_test[:60]]
    assert agreement(single, batch[:60]) == 1.0
    return result
