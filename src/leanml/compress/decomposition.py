"""TruncatedSVD, StandardScaler and Normalizer.

* TruncatedSVD: ``X @ components_.T``; components stored in the recipe's precision (int8: one
  scale per input column j, ``s_j = max_c |C_cj| / 127``, error <= ``s_j / 2`` per entry, so
  <= ``sum_j |x_j| * s_j / 2`` per output) and magnitude-pruned; an input column whose
  component weights are all pruned is dropped, and the vectorizer before it drops the term.
* StandardScaler: ``(x - mean) / scale`` with mean and scale in ``aux_precision``
  (fp16: relative error <= 2**-11 each); element-wise, so it passes vocabulary pruning through.
* Normalizer: row norm (l1, l2, max); nothing to store. When pruning removes input columns the
  norm is taken over the remaining ones (the guard measures it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import Normalizer, StandardScaler

from leanml.compress._base import (
    ConvertContext,
    SparseRow,
    Stage,
    register_node,
    register_strategy,
    to_dense_row,
)
from leanml.compress._quant import decode_matrix, encode_matrix
from leanml.compress.linear import prune_weights

__all__ = ["NormalizerStage", "SVDStage", "ScalerStage"]


@register_node
class SVDStage(Stage):
    """A linear projection ``X @ C.T`` (C: components x inputs); dense float32 output."""

    kind = "svd"

    def __init__(self, components: np.ndarray, precision: str = "fp32") -> None:
        self._ct = np.ascontiguousarray(np.asarray(components, dtype=np.float32).T)
        self.precision = precision

    @property
    def components(self) -> np.ndarray:
        """Components x inputs, a view of the stored inputs x components matrix."""
        return self._ct.T

    def _refresh(self) -> None:
        self._ct = np.ascontiguousarray(self._ct)

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self._ct, dtype=np.float32)

    def transform_one(self, x: Any) -> np.ndarray:
        if isinstance(x, SparseRow):
            return np.asarray(x.values @ self._ct[x.indices], dtype=np.float32)
        return np.asarray(np.asarray(x, dtype=np.float32) @ self._ct)

    def used_inputs(self) -> np.ndarray | None:
        return np.asarray(np.any(self.components != 0, axis=0))

    def select_inputs(self, mask: np.ndarray) -> None:
        self._ct = self._ct[mask]
        self._refresh()

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        self._ct = self._ct[perm]
        self._refresh()

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        # int8: one scale per input column (term), so rare terms keep their relative precision
        spec, arrays = encode_matrix(self._ct, self.precision, "C", per="row")
        return {"C": spec}, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> SVDStage:
        return cls(decode_matrix(spec["C"], arrays, "C").T, spec["C"]["precision"])

    def size_components(self) -> dict[str, str]:
        return {"C": "components"}


@register_node
class ScalerStage(Stage):
    kind = "scaler"
    elementwise = True

    def __init__(self, mean: np.ndarray | None, scale: np.ndarray | None, precision: str) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.precision = precision

    def transform(self, X: Any) -> Any:
        if sp.issparse(X):
            if self.mean is not None:
                X = X.toarray()
            else:
                X = sp.csr_matrix(X, dtype=np.float32, copy=True)
                if self.scale is not None:
                    X.data /= self.scale[X.indices]
                return X
        X = np.array(X, dtype=np.float32)
        if self.mean is not None:
            X -= self.mean
        if self.scale is not None:
            X /= self.scale
        return X

    def transform_one(self, x: Any) -> Any:
        if isinstance(x, SparseRow) and self.mean is None:
            values = x.values / self.scale[x.indices] if self.scale is not None else x.values
            return SparseRow(x.indices, values, x.size)
        return self.transform(to_dense_row(x)[None, :])[0]

    def _vectors(self) -> dict[str, np.ndarray | None]:
        return {"mean": self.mean, "scale": self.scale}

    def select_inputs(self, mask: np.ndarray) -> None:
        self.mean = None if self.mean is None else self.mean[mask]
        self.scale = None if self.scale is None else self.scale[mask]

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        self.select_inputs(perm)

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        dtype = np.float16 if self.precision == "fp16" else np.float32
        arrays = {k: v.astype(dtype) for k, v in self._vectors().items() if v is not None}
        return {"has": sorted(arrays)}, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> ScalerStage:
        get = lambda k: arrays[k] if k in spec["has"] else None  # noqa: E731
        return cls(get("mean"), get("scale"), "fp32")

    def size_components(self) -> dict[str, str]:
        return {"mean": "scaler", "scale": "scaler"}


@register_node
class NormalizerStage(Stage):
    kind = "normalizer"
    elementwise = True

    def __init__(self, norm: str) -> None:
        self.norm = norm

    def transform(self, X: Any) -> Any:
        from sklearn.preprocessing import normalize

        return normalize(X, norm=self.norm, copy=True)

    def transform_one(self, x: Any) -> Any:
        values = x.values if isinstance(x, SparseRow) else np.asarray(x, dtype=np.float32)
        if self.norm == "l2":
            total = float(np.sqrt(values @ values))
        elif self.norm == "l1":
            total = float(np.abs(values).sum())
        else:
            total = float(np.abs(values).max()) if values.size else 0.0
        out = values / np.float32(total) if total > 0 else values
        return SparseRow(x.indices, out, x.size) if isinstance(x, SparseRow) else out

    def select_inputs(self, mask: np.ndarray) -> None:
        return None

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        return None

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"norm": self.norm}, {}

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> NormalizerStage:
        return cls(spec["norm"])


@register_strategy(TruncatedSVD)
def _convert_svd(est: Any, ctx: ConvertContext) -> SVDStage:
    C = prune_weights(est.components_, ctx.recipe, center=False, input_scale=ctx.input_scale)
    return SVDStage(C, ctx.recipe.precision)


@register_strategy(StandardScaler)
def _convert_scaler(est: Any, ctx: ConvertContext) -> ScalerStage:
    mean = est.mean_ if est.with_mean else None
    scale = est.scale_ if est.with_std else None
    return ScalerStage(mean, scale, ctx.recipe.aux_precision)


@register_strategy(Normalizer)
def _convert_normalizer(est: Any, ctx: ConvertContext) -> NormalizerStage:
    return NormalizerStage(est.norm)
