"""Where the bytes are: a model's size broken down by component, before and after compression.

``before`` is the in-memory size of the scikit-learn attributes (numpy arrays count their
data, dicts their keys and values), grouped into components; ``after`` is, per component, the
deflated bytes of the compact model's arrays (``stored``) and their uncompressed size (``raw``).
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from leanml._sizing import deep_sizeof
from leanml.compress._base import chain_payload
from leanml.compress.compact import SPEC_FILE, CompactModel

__all__ = ["COMPONENT_OF_ATTRIBUTE", "compact_components", "original_components", "size_breakdown"]

#: scikit-learn fitted attribute -> component name
COMPONENT_OF_ATTRIBUTE = {
    "vocabulary_": "vocabulary",
    "stop_words_": "stop_words",
    "fixed_vocabulary_": "vocabulary",
    "_tfidf": "idf",
    "idf_": "idf",
    "coef_": "weights",
    "intercept_": "weights",
    "feature_log_prob_": "weights",
    "class_log_prior_": "weights",
    "feature_count_": "statistics",
    "class_count_": "statistics",
    "feature_all_": "statistics",
    "coefs_": "weights",
    "intercepts_": "weights",
    "loss_curve_": "statistics",
    "_optimizer": "statistics",
    "estimators_": "trees",
    "tree_": "trees",
    "estimator_": "trees",
    "components_": "components",
    "explained_variance_": "statistics",
    "explained_variance_ratio_": "statistics",
    "singular_values_": "statistics",
    "mean_": "scaler",
    "scale_": "scaler",
    "var_": "scaler",
}


def _nbytes(value: Any, seen: set[int] | None = None) -> int:
    """Bytes held by a fitted attribute (arrays by ``nbytes``, trees by their node arrays)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        extra = sum(_nbytes(v, seen) for v in value.ravel()) if value.dtype == object else 0
        return int(value.nbytes) + extra
    if type(value).__name__ == "Tree" and hasattr(value, "__getstate__"):
        state = value.__getstate__()
        return int(state["nodes"].nbytes + state["values"].nbytes)
    if isinstance(value, dict):
        return sum(_nbytes(k, seen) + _nbytes(v, seen) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v, seen) for v in value)
    if hasattr(value, "get_params") and hasattr(value, "__dict__"):
        return sum(_nbytes(v, seen) for k, v in vars(value).items() if k.endswith("_"))
    return deep_sizeof(value)


def original_components(model: Any) -> dict[str, int]:
    """In-memory bytes of a fitted scikit-learn model, per component."""
    out: dict[str, int] = {}
    stack = [model]
    seen: set[int] = set()
    while stack:
        est = stack.pop()
        if id(est) in seen:
            continue
        seen.add(id(est))
        children = []
        for attr in ("steps", "transformer_list", "transformers_"):
            for item in getattr(est, attr, None) or []:
                children.append(item[1])
        if children:
            stack.extend(c for c in children if hasattr(c, "__dict__"))
            continue
        for attr, value in vars(est).items():
            if attr.endswith("_") and not attr.startswith("__") or attr in COMPONENT_OF_ATTRIBUTE:
                name = COMPONENT_OF_ATTRIBUTE.get(attr, "other")
                out[name] = out.get(name, 0) + _nbytes(value)
    return dict(sorted(out.items()))


def compact_components(model: CompactModel) -> dict[str, dict[str, int]]:
    """Per component of a compact model: ``stored`` (its arrays deflated on their own, as
    ``arrays.npz`` deflates them in one stream) and ``raw`` (uncompressed array bytes);
    ``spec`` is the JSON file."""
    names: dict[str, str] = {}
    for i, node in enumerate(model.nodes):
        for prefix, component in node.size_components().items():
            names[f"n{i}.{prefix}"] = component
        names.setdefault(f"n{i}.", "other")
    _, arrays = chain_payload(model.nodes)
    out: dict[str, dict[str, int]] = {}
    for key, value in arrays.items():
        match = max((p for p in names if key.startswith(p)), key=len, default=None)
        component = names[match] if match else "other"
        data = np.ascontiguousarray(value).tobytes()
        entry = out.setdefault(component, {"stored": 0, "raw": 0})
        entry["stored"] += len(zlib.compress(data, 6))
        entry["raw"] += len(data)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_payload(Path(tmp))
        spec_bytes = (Path(tmp) / SPEC_FILE).stat().st_size
    out["spec"] = {"stored": spec_bytes, "raw": spec_bytes}
    return dict(sorted(out.items()))


def size_breakdown(original: Any, compact: CompactModel | None = None) -> dict[str, Any]:
    """``{"before": {component: bytes}, "after": {component: {"stored", "raw"}}}``."""
    result: dict[str, Any] = {"before": original_components(original)}
    if isinstance(original, CompactModel):
        result = {"before": {}, "after": compact_components(original)}
    if compact is not None:
        result["after"] = compact_components(compact)
    return result
