"""Trees and ensembles: DecisionTree, RandomForest, ExtraTrees, GradientBoosting classifiers.

Stored per tree, in scikit-learn's depth-first node order: a leaf bit per node, and for inner
nodes only the split feature (smallest unsigned type), the threshold and the right child (the
left child of a depth-first inner node is the next node; trees built best-first store it too).
Leaves store their values: class fractions for forests (fp32, fp16, or uint8 = round(255 p),
error <= 1/510 per leaf, so <= 1/510 on an averaged forest probability), or the
learning-rate-scaled regression value for gradient boosting (fp32, fp16, or int8 with one scale
per tree, error <= scale / 2 per tree). Impurity, sample counts and weighted counts are dropped.

Thresholds: scikit-learn compares ``float32(x) <= float64(t)``; storing ``t`` rounded *down*
to float32 keeps every split identical (fp32). In fp16 (``aux_precision``) a value ``x`` with
``floor16(t) < x <= t`` takes the other branch; the guard measures that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier

from leanml.compress._base import (
    ConvertContext,
    Head,
    SparseRow,
    Unsupported,
    register_node,
    register_strategy,
    to_dense,
    to_dense_row,
)
from leanml.compress._quant import floor_float, pack_uints, unpack_uints

__all__ = ["TreeEnsembleHead"]


def _flatten(trees: list[Any]) -> dict[str, Any]:
    """Concatenate sklearn ``tree_`` objects into global arrays."""
    feats, thrs, lefts, rights, leaf_vals, sizes, depths = [], [], [], [], [], [], []
    offset = 0
    for tree in trees:
        t = tree.tree_
        n = t.node_count
        left = t.children_left.astype(np.int64)
        right = t.children_right.astype(np.int64)
        leaf = left < 0
        feats.append(np.where(leaf, 0, t.feature).astype(np.int64))
        thrs.append(np.where(leaf, 0.0, t.threshold))
        lefts.append(np.where(leaf, -1, left + offset))
        rights.append(np.where(leaf, -1, right + offset))
        leaf_vals.append(np.asarray(t.value)[leaf])
        sizes.append(n)
        depths.append(int(t.max_depth))
        offset += n
    return {
        "feature": np.concatenate(feats),
        "threshold": np.concatenate(thrs),
        "left": np.concatenate(lefts),
        "right": np.concatenate(rights),
        "values": np.concatenate(leaf_vals),
        "sizes": np.asarray(sizes, dtype=np.int64),
        "max_depth": max(depths) if depths else 0,
    }


@register_node
class TreeEnsembleHead(Head):
    """Vectorised traversal of all trees at once; ``mode`` "average" (forests) or "boost"."""

    kind = "trees"

    def __init__(
        self,
        flat: dict[str, Any],
        *,
        mode: str,
        n_classes: int,
        per_stage: int = 1,
        init: np.ndarray | None = None,
        precision: str = "fp32",
        aux_precision: str = "fp32",
    ) -> None:
        self.flat, self.mode, self.n_classes = flat, mode, n_classes
        self.per_stage, self.init = per_stage, init
        self.precision, self.aux_precision = precision, aux_precision
        self.has_decision = mode == "boost"
        self._prepare()

    def _prepare(self) -> None:
        f = self.flat
        n = len(f["feature"])
        idx = np.arange(n)
        leaf = f["left"] < 0
        self._feature = f["feature"].astype(np.intp)
        self._threshold = np.asarray(f["threshold"], dtype=np.float32)
        self._left = np.where(leaf, idx, f["left"]).astype(np.intp)
        self._right = np.where(leaf, idx, f["right"]).astype(np.intp)
        self._leaf_row = np.cumsum(leaf) - 1
        self._roots = np.concatenate(([0], np.cumsum(f["sizes"])[:-1])).astype(np.intp)
        self._values = np.asarray(f["values"], dtype=np.float32)
        self._depth = int(f["max_depth"])

    def _leaves(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        node = np.broadcast_to(self._roots, (n, len(self._roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self._depth):
            go_left = X[rows, self._feature[node]] <= self._threshold[node]
            node = np.where(go_left, self._left[node], self._right[node])
        return self._values[self._leaf_row[node]]  # (n, T, ...)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        vals = self._leaves(X)
        if self.mode == "average":
            return vals.reshape(X.shape[0], len(self._roots), -1).mean(axis=1)
        stages = vals.reshape(X.shape[0], -1, self.per_stage)
        return stages.sum(axis=1) + (0.0 if self.init is None else self.init)

    def decision(self, X: Any) -> np.ndarray:
        raw = self._raw(to_dense(X))
        return raw[:, 0] if self.per_stage == 1 else raw

    def proba(self, X: Any) -> np.ndarray:
        raw = np.asarray(self._raw(to_dense(X)), dtype=np.float64)
        if self.mode == "average":
            return raw
        if self.per_stage == 1:
            p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1 - p, p])
        z = np.exp(raw - raw.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def _row(self, x: Any) -> np.ndarray:
        return (to_dense_row(x) if isinstance(x, SparseRow) else np.asarray(x)).reshape(1, -1)

    def decision_one(self, x: Any) -> np.ndarray:
        return self.decision(self._row(x))[0]

    def proba_one(self, x: Any) -> np.ndarray:
        return self.proba(self._row(x))[0]

    def predict_index(self, X: Any) -> np.ndarray:
        if self.mode == "boost" and self.per_stage == 1:
            return (self.decision(X) > 0).astype(np.intp)
        return np.argmax(self.proba(X), axis=1)

    def predict_index_one(self, x: Any) -> int:
        return int(self.predict_index(self._row(x))[0])

    def used_inputs(self) -> np.ndarray | None:
        n_inputs = self.flat.get("n_inputs")
        if n_inputs is None:
            return None
        mask = np.zeros(int(n_inputs), dtype=bool)
        mask[self.flat["feature"][self.flat["left"] >= 0]] = True
        return mask

    def _remap(self, new_of_old: np.ndarray, n_inputs: int) -> None:
        inner = self.flat["left"] >= 0
        self.flat["feature"] = np.where(inner, new_of_old[self.flat["feature"]], 0)
        self.flat["n_inputs"] = n_inputs
        self._prepare()

    def select_inputs(self, mask: np.ndarray) -> None:
        new_of_old = np.cumsum(mask) - 1
        self._remap(new_of_old, int(mask.sum()))

    def can_permute_inputs(self) -> bool:
        return self.flat.get("n_inputs") is not None

    def permute_inputs(self, perm: np.ndarray) -> None:
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(len(perm))
        self._remap(inverse, len(perm))

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        f = self.flat
        leaf = f["left"] < 0
        inner = ~leaf
        n = len(leaf)
        sizes = f["sizes"]
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        tree_of = np.repeat(np.arange(len(sizes)), sizes)
        idx = np.arange(n)
        depth_first = bool(np.all(f["left"][inner] == idx[inner] + 1))
        spec: dict[str, Any] = {
            "mode": self.mode,
            "n_classes": self.n_classes,
            "per_stage": self.per_stage,
            "max_depth": int(f["max_depth"]),
            "n_inputs": f.get("n_inputs"),
            "depth_first": depth_first,
            "init": None if self.init is None else [float(v) for v in np.ravel(self.init)],
        }
        arrays: dict[str, np.ndarray] = {"leaf": np.packbits(leaf)}
        spec["sizes"], arrays["sizes"] = pack_uints(sizes)
        spec["feature"], arrays["feature"] = pack_uints(f["feature"][inner])
        spec["right"], arrays["right"] = pack_uints((f["right"] - starts[tree_of])[inner])
        if not depth_first:
            spec["left"], arrays["left"] = pack_uints((f["left"] - starts[tree_of])[inner])
        thr_dtype = np.float16 if self.aux_precision == "fp16" else np.float32
        arrays["threshold"] = floor_float(f["threshold"][inner], thr_dtype)
        spec["values"], values = self._encode_values(f["values"], tree_of[leaf])
        arrays.update(values)
        return spec, arrays

    def _encode_values(
        self, values: np.ndarray, tree_of_leaf: np.ndarray
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        shape = list(v.shape)
        if self.precision == "fp32":
            return {"kind": "fp32", "shape": shape}, {"values": v.astype(np.float32)}
        if self.precision == "fp16":
            return {"kind": "fp16", "shape": shape}, {"values": v.astype(np.float16)}
        if self.mode == "average":
            return {"kind": "u8prob", "shape": shape}, {"values": np.rint(v * 255).astype(np.uint8)}
        n_trees = int(tree_of_leaf.max()) + 1 if len(tree_of_leaf) else 0
        peak = np.zeros(n_trees)
        np.maximum.at(peak, tree_of_leaf, np.abs(v).max(axis=1))
        scale = np.where(peak > 0, peak / 127.0, 1.0)
        q = np.rint(v / scale[tree_of_leaf][:, None]).astype(np.int8)
        return {"kind": "int8", "shape": shape}, {
            "values": q,
            "values.scale": scale.astype(np.float32),
        }

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> TreeEnsembleHead:
        sizes = unpack_uints(spec["sizes"], arrays["sizes"])
        n = int(sizes.sum())
        leaf = np.unpackbits(arrays["leaf"], count=n).astype(bool)
        inner = ~leaf
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        tree_of = np.repeat(np.arange(len(sizes)), sizes)
        idx = np.arange(n)
        feature = np.zeros(n, dtype=np.int64)
        feature[inner] = unpack_uints(spec["feature"], arrays["feature"])
        threshold = np.zeros(n, dtype=np.float32)
        threshold[inner] = np.asarray(arrays["threshold"], dtype=np.float32)
        left = np.full(n, -1, dtype=np.int64)
        right = np.full(n, -1, dtype=np.int64)
        right[inner] = unpack_uints(spec["right"], arrays["right"]) + starts[tree_of[inner]]
        if spec["depth_first"]:
            left[inner] = idx[inner] + 1
        else:
            left[inner] = unpack_uints(spec["left"], arrays["left"]) + starts[tree_of[inner]]
        vspec = spec["values"]
        values = np.asarray(arrays["values"], dtype=np.float32)
        if vspec["kind"] == "u8prob":
            values = values / 255.0
        elif vspec["kind"] == "int8":
            values = values * np.asarray(arrays["values.scale"])[tree_of[leaf]][:, None]
        flat = {
            "feature": feature,
            "threshold": threshold,
            "left": left,
            "right": right,
            "values": values.reshape(vspec["shape"]),
            "sizes": sizes,
            "max_depth": spec["max_depth"],
            "n_inputs": spec.get("n_inputs"),
        }
        init = None if spec["init"] is None else np.asarray(spec["init"], dtype=np.float32)
        return cls(
            flat, mode=spec["mode"], n_classes=spec["n_classes"],
            per_stage=spec["per_stage"], init=init,
        )  # fmt: skip

    def size_components(self) -> dict[str, str]:
        return {"": "trees"}


def _leaf_probs(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    total = v.sum(axis=1, keepdims=True)
    return v / np.where(total > 0, total, 1.0)


@register_strategy(DecisionTreeClassifier, RandomForestClassifier, ExtraTreesClassifier)
def _convert_forest(est: Any, ctx: ConvertContext) -> TreeEnsembleHead:
    trees = list(getattr(est, "estimators_", [est]))
    if getattr(est, "n_outputs_", 1) != 1:
        raise Unsupported("multi-output trees are not converted")
    flat = _flatten(trees)
    flat["values"] = _leaf_probs(flat["values"])
    flat["n_inputs"] = int(est.n_features_in_)
    return TreeEnsembleHead(
        flat, mode="average", n_classes=len(est.classes_), precision=ctx.recipe.precision,
        aux_precision=ctx.recipe.aux_precision,
    )  # fmt: skip


@register_strategy(GradientBoostingClassifier)
def _convert_boosting(est: Any, ctx: ConvertContext) -> TreeEnsembleHead:
    init_ = est.init_
    if not (isinstance(init_, str) and init_ == "zero"):
        if type(init_).__name__ != "DummyClassifier":
            raise Unsupported("a custom init estimator depends on X; not converted")
    init = np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_))))[0]
    stages = est.estimators_  # (n_estimators, K)
    trees = [stages[i, k] for i in range(stages.shape[0]) for k in range(stages.shape[1])]
    flat = _flatten(trees)
    flat["values"] = flat["values"].reshape(-1, 1) * est.learning_rate
    flat["n_inputs"] = int(est.n_features_in_)
    return TreeEnsembleHead(
        flat, mode="boost", n_classes=len(est.classes_), per_stage=stages.shape[1], init=init,
        precision=ctx.recipe.precision, aux_precision=ctx.recipe.aux_precision,
    )  # fmt: skip
