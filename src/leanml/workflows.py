"""Workflows that tie the model store, the data and compression together.

This layer sits above :mod:`leanml.compress` (which never loads a dataset, trains or touches
the registry) and below the faces (``leanml compress``, ``leanml demo``) that share it.

:func:`compress_registered` compresses a *registered* model and registers its compact variant
with the guard's verdict. The original (latest version unless pinned) is compressed against
the validation split of its task's dataset. When the guard passes, the compact model is
registered; when it rejects every candidate, the smallest scored candidate is registered with
``guard.passed = false`` so that the registry serves the original and says why; when none could
be scored, a stale compact variant of that version is removed. The compact variant gets its own
drift reference (its confidences on the validation split). :func:`peer_sizes` measures pickle
and joblib dumps beside ours (written only, never loaded).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import joblib
import numpy as np

from leanml.compress.quantizer import ModelQuantizer
from leanml.config import Settings
from leanml.datasets import Dataset, load_dataset
from leanml.errors import ParameterError
from leanml.registry import ModelRegistry
from leanml.training import make_reference

__all__ = ["compress_registered", "peer_sizes"]


def peer_sizes(model: Any) -> dict[str, int]:
    """Sizes of pickle (protocol 5) and joblib (compress=3) dumps, for comparison only.

    Both are only *written* here, never loaded.
    """
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    return {"pickle_bytes": len(pickle.dumps(model, protocol=5)), "joblib3_bytes": buf.tell()}


def compress_registered(
    registry: ModelRegistry,
    name: str,
    *,
    version: int | None = None,
    dataset: Dataset | None = None,
    settings: Settings | None = None,
    activate: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Compress ``name`` behind the guard (``options`` go to ``ModelQuantizer.compress``) and
    return one row of figures: sizes, accuracy, agreement, latencies, recipe, fallback reason."""
    loaded = registry.load(name, version=version, variant="original")
    manifest = loaded.manifest
    dataset = dataset or load_dataset(manifest.task, settings=settings)
    model = loaded.model
    unknown = set(np.asarray(dataset.y_val).tolist()) - set(np.asarray(model.classes_).tolist())
    if unknown:
        raise ParameterError(
            f"The validation split of {manifest.task!r} has labels the model {name!r} does not "
            f"know ({sorted(unknown)[:5]}); it was trained on other data."
        )
    result = ModelQuantizer().compress(
        model, dataset.X_val, dataset.y_val, original_bytes=manifest.payload_bytes, **options
    )
    verdict = result.guard_verdict()
    row: dict[str, Any] = {
        "name": name,
        "version": loaded.version,
        "task": manifest.task,
        **peer_sizes(model),
        "skops_bytes": manifest.payload_bytes,
        "compact_bytes": result.compact_bytes if result.compressed else None,
        "guard_passed": result.compressed,
        "recipe": result.recipe_label if result.compressed else None,
        "fallback_reason": result.fallback_reason,
        "accuracy_original": result.accuracy_before,
        "accuracy_compact": result.accuracy_after if result.compressed else None,
        "agreement": result.agreement if result.compressed else None,
        "max_proba_error": result.max_proba_error,
        "single_us_original": result.single_us_before,
        "single_us_compact": result.single_us_after if result.compressed else None,
        "batch_per_s_original": result.batch_per_s_before,
        "batch_per_s_compact": result.batch_per_s_after if result.compressed else None,
        "passthrough": [list(p) for p in result.passthrough],
        "rejected": [
            {"recipe": c.label, "bytes": c.bytes, "reason": c.reason}
            for c in result.rejected
            if not c.reason.startswith("not evaluated")
        ],
    }
    to_store = result.model if result.compressed else result.rejected_model
    if to_store is not None:
        # The compact model's confidences differ a little from the original's: drift monitoring
        # of the compact variant compares against its own validation predictions.
        reference = make_reference(to_store, dataset.X_val)
        stored = registry.register(
            name,
            to_store,
            task=manifest.task,
            variant="compact",
            version=loaded.version,
            metrics={"val_accuracy": result.accuracy_after, "agreement": result.agreement},
            classes=manifest.classes,
            extra={"guard": verdict, "reference": reference},
        )
        row["compact_stored_bytes"] = stored.payload_bytes
    else:
        registry.remove_variant(name, loaded.version, "compact")
    if activate and result.compressed:
        registry.set_active_variant(name, "compact")
    return row
