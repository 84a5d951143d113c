"""The model steps of ``leanml demo``: train or reuse, compress behind the guard, measure a variant.

Each demo model is trained once per dataset (a registered model trained on the same dataset is
reused), compressed once per version (an existing compact variant is reused unless the model
was just retrained), then each variant is loaded back through the registry and measured: test
accuracy and macro F1, artifact size, load time and a single-text in-process load.
"""

from __future__ import annotations

import time
from typing import Any

from leanml.bench.inprocess import run_single_text_load
from leanml.datasets import Dataset
from leanml.registry import LoadedModel, ModelRegistry
from leanml.training import evaluate, train_model
from leanml.workflows import compress_registered

__all__ = ["ensure_compact", "ensure_model", "variant_figures"]


def ensure_model(
    registry: ModelRegistry, name: str, task: str, dataset: Dataset, retrain: bool
) -> tuple[str, float]:
    """Register a freshly trained model unless one trained on ``dataset`` exists.

    Returns ``("reused", 0.0)`` or ``("trained", seconds spent training and registering)``.
    """
    if not retrain and registry.versions(name):
        manifest = registry.manifest(name)
        calibrated = "calibration" in (manifest.extra.get("reference") or {})
        if manifest.metrics.get("dataset") == dataset.name and calibrated:
            return "reused", 0.0
    started = time.perf_counter()
    trained = train_model(task, dataset=dataset)
    registry.register(
        name,
        trained.pipeline,
        task=task,
        metrics=trained.metrics,
        extra={
            "estimator": trained.estimator,
            "reference": trained.reference,
            "dataset": dataset.summary(),
        },
    )
    return "trained", time.perf_counter() - started


def ensure_compact(
    registry: ModelRegistry,
    name: str,
    dataset: Dataset,
    fresh: bool,
    original: LoadedModel | None = None,
) -> dict[str, Any] | None:
    """Compress the latest version unless it has a compact variant already (``None`` then).

    ``original``: the latest version's original, loaded already (not loaded again)."""
    version = registry.latest_version(name)
    if not fresh and "compact" in registry.variants(name, version):
        compact = registry.manifest(name, version, variant="compact")
        if "calibration" in (compact.extra.get("reference") or {}):
            return None
    return compress_registered(
        registry, name, version=version, dataset=dataset, activate=True, original=original
    )


def variant_figures(
    loaded: LoadedModel, dataset: Dataset, n_requests: int, progress: Any
) -> dict[str, Any]:
    """Test accuracy, size, load time and single-text latency of one loaded variant."""
    load = run_single_text_load(
        loaded.model.predict, dataset.X_test, n_requests, on_progress=progress
    ).summary()
    test = evaluate(loaded.model, dataset.X_test, dataset.y_test)
    return {
        "variant": loaded.variant,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "artifact_bytes": loaded.manifest.payload_bytes,
        "load_ms": round(loaded.load_seconds * 1000, 1),
        **{k: load[k] for k in ("p50_ms", "p95_ms", "p99_ms", "predictions_per_s")},
    }
