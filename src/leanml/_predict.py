"""Labels and a confidence per prediction for any fitted classifier.

The confidence is the top class probability: ``predict_proba`` when the model has it, else a
softmax of ``decision_function`` (a logistic sigmoid for binary margins), which keeps models such
as LinearSVC usable for confidence-based monitoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["predict_top", "predict_with_confidence", "scores_to_proba"]


def scores_to_proba(scores: np.ndarray) -> np.ndarray:
    """Turn decision scores (n,) or (n, k) into probabilities (n, k) by sigmoid or softmax."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-scores))
        return np.column_stack([1.0 - p, p])
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def predict_with_confidence(model: Any, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(labels, confidences, probabilities)`` for the batch ``X``."""
    top, confidences, proba = predict_top(model, X)
    return np.asarray(model.classes_)[top], confidences, proba


def predict_top(model: Any, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(class indices, confidences, probabilities)`` for the batch ``X``."""
    if hasattr(model, "predict_proba"):
        try:
            proba = np.asarray(model.predict_proba(X))
        except AttributeError:  # e.g. SGDClassifier(loss="hinge") exposes the name but refuses
            proba = scores_to_proba(model.decision_function(X))
    else:
        proba = scores_to_proba(model.decision_function(X))
    top = proba.argmax(axis=1)
    return top, proba[np.arange(len(top)), top], proba
