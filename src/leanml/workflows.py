"""Workflows that tie the model store, the data and compression together.

This layer sits above :mod:`leanml.compress` (which never loads a dataset, trains or touches
the registry) and below the faces (``leanml train|register|compress``, ``leanml demo``) that
share it.

:func:`train_and_register` fits a pipeline on a :class:`~leanml.datasets.Dataset` (a demo task's
or the user's file) and registers it; :func:`register_model` imports a fitted estimator or
pipeline (``leanml register``, :func:`register` for ``leanml.register``) after checking that
its types are on the allow-list or the operator's ``trusted_types``; :func:`read_model_file`
reads a user's ``.skops`` file and refuses pickle and joblib files with the one-line
conversion. Each registered version keeps its metrics, drift reference and a bounded sample of
its validation split.

:func:`compress_registered` compresses a *registered* model and registers its compact variant
with the guard's verdict. The original (latest version unless pinned) is compressed against
the validation sample stored with the version (the demo task's validation split for a version
registered without one). When the guard passes, the compact model is
registered; when it rejects every candidate, the smallest scored candidate is registered with
``guard.passed = false`` so that the registry serves the original and says why; when none could
be scored, a stale compact variant of that version is removed. The compact variant gets its own
drift reference (its confidences on the validation split). :func:`peer_sizes` measures pickle
and joblib dumps beside ours (written only, never loaded).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io as sio

from leanml.artifacts import refused_types, skops_loads, untrusted_message
from leanml.compress.quantizer import ModelQuantizer
from leanml.config import Settings
from leanml.datasets import TASKS, Dataset, load_dataset
from leanml.errors import ArtifactError, ParameterError, UntrustedTypeError
from leanml.registry import DEFAULT_SAMPLE_ROWS, LoadedModel, ModelRegistry
from leanml.training import TrainedModel, evaluate, make_reference, train_model

__all__ = [
    "compress_registered",
    "peer_sizes",
    "read_model_file",
    "register",
    "register_model",
    "train_and_register",
]

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".jl", ".sav")


def train_and_register(
    registry: ModelRegistry,
    name: str,
    dataset: Dataset,
    estimator: str = "logreg",
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> tuple[TrainedModel, Any]:
    """Fit the pipeline on ``dataset``, register it (metrics, reference, validation sample)."""
    trained = train_model(dataset.task, estimator, dataset=dataset)
    manifest = registry.register(
        name,
        trained.pipeline,
        task=dataset.task,
        metrics=trained.metrics,
        extra={
            "estimator": estimator,
            "reference": trained.reference,
            "dataset": dataset.summary(),
        },
        validation=(dataset.X_val, dataset.y_val.tolist()),
        sample_rows=sample_rows,
    )
    return trained, manifest


def read_model_file(path: str | os.PathLike[str], trusted_types: Sequence[str] = ()) -> Any:
    """The fitted model in a ``.skops`` file, loaded against the allow-list and
    ``trusted_types``. Pickle and joblib files are refused, never loaded."""
    file = Path(path)
    try:
        head = file.read_bytes()[:4]
    except FileNotFoundError:
        raise ParameterError(f"No such model file: {file}.", param="MODEL") from None
    if (
        file.suffix.lower() in _PICKLE_SUFFIXES
        or head[:1] == b"\x80"
        or not zipfile.is_zipfile(file)
    ):
        raise ParameterError(
            f"{file} is not a skops file (pickle and joblib files are never loaded: they can "
            "run any code). Convert it where you trust it, then register the .skops file: "
            f"python -c \"import joblib, skops.io as s; s.dump(joblib.load('{file}'), "
            f"'{file.with_suffix('.skops').name}')\"",
            param="MODEL",
        )
    return skops_loads(file.read_bytes(), str(file), trusted_types=trusted_types)


def _check_model(model: Any, registry: ModelRegistry, y_val: Sequence[Any]) -> None:
    """A fitted classifier whose types load back under the registry's trust, knowing the
    validation labels."""
    for attribute in ("predict", "classes_"):
        if not hasattr(model, attribute):
            raise ParameterError(
                "The 'model' parameter of register must be a fitted scikit-learn classifier "
                f"(with {attribute}), got {type(model).__name__} instead."
            )
    try:
        data = sio.dumps(model)
    except Exception as exc:
        raise ArtifactError(f"skops cannot write this {type(model).__name__}: {exc}") from exc
    refused = refused_types(data, f"the {type(model).__name__} model", registry.trusted_types)
    if refused:
        raise UntrustedTypeError(untrusted_message(f"the {type(model).__name__} model", refused))
    known = {str(c) for c in np.asarray(model.classes_).tolist()}
    unknown = sorted({str(v) for v in y_val} - known)
    if unknown:
        raise ParameterError(
            "The 'y_val' parameter of register must hold only classes the model knows "
            f"({', '.join(sorted(known)[:10])}), got {', '.join(map(repr, unknown[:5]))} "
            "instead."
        )


def register_model(
    registry: ModelRegistry,
    name: str,
    model: Any,
    X_val: Sequence[str],
    y_val: Sequence[Any],
    *,
    X_test: Sequence[str] | None = None,
    y_test: Sequence[Any] | None = None,
    task: str | None = None,
    source: str | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> Any:
    """Register a fitted ``model``: metrics, drift reference and validation sample from
    ``X_val`` / ``y_val`` (and test metrics from ``X_test`` / ``y_test``)."""
    if len(X_val) == 0 or len(X_val) != len(y_val):
        raise ParameterError(
            "The 'X_val' parameter of register must be a non-empty list of texts as long as "
            f"y_val, got {len(X_val)} texts and {len(y_val)} labels instead."
        )
    if (X_test is None) != (y_test is None):
        raise ParameterError("The 'X_test' and 'y_test' parameters of register go together.")
    _check_model(model, registry, y_val)
    y_val_arr = np.asarray(y_val, dtype=np.asarray(model.classes_).dtype)
    metrics: dict[str, Any] = {"val": evaluate(model, X_val, y_val_arr), "dataset": source}
    if X_test is not None and y_test is not None:
        y_test_arr = np.asarray(y_test, dtype=np.asarray(model.classes_).dtype)
        metrics["test"] = evaluate(model, X_test, y_test_arr)
    return registry.register(
        name,
        model,
        task=task or name,
        metrics=metrics,
        extra={
            "estimator": type(model).__name__,
            "reference": make_reference(model, list(X_val), y_val_arr),
            "registered_from": source,
        },
        validation=(list(X_val), y_val_arr.tolist()),
        sample_rows=sample_rows,
    )


def register(
    name: str,
    model: Any,
    X_val: Sequence[str],
    y_val: Sequence[Any],
    *,
    X_test: Sequence[str] | None = None,
    y_test: Sequence[Any] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """``leanml.register``: import a fitted classifier into the registry (``models_dir``,
    default the ``models_dir`` setting) as a new, serving version; returns its manifest.

    The same checks as ``leanml register``: allow-listed types (or the ``trusted_types``
    setting), validation labels the model knows.
    """
    settings = Settings.load()
    registry = ModelRegistry(
        models_dir or settings.models_dir, trusted_types=settings.trusted_types
    )
    return register_model(
        registry,
        name,
        model,
        X_val,
        y_val,
        X_test=X_test,
        y_test=y_test,
        source="python",
        sample_rows=settings.validation_sample_rows,
    )


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
    original: LoadedModel | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Compress ``name`` behind the guard (``options`` go to ``ModelQuantizer.compress``) and
    return one row of figures: sizes, accuracy, agreement, latencies, recipe, fallback reason.

    ``original``: that version's original, already loaded from ``registry`` by the caller
    (used instead of loading it again when it is the right name, version and variant)."""
    if original is not None and _is_original_of(original, registry, name, version):
        loaded = original
    else:
        loaded = registry.load(name, version=version, variant="original")
    manifest = loaded.manifest
    model = loaded.model
    X_val, y_val = _validation_of(registry, loaded.version, manifest, dataset, settings)
    unknown = set(np.asarray(y_val).tolist()) - set(np.asarray(model.classes_).tolist())
    if unknown:
        raise ParameterError(
            f"The validation split of {manifest.task!r} has labels the model {name!r} does not "
            f"know ({sorted(unknown)[:5]}); it was trained on other data."
        )
    result = ModelQuantizer().compress(
        model, X_val, y_val, original_bytes=manifest.payload_bytes, **options
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
        # of the compact variant compares against its own validation predictions, and its
        # confidence -> P(correct) map is fitted on its own confidences. Its confusion counts
        # pool its own validation predictions with the original's out-of-fold ones on the
        # training split (>= 99% agreement: the pipeline's held-out behaviour), if it has them.
        reference = make_reference(to_store, X_val, y_val, heldout=_heldout_of(manifest))
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


def _heldout_of(manifest: Any) -> tuple[list[str], Any] | None:
    """The out-of-fold confusion counts kept in an original's confidence map, if any."""
    cal = (manifest.extra.get("reference") or {}).get("calibration") or {}
    if not cal.get("heldout_confusion") or not cal.get("classes"):
        return None
    return list(cal["classes"]), cal["heldout_confusion"]


def _is_original_of(
    loaded: LoadedModel, registry: ModelRegistry, name: str, version: int | None
) -> bool:
    if loaded.name != name or loaded.variant != "original":
        return False
    wanted = registry.serving_version(name) if version is None else version
    return loaded.version == wanted


def _validation_of(
    registry: ModelRegistry,
    version: int,
    manifest: Any,
    dataset: Dataset | None,
    settings: Settings | None,
) -> tuple[list[str], np.ndarray]:
    """The given dataset's validation split, else the sample stored with the version, else
    (a version registered before samples were kept) its demo task's validation split."""
    if dataset is not None:
        return list(dataset.X_val), np.asarray(dataset.y_val)
    stored = registry.validation_sample(manifest.name, version)
    if stored is not None:
        texts, labels = stored
        return texts, np.asarray(labels, dtype=np.asarray(manifest.classes).dtype)
    if manifest.task in TASKS:
        demo = load_dataset(manifest.task, settings=settings)
        return list(demo.X_val), np.asarray(demo.y_val)
    raise ParameterError(
        f"{manifest.name!r} v{version} has no stored validation sample and its task "
        f"{manifest.task!r} is no demo task: register it again with its validation data."
    )
