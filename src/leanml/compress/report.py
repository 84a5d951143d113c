"""Where the bytes are: a model's size broken down by component, before and after compression.

``before`` is the in-memory size of the scikit-learn attributes (numpy arrays count their
data, dicts their keys and values), grouped into components; ``after`` is, per component, the
bytes a compact model occupies inside its ``arrays.npz`` (deflated, as stored) and ``raw`` the
uncompressed array bytes.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from leanml._sizing import deep_sizeof
from leanml.compress.compact import ARRAYS_FILE, SPEC_FILE, CompactModel

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
                out[name] = out.get(name, 0) + deep_sizeof(value)
    return dict(sorted(out.items()))


def compact_components(model: CompactModel) -> dict[str, dict[str, int]]:
    """Per component of a compact model: ``stored`` (deflated npz bytes) and ``raw`` bytes."""
    names: dict[str, str] = {}
    for i, node in enumerate(model.nodes):
        for prefix, component in node.size_components().items():
            names[f"n{i}.{prefix}"] = component
        names.setdefault(f"n{i}.", "other")
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_payload(Path(tmp))
        spec_bytes = (Path(tmp) / SPEC_FILE).stat().st_size
        with zipfile.ZipFile(Path(tmp) / ARRAYS_FILE) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                match = max((p for p in names if key.startswith(p)), key=len, default=None)
                component = names[match] if match else "other"
                entry = out.setdefault(component, {"stored": 0, "raw": 0})
                entry["stored"] += info.compress_size
                entry["raw"] += info.file_size
    out.setdefault("spec", {"stored": 0, "raw": 0})
    out["spec"]["stored"] += spec_bytes
    out["spec"]["raw"] += spec_bytes
    return dict(sorted(out.items()))


def size_breakdown(original: Any, compact: CompactModel | None = None) -> dict[str, Any]:
    """``{"before": {component: bytes}, "after": {component: {"stored", "raw"}}}``."""
    result: dict[str, Any] = {"before": original_components(original)}
    if isinstance(original, CompactModel):
        result = {"before": {}, "after": compact_components(original)}
    if compact is not None:
        result["after"] = compact_components(compact)
    return result
