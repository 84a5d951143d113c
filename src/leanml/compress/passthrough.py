"""Steps no strategy converts pass through unchanged, stored with skops (never pickle).

The skops bytes live in the compact model's ``arrays.npz``. On load every type the payload
references that skops does not already trust must be on ``leanml.artifacts.ALLOWED_TYPES``, the
allow-list in leanml's code, never a list read from the artifact itself; anything else raises
``UntrustedTypeError`` (see :func:`leanml.artifacts.skops_loads`).
"""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np
import scipy.sparse as sp
import skops.io as sio

from leanml.artifacts import skops_loads
from leanml.compress._base import Head, SparseRow, Stage, register_node

__all__ = ["SklearnHead", "SklearnStage", "dump_estimator", "load_estimator"]


def dump_estimator(est: Any) -> np.ndarray:
    return np.frombuffer(sio.dumps(est, compression=zipfile.ZIP_DEFLATED), dtype=np.uint8)


def load_estimator(blob: np.ndarray) -> Any:
    return skops_loads(np.asarray(blob, dtype=np.uint8).tobytes(), "pass-through step")


@register_node
class SklearnStage(Stage):
    """An unconverted transformer, applied as is."""

    kind = "sklearn_stage"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def transform(self, X: Any) -> Any:
        out = self.estimator.transform(X)
        return sp.csr_matrix(out, dtype=np.float32) if sp.issparse(out) else out

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"type": type(self.estimator).__name__}, {"skops": dump_estimator(self.estimator)}

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> SklearnStage:
        return cls(load_estimator(arrays["skops"]))

    def size_components(self) -> dict[str, str]:
        return {"skops": "passthrough"}


@register_node
class SklearnHead(Head):
    """An unconverted classifier, called as is."""

    kind = "sklearn_head"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.has_proba = hasattr(estimator, "predict_proba")
        self.has_decision = hasattr(estimator, "decision_function")

    def decision(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator.decision_function(X))

    def proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(X))

    def predict_index(self, X: Any) -> np.ndarray:
        labels = self.estimator.predict(X)
        return np.searchsorted(self.estimator.classes_, labels)

    def predict_index_one(self, x: Any) -> int:
        return int(self.predict_index(_row_batch(x))[0])

    def decision_one(self, x: Any) -> np.ndarray:
        return self.decision(_row_batch(x))[0]

    def proba_one(self, x: Any) -> np.ndarray:
        return self.proba(_row_batch(x))[0]

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"type": type(self.estimator).__name__}, {"skops": dump_estimator(self.estimator)}

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> SklearnHead:
        return cls(load_estimator(arrays["skops"]))

    def size_components(self) -> dict[str, str]:
        return {"skops": "passthrough"}


def _row_batch(x: Any) -> Any:
    if isinstance(x, SparseRow):
        return sp.csr_matrix(
            (x.values, x.indices, np.array([0, len(x.indices)])), shape=(1, x.size)
        )
    if isinstance(x, np.ndarray):
        return x.reshape(1, -1)
    return [x]
