"""ModelRegistry: named models, numbered versions, and two variants per version.

::

    <root>/<name>/<version>/original/   manifest.json + model.skops
    <root>/<name>/<version>/compact/    manifest.json + arrays (written by leanml.compress)
    <root>/<name>/<version>/validation.json.gz   a bounded sample of the validation split
    <root>/<name>/state.json            {"active_variant": "original" | "compact",
                                         "promotions": [versions promoted, oldest first]}

``state.json`` also records ``updated_at``. A registry with a :attr:`ModelRegistry.shared_state`
(``leanml serve`` sets one on its monitor store) writes every choice to that shared state too and
reads whichever of the two is newer, so a switch or promotion made on one host reaches hosts
that have their own copy of the models directory.

A new version is staged in ``<root>/<name>/.new-*`` and renamed into place (atomic; two
processes registering one name get distinct versions) and, by default, promoted. ``load(name)``
serves the *active* variant of the *serving* version: the last promoted one (``promote``,
``rollback``), else the latest; ``delete`` refuses the serving version. When the
compact variant is requested but is missing, fails verification (corrupt, tampered) or failed
its accuracy guard, the registry falls back to the original, logs a warning and records the
reason in the returned :class:`LoadedModel` and in :meth:`ModelRegistry.fallbacks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from leanml._logging import limited
from leanml._sizing import deep_sizeof
from leanml.artifacts import (
    MANIFEST_FILE,
    Manifest,
    load_model,
    load_sample,
    read_manifest,
    save_model,
    save_sample,
)
from leanml.errors import (
    ArtifactError,
    ModelNotFoundError,
    ParameterError,
    RegistryError,
    VariantUnavailableError,
)

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "SAMPLE_FILE",
    "VARIANTS",
    "LoadedModel",
    "ModelRegistry",
    "check_name",
]

_fcntl: Any
try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows: threads of one process are still locked
    _fcntl = None

_log = logging.getLogger(__name__)
_outage_log = limited(f"{__name__}.shared")  # a store outage repeats it every watch

VARIANTS = ("original", "compact")
#: Rows of the validation split kept with a version unless the caller says otherwise.
DEFAULT_SAMPLE_ROWS = 5000
#: The file, in a version's folder, holding its validation sample (gzip-compressed JSON).
SAMPLE_FILE = "validation.json.gz"
_HISTORY = 50
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

    def __init__(self, root: str | os.PathLike[str], *, trusted_types: Iterable[str] = ()) -> None:
        """``trusted_types``: the operator's extra skops types (never read from an artifact)."""
        self.root = Path(root)
        self.trusted_types = frozenset(trusted_types)
        self._lock = threading.Lock()
        self._fallbacks: list[dict[str, Any]] = []
        #: Where the served-version and variant choices are shared between hosts (None: the
        #: ``state.json`` file only). An object with ``read(name) -> dict | None`` and a
        #: context manager ``transaction(name)`` yielding ``(current, save)`` (current: the
        #: shared dict or None, locked until the block ends; ``save(dict)`` writes it).
        self.shared_state: Any = None

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
            return self.serving_version(name)
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
        validation: tuple[Sequence[str], Sequence[Any]] | None = None,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        promote: bool = True,
    ) -> Manifest:
        """Store ``model``. An original without ``version`` becomes a new version; a compact
        variant attaches to ``version`` (default: the serving one).

        A new version is written in a temporary folder beside the others and renamed into
        place, so a failure leaves nothing and two processes registering one name at once get
        distinct versions. ``validation`` (texts, labels) keeps a stratified sample of at most
        ``sample_rows`` rows with the version, for compression and the guard. ``promote`` makes
        the new version the serving one.
        """
        check_name(name)
        if variant not in VARIANTS:
            raise ParameterError(
                "The 'variant' parameter of ModelRegistry.register must be one of "
                f"{VARIANTS}, got {variant!r} instead."
            )
        write = functools.partial(
            save_model, model, name=name, task=task, variant=variant, metrics=metrics,
            classes=classes,
        )  # fmt: skip
        if variant == "original" and version is None:
            manifest = self._publish(name, write, extra or {}, validation, sample_rows)
            if promote:
                self.promote(name, manifest.version)
            return manifest
        if version is None:
            version = self.serving_version(name)
        elif version not in self.versions(name):
            raise ModelNotFoundError(
                f"Cannot attach a {variant} variant to {name!r} version {version}: "
                "register its original first."
            )
        with self._lock:
            return write(self.path(name, version, variant), version=version, extra=extra)

    def _publish(
        self,
        name: str,
        write: Callable[..., Manifest],
        extra: dict[str, Any],
        validation: tuple[Sequence[str], Sequence[Any]] | None,
        sample_rows: int,
    ) -> Manifest:
        """Write a new version in a staging folder, then rename it to the next free number."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=folder))
        try:
            extra = dict(extra)
            if validation is not None:
                texts, labels = _sample(validation, sample_rows)
                extra["validation_sample"] = save_sample(
                    staging / SAMPLE_FILE, texts, labels, total=len(validation[0])
                )
            version = (self.versions(name) or [0])[-1] + 1
            manifest = write(staging / "original", version=version, extra=extra)
            for _ in range(1000):  # another process may take the number first: take the next
                try:
                    staging.chmod(0o755)
                    os.rename(staging, self.root / name / str(version))
                    return manifest
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                version = max(version, (self.versions(name) or [0])[-1]) + 1
                manifest = _renumber(staging / "original", version)
            raise RegistryError(f"Could not find a free version number for {name!r}.")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remove_variant(self, name: str, version: int, variant: str) -> None:
        shutil.rmtree(self.path(name, version, variant), ignore_errors=True)

    def validation_sample(
        self, name: str, version: int | None = None
    ) -> tuple[list[str], list[Any]] | None:
        """The validation texts and labels kept with ``version``, or None (registered without)."""
        version = self._resolve_version(name, version)
        entry = self.manifest(name, version).extra.get("validation_sample")
        if not entry:
            return None
        return load_sample(self.root / name / str(version), entry)

    # -- the version lifecycle ----------------------------------------------------------

    def serving_version(self, name: str) -> int:
        """The version :meth:`load` serves: the last promoted one still present, else the
        latest."""
        versions = self.versions(name)
        if not versions:
            self.latest_version(name)  # raises naming the known models
        promoted = [v for v in self._read_state(name).get("promotions", []) if v in versions]
        return promoted[-1] if promoted else versions[-1]

    def promote(self, name: str, version: int) -> None:
        """Serve ``version`` of ``name`` from now on (servers follow within their watch)."""
        version = self._resolve_version(name, version)
        with self._state(name) as state:
            promotions = [v for v in state.get("promotions", []) if v != version]
            state["promotions"] = [*promotions, version][-_HISTORY:]

    def rollback(self, name: str) -> int:
        """Serve the version promoted before the serving one again; return it."""
        current = self.serving_version(name)
        versions = self.versions(name)
        with self._state(name) as state:
            history = [v for v in state.get("promotions", []) if v in versions] or versions
            earlier = [v for v in history if v != current]
            if not earlier:
                raise RegistryError(
                    f"{name!r} has no earlier version to roll back to (serving v{current})."
                )
            state["promotions"] = earlier
        return earlier[-1]

    def delete(self, name: str, version: int) -> None:
        """Remove ``version`` (refused for the serving version)."""
        version = self._resolve_version(name, version)
        serving = self.serving_version(name)
        if version == serving:
            raise ParameterError(
                f"The 'version' parameter of ModelRegistry.delete must not be the serving "
                f"version, got {version} instead ({name!r} serves v{serving}): promote another "
                "version or roll back first."
            )
        folder = self.root / name / str(version)
        trash = Path(tempfile.mkdtemp(prefix=".deleted-", dir=folder.parent))
        os.rename(folder, trash / "v")  # gone for readers at once; then removed
        shutil.rmtree(trash, ignore_errors=True)

    # -- the active variant -------------------------------------------------------------

    def active_variant(self, name: str) -> str:
        return self.chosen_variant(name) or "original"

    def chosen_variant(self, name: str) -> str | None:
        """The variant set with :meth:`set_active_variant`, or None while nobody chose one
        (``state.json`` also holds the promotions, so its presence says nothing)."""
        chosen = self._read_state(name).get("active_variant")
        return str(chosen) if chosen else None

    def set_active_variant(self, name: str, variant: str) -> None:
        """Choose what :meth:`load` serves for ``name`` from now on (persisted)."""
        if variant not in VARIANTS:
            raise ParameterError(
                "The 'variant' parameter of ModelRegistry.set_active_variant must be one of "
                f"{VARIANTS}, got {variant!r} instead."
            )
        self.latest_version(name)  # raises for an unknown model
        with self._state(name) as state:
            state["active_variant"] = variant

    @contextlib.contextmanager
    def _state(self, name: str) -> Iterator[dict[str, Any]]:
        """Read, change and atomically rewrite ``state.json`` (and the shared state when there
        is one), locked against other threads and (where ``fcntl`` exists) other processes."""
        folder = self.root / name
        with self._lock, open(folder / ".lock", "a+b") as lock:
            if _fcntl is not None:
                _fcntl.flock(lock, _fcntl.LOCK_EX)
            shared = self.shared_state
            if shared is None:
                state = self._read_file_state(name)
                yield state
                self._write_file_state(name, state)
                return
            with shared.transaction(name) as (current, save):
                state = _newer(self._read_file_state(name), current)
                yield state
                state["updated_at"] = time.time()
                save(state)
                self._write_file_state(name, state, stamp=False)

    def _write_file_state(self, name: str, state: dict[str, Any], *, stamp: bool = True) -> None:
        if stamp:
            state["updated_at"] = time.time()
        folder = self.root / name
        tmp = folder / f".state-{os.getpid()}-{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, folder / "state.json")

    def _read_state(self, name: str) -> dict[str, Any]:
        """The newer of ``state.json`` and the shared state (when there is one)."""
        state = self._read_file_state(name)
        if self.shared_state is not None:
            try:
                shared = self.shared_state.read(name)
            except Exception as exc:  # the store is down: serve what this host knows
                _outage_log.warning("the shared registry state of %s cannot be read: %s", name, exc)
                shared = None
            state = _newer(state, shared)
        return state

    def _read_file_state(self, name: str) -> dict[str, Any]:
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
        self,
        name: str,
        version: int | None = None,
        variant: str | None = None,
        *,
        original: LoadedModel | None = None,
    ) -> LoadedModel:
        """Load ``variant`` (default: the active one) of ``version`` (default: the latest).

        A compact variant that cannot serve falls back to the original with the reason
        recorded; an original that cannot load raises. ``original``: that version's original,
        loaded already from this registry: the fallback (or a request for the original) uses
        it instead of reading the artifact again.
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
                loaded = self._original(name, version, requested, original)
                loaded.fallback_reason = reason
                self._record_fallback(name, version, reason)
                return loaded
        return self._original(name, version, requested, original)

    def _original(
        self, name: str, version: int, requested: str, loaded: LoadedModel | None
    ) -> LoadedModel:
        """The original of ``version``: ``loaded`` when it is that one, else read."""
        if loaded is None or (loaded.name, loaded.version, loaded.variant) != (
            name,
            version,
            "original",
        ):
            return self._load_exact(name, version, "original", requested)
        return dataclasses.replace(loaded, requested_variant=requested, fallback_reason=None)

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
        model, manifest = load_model(folder, trusted_types=self.trusted_types)
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

    def report(
        self,
        name: str,
        version: int | None = None,
        *,
        loaded: Iterable[LoadedModel] = (),
    ) -> dict[str, Any]:
        """Per variant: artifact bytes, load time, in-memory size, accuracy; plus the guard.

        Each variant is loaded to time its load and size it in memory, unless ``loaded`` holds
        it already (loaded by :meth:`load` from this registry: same name, version and variant
        actually loaded), whose load time and model are used instead.
        """
        version = self._resolve_version(name, version)
        have = {
            m.variant: m
            for m in loaded
            if m.name == name and m.version == version and m.model is not None
        }
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
                model = have.get(variant) or self._load_exact(name, version, variant, variant)
                entry["load_seconds"] = round(model.load_seconds, 4)
                entry["memory_bytes"] = deep_sizeof(model.model)
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
            "serving_version": self.serving_version(name),
            "dataset": original.metrics.get("dataset") if original else None,
            "variants": variants,
            "fallbacks": [f for f in self.fallbacks() if f["name"] == name],
        }


def _newer(local: dict[str, Any], shared: dict[str, Any] | None) -> dict[str, Any]:
    """The more recently written of a local and a shared registry state (local on a tie)."""
    if shared is None:
        return local
    if float(shared.get("updated_at") or 0) > float(local.get("updated_at") or 0):
        return dict(shared)
    return local


def check_name(name: str, owner: str = "ModelRegistry.register") -> None:
    """Refuse a model name the registry cannot store (before any work is done)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(
            f"The 'name' parameter of {owner} must be 1-64 letters, digits, "
            f"'_', '.' or '-' starting with a letter or digit, got {name!r} instead.",
            param="name",
        )


def _sample(
    validation: tuple[Sequence[str], Sequence[Any]], rows: int
) -> tuple[list[str], list[Any]]:
    """At most ``rows`` of (texts, labels), stratified when every class can be."""
    texts, labels = list(validation[0]), list(validation[1])
    if len(texts) <= rows:
        return texts, labels
    _, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    stratify = labels if counts.min() >= 2 and rows >= len(counts) else None
    kept_X, _, kept_y, _ = train_test_split(
        texts, labels, train_size=rows, random_state=0, stratify=stratify
    )
    return list(kept_X), list(kept_y)


def _renumber(folder: Path, version: int) -> Manifest:
    """Give the staged manifest in ``folder`` another version number."""
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["version"] = version
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Manifest.from_dict(data, folder)
