"""ModelRegistry: named models, numbered versions, and two variants per version.

::

    <root>/<name>/<version>/original/   manifest.json + model.skops
    <root>/<name>/<version>/compact/    manifest.json + arrays (written by leanml.compress)
    <root>/<name>/state.json            {"active_variant": "original" | "compact"}

``load(name)`` serves the *active* variant of the latest version (or a pinned one). When the
compact variant is requested but is missing, fails verification (corrupt, tampered) or failed
its accuracy guard, the registry falls back to the original, logs a warning and records the
reason in the returned :class:`LoadedModel` and in :meth:`ModelRegistry.fallbacks`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from leanml._sizing import deep_sizeof
from leanml.artifacts import MANIFEST_FILE, Manifest, load_model, read_manifest, save_model
from leanml.errors import (
    ArtifactError,
    ModelNotFoundError,
    ParameterError,
    RegistryError,
    VariantUnavailableError,
)

__all__ = ["VARIANTS", "LoadedModel", "ModelRegistry"]

_log = logging.getLogger(__name__)

VARIANTS = ("original", "compact")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass
class LoadedModel:
    """A model ready to predict, with what was asked for and what was actually loaded."""

    name: str
    version: int
    variant: str
    requested_variant: str
    model: Any
    manifest: Manifest
    load_seconds: float
    fallback_reason: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.fallback_reason is not None


class ModelRegistry:
    """A directory of models; safe for several threads of one process."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._fallbacks: list[dict[str, Any]] = []

    # -- names and versions -------------------------------------------------------------

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def latest_version(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.list_models()) or "none"
            raise ModelNotFoundError(
                f"No model named {name!r} in {self.root} (registered models: {known})."
            )
        return versions[-1]

    def path(self, name: str, version: int, variant: str) -> Path:
        return self.root / name / str(version) / variant

    def variants(self, name: str, version: int | None = None) -> list[str]:
        version = self._resolve_version(name, version)
        return [v for v in VARIANTS if (self.path(name, version, v) / MANIFEST_FILE).is_file()]

    def _resolve_version(self, name: str, version: int | None) -> int:
        if version is None:
            return self.latest_version(name)
        if version not in self.versions(name):
            raise ModelNotFoundError(
                f"Model {name!r} has no version {version} (versions: {self.versions(name)})."
            )
        return version

    # -- writing ------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        *,
        task: str,
        variant: str = "original",
        version: int | None = None,
        metrics: dict[str, Any] | None = None,
        classes: list[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Store ``model``. An original without ``version`` becomes a new version; a compact
        variant attaches to ``version`` (default: the latest)."""
        if not _NAME.match(name):
            raise ParameterError(
                "The 'name' parameter of ModelRegistry.register must be 1-64 letters, digits, "
                f"'_', '.' or '-' starting with a letter or digit, got {name!r} instead."
            )
        if variant not in VARIANTS:
            raise ParameterError(
                "The 'variant' parameter of ModelRegistry.register must be one of "
                f"{VARIANTS}, got {variant!r} instead."
            )
        with self._lock:
            if version is None:
                if variant == "original":
                    version = (self.versions(name) or [0])[-1] + 1
                else:
                    version = self.latest_version(name)
            elif variant == "compact" and version not in self.versions(name):
                raise ModelNotFoundError(
                    f"Cannot attach a compact variant to {name!r} version {version}: "
                    "register its original first."
                )
            return save_model(
                model,
                self.path(name, version, variant),
                name=name,
                version=version,
                task=task,
                variant=variant,
                metrics=metrics,
                classes=classes,
                extra=extra,
            )

    def remove_variant(self, name: str, version: int, variant: str) -> None:
        shutil.rmtree(self.path(name, version, variant), ignore_errors=True)

    # -- the active variant -------------------------------------------------------------

    def active_variant(self, name: str) -> str:
        state = self._read_state(name)
        return str(state.get("active_variant", "original"))

    def set_active_variant(self, name: str, variant: str) -> None:
        """Choose what :meth:`load` serves for ``name`` from now on (persisted)."""
        if variant not in VARIANTS:
            raise ParameterError(
                "The 'variant' parameter of ModelRegistry.set_active_variant must be one of "
                f"{VARIANTS}, got {variant!r} instead."
            )
        self.latest_version(name)  # raises for an unknown model
        with self._lock:
            state = self._read_state(name)
            state["active_variant"] = variant
            target = self.root / name / "state.json"
            tmp = target.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            os.replace(tmp, target)

    def _read_state(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / name / "state.json").read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise RegistryError(
                f"{self.root / name / 'state.json'} is not valid JSON: {exc}"
            ) from exc
        return data if isinstance(data, dict) else {}

    # -- reading ------------------------------------------------------------------------

    def manifest(
        self, name: str, version: int | None = None, variant: str = "original"
    ) -> Manifest:
        version = self._resolve_version(name, version)
        try:
            return read_manifest(self.path(name, version, variant))
        except ArtifactError as exc:
            raise ModelNotFoundError(f"{name!r} v{version} {variant}: {exc}") from exc

    def load(
        self, name: str, version: int | None = None, variant: str | None = None
    ) -> LoadedModel:
        """Load ``variant`` (default: the active one) of ``version`` (default: the latest).

        A compact variant that cannot serve falls back to the original with the reason
        recorded; an original that cannot load raises.
        """
        version = self._resolve_version(name, version)
        requested = variant or self.active_variant(name)
        if requested not in VARIANTS:
            raise ParameterError(
                f"The 'variant' parameter of ModelRegistry.load must be one of {VARIANTS}, "
                f"got {requested!r} instead."
            )
        if requested == "compact":
            try:
                return self._load_exact(name, version, "compact", requested)
            except (ArtifactError, VariantUnavailableError) as exc:
                reason = str(exc)
                loaded = self._load_exact(name, version, "original", requested)
                loaded.fallback_reason = reason
                self._record_fallback(name, version, reason)
                return loaded
        return self._load_exact(name, version, "original", requested)

    def _load_exact(self, name: str, version: int, variant: str, requested: str) -> LoadedModel:
        folder = self.path(name, version, variant)
        if not folder.exists():
            raise (VariantUnavailableError if variant == "compact" else ModelNotFoundError)(
                f"{name!r} v{version} has no {variant} variant (looked in {folder})."
            )
        if variant == "compact":
            guard = read_manifest(folder).extra.get("guard", {})
            if guard and not guard.get("passed", False):
                raise VariantUnavailableError(
                    f"{name!r} v{version} compact variant failed its accuracy guard: "
                    f"{guard.get('reason', 'no reason recorded')}."
                )
        started = time.perf_counter()
        model, manifest = load_model(folder)
        elapsed = time.perf_counter() - started
        return LoadedModel(name, version, variant, requested, model, manifest, elapsed)

    def _record_fallback(self, name: str, version: int, reason: str) -> None:
        _log.warning(
            "model %s v%s: serving the original instead of compact: %s", name, version, reason
        )
        with self._lock:
            self._fallbacks.append(
                {"name": name, "version": version, "reason": reason, "at": time.time()}
            )
            del self._fallbacks[:-100]  # keep the last 100

    def fallbacks(self) -> list[dict[str, Any]]:
        """The recent fallbacks (newest last, at most 100) with their reasons."""
        with self._lock:
            return list(self._fallbacks)

    # -- reports ------------------------------------------------------------------------

    def report(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Per variant: artifact bytes, load time, in-memory size, accuracy; plus the guard."""
        version = self._resolve_version(name, version)
        variants: dict[str, Any] = {}
        for variant in self.variants(name, version):
            entry: dict[str, Any] = {}
            try:
                manifest = read_manifest(self.path(name, version, variant))
                entry["artifact_bytes"] = manifest.payload_bytes
                entry["created"] = manifest.created
                test = manifest.metrics.get("test", {})
                entry["test_accuracy"] = test.get("accuracy")
                entry["test_macro_f1"] = test.get("macro_f1")
                if "guard" in manifest.extra:
                    entry["guard"] = manifest.extra["guard"]
                loaded = self._load_exact(name, version, variant, variant)
                entry["load_seconds"] = round(loaded.load_seconds, 4)
                entry["memory_bytes"] = deep_sizeof(loaded.model)
            except (ArtifactError, RegistryError) as exc:
                entry["error"] = str(exc)
            variants[variant] = entry
        original = self.manifest(name, version, "original") if "original" in variants else None
        return {
            "name": name,
            "version": version,
            "versions": self.versions(name),
            "task": original.task if original else None,
            "active_variant": self.active_variant(name),
            "dataset": original.metrics.get("dataset") if original else None,
            "variants": variants,
            "fallbacks": [f for f in self.fallbacks() if f["name"] == name],
        }
