"""The on-disk model format: one directory per model version and variant.

::

    <dir>/manifest.json   name, version, task, variant, kind, created, classes, library
                          versions, metrics, extra (guard verdict, drift reference, ...),
                          and every payload file with its sha256 and size
    <dir>/model.skops     kind "skops": an original scikit-learn model (ZIP_DEFLATED)
    <dir>/arrays.npz ...  any other kind (e.g. "compact"): whatever the model's ``save_payload``
                          wrote

Each kind has a loader, ``loader(directory) -> model``, kept in a small table. This module
knows only "skops"; a package that adds a kind registers its loader with
:func:`register_loader` when it is imported, and declares it as an entry point in the
``leanml.artifact_loaders`` group (``kind = "module:callable"``) so that a fresh interpreter
finds it on first use without importing that package first. That is how
:mod:`leanml.compress` adds "compact" while the model store never imports it.

Loading never unpickles. A skops payload is opened only after every type it references that
skops does not already trust is found on :data:`ALLOWED_TYPES`, an allow-list that lives here,
in leanml's code (the file's own list of types is never trusted), or on the operator's
``trusted_types`` (the setting, or ``--trust`` on one command line) passed by the caller.
Every payload's sha256 is checked against the manifest before it is parsed. Each failure has
its own error:

* manifest or payload file missing -> :class:`~leanml.errors.ArtifactMissingError`
* sha256 mismatch (tampered or truncated file) -> :class:`~leanml.errors.ChecksumMismatchError`
* a type outside the allow-list -> :class:`~leanml.errors.UntrustedTypeError`
* a format version this leanml cannot read -> :class:`~leanml.errors.UnsupportedFormatError`

Upgrades: a manifest of every earlier ``format_version`` is read. :data:`MANIFEST_UPGRADES` maps
version ``n`` to the function that turns an ``n`` manifest dict into an ``n + 1`` one; the reader
applies them in order up to :data:`FORMAT_VERSION` (the file on disk is left as it is). Only a
version newer than this leanml, or one without a step, is refused. Format 1 (leanml 0.1.0, the
only one so far) is read as is; ``tests/test_upgrade.py`` reads a registry 0.1.0 wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gzip
import hashlib
import json
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from leanml.errors import (
    ArtifactError,
    ArtifactMissingError,
    ChecksumMismatchError,
    ParameterError,
    UnsupportedFormatError,
    UntrustedTypeError,
)

__all__ = [
    "ALLOWED_TYPES",
    "FORMAT_VERSION",
    "LOADER_GROUP",
    "MANIFEST_FILE",
    "MANIFEST_UPGRADES",
    "Loader",
    "Manifest",
    "artifact_loader",
    "library_versions",
    "load_model",
    "load_sample",
    "read_manifest",
    "refused_types",
    "register_loader",
    "save_model",
    "save_sample",
    "sha256_file",
    "skops_loads",
    "untrusted_message",
    "upgrade_manifest",
    "verify_artifact",
]

FORMAT_VERSION = 1
#: ``{n: upgrade}``: an ``n`` manifest dict -> an ``n + 1`` one (see the module docstring)
MANIFEST_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
#: The file in every model directory that describes it (see the module docstring).
MANIFEST_FILE = "manifest.json"
_SKOPS_FILE = "model.skops"
_SKOPS_KIND = "skops"

#: The entry-point group where packages declare their loaders: ``kind = "module:callable"``.
LOADER_GROUP = "leanml.artifact_loaders"

#: ``loader(directory) -> model``: reads a payload that :func:`verify_artifact` has checked.
Loader = Callable[[Path], Any]

#: Types a skops payload may hold beyond those skops itself trusts by default. Every entry is a
#: scikit-learn building block leanml trains or compresses; nothing that can run arbitrary code.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.ensemble._gb_losses.MultinomialDeviance",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn.dummy.DummyClassifier",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.Log",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.utils._bunch.Bunch",
        "numpy.dtype",
        "numpy.float32",
        "numpy.float64",
        "numpy.int64",
        "collections.defaultdict",
        "collections.OrderedDict",
        "builtins.int",
        "builtins.float",
        "builtins.list",
        "builtins.str",
    }
    # scipy sparse containers (plain data) that fitted estimators such as SVC hold
    | {
        f"scipy.sparse._{f}.{f}_{kind}"
        for f in ("csr", "csc", "coo")
        for kind in ("matrix", "array")
    }
)


@dataclasses.dataclass
class Manifest:
    """What ``manifest.json`` holds. ``payload`` maps file name -> {"sha256", "size"}."""

    name: str
    version: int
    task: str
    variant: str
    kind: str
    created: str
    classes: list[Any]
    library_versions: dict[str, str]
    metrics: dict[str, Any]
    payload: dict[str, dict[str, Any]]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def payload_bytes(self) -> int:
        """Total size of the payload files on disk."""
        return sum(int(entry["size"]) for entry in self.payload.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> Manifest:
        data = upgrade_manifest(data, where)
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in data and n != "extra")
        if missing:
            raise ArtifactError(f"{where / MANIFEST_FILE} lacks the keys {missing}.")
        return cls(**{k: v for k, v in data.items() if k in names})


def upgrade_manifest(data: dict[str, Any], where: Path) -> dict[str, Any]:
    """``data`` brought to :data:`FORMAT_VERSION` through :data:`MANIFEST_UPGRADES`."""
    version = data.get("format_version")
    readable = f"1 to {FORMAT_VERSION}" if FORMAT_VERSION > 1 else "1"
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"{where / MANIFEST_FILE} has format_version {version!r}; this leanml reads "
            f"format_version {readable} (a newer leanml wrote it?)."
        )
    while version < FORMAT_VERSION:
        step = MANIFEST_UPGRADES.get(version)
        if step is None:
            raise UnsupportedFormatError(
                f"{where / MANIFEST_FILE} has format_version {version!r}, which this leanml "
                f"cannot upgrade (it reads {readable})."
            )
        data = step(dict(data))
        version += 1
        data["format_version"] = version
    return data


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("leanml", "scikit-learn", "numpy", "scipy", "skops"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[dist] = "unknown"
    return versions


def save_model(
    model: Any,
    directory: str | os.PathLike[str],
    *,
    name: str,
    version: int,
    task: str,
    variant: str = "original",
    metrics: dict[str, Any] | None = None,
    classes: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``model`` and its manifest to ``directory`` atomically (replacing what was there).

    A model with a ``leanml_format`` attribute (e.g. "compact") writes its own payload through
    ``save_payload(dir)`` and is stored under that kind; anything else is written with skops,
    ZIP_DEFLATED.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is as readable as its parent
    try:
        kind = str(getattr(model, "leanml_format", _SKOPS_KIND))
        if kind != _SKOPS_KIND:
            files = list(model.save_payload(staging))
        else:
            import skops.io as sio

            sio.dump(model, staging / _SKOPS_FILE, compression=zipfile.ZIP_DEFLATED)
            files = [_SKOPS_FILE]
        if classes is None and hasattr(model, "classes_"):
            classes = [_plain(c) for c in model.classes_]
        manifest = Manifest(
            name=name,
            version=int(version),
            task=task,
            variant=variant,
            kind=kind,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            classes=list(classes or []),
            library_versions=library_versions(),
            metrics=dict(metrics or {}),
            payload={
                f: {"sha256": sha256_file(staging / f), "size": (staging / f).stat().st_size}
                for f in files
            },
            extra=dict(extra or {}),
        )
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    where = Path(directory)
    path = where / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactMissingError(f"No manifest at {path}.") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object.")
    return Manifest.from_dict(data, where)


def verify_artifact(directory: str | os.PathLike[str]) -> Manifest:
    """Read the manifest and check every payload file's presence and sha256."""
    where = Path(directory)
    manifest = read_manifest(where)
    for file, entry in manifest.payload.items():
        path = where / file
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise ArtifactError(
                f"{where / MANIFEST_FILE} names a payload outside its folder: {file!r}."
            )
        if not path.is_file():
            raise ArtifactMissingError(f"Payload file {path} named in the manifest is missing.")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ChecksumMismatchError(
                f"Payload file {path} has sha256 {actual}, but the manifest says "
                f"{entry.get('sha256')}: the file was changed or truncated after it was saved."
            )
    return manifest


def load_model(
    directory: str | os.PathLike[str], *, trusted_types: Iterable[str] = ()
) -> tuple[Any, Manifest]:
    """Verify and load the model in ``directory``; never unpickles.

    ``trusted_types`` are the operator's extra types (setting ``trusted_types``, ``--trust``)
    accepted in a skops payload beyond :data:`ALLOWED_TYPES`; never taken from the artifact.
    """
    where = Path(directory)
    manifest = verify_artifact(where)
    if manifest.kind == _SKOPS_KIND:
        path = where / _SKOPS_FILE
        return skops_loads(path.read_bytes(), str(path), trusted_types=trusted_types), manifest
    try:
        loader = artifact_loader(manifest.kind)
    except UnsupportedFormatError as exc:
        raise UnsupportedFormatError(f"{where / MANIFEST_FILE}: {exc}") from None
    return loader(where), manifest


# -- loaders by kind ------------------------------------------------------------------------


def _load_skops(directory: Path) -> Any:
    path = directory / _SKOPS_FILE
    return skops_loads(path.read_bytes(), str(path))


_LOADERS: dict[str, Loader] = {_SKOPS_KIND: _load_skops}


def register_loader(kind: str, loader: Loader) -> None:
    """Make :func:`load_model` read artifacts of ``kind`` with ``loader(directory)``.

    Registering the same loader again is a no-op; a kind keeps the loader it was first given.
    """
    if not isinstance(kind, str) or not kind:
        raise ParameterError(
            f"The 'kind' parameter of register_loader must be a non-empty str, got {kind!r} "
            "instead."
        )
    if not callable(loader):
        raise ParameterError(
            "The 'loader' parameter of register_loader must be callable, "
            f"got {type(loader).__name__} instead."
        )
    current = _LOADERS.setdefault(kind, loader)
    if current != loader:
        raise ParameterError(
            "The 'kind' parameter of register_loader must name a kind without a loader, "
            f"got {kind!r} instead (it is read by {_describe(current)})."
        )


def artifact_loader(kind: str) -> Loader:
    """The loader of ``kind``: registered, or else declared in :data:`LOADER_GROUP`.

    An entry point is loaded once, on the first artifact of its kind; loading it imports the
    package that declares it, which normally registers the same loader on import.
    """
    loader = _LOADERS.get(kind)
    if loader is not None:
        return loader
    declared = _declared_loaders().get(kind)
    if declared is None:
        known = sorted({*_LOADERS, *_declared_loaders()})
        raise UnsupportedFormatError(
            f"No loader for artifact kind {kind!r} (known kinds: {', '.join(known)}); the "
            f"package that writes it must register one or declare it in {LOADER_GROUP!r}."
        )
    try:
        loaded = declared.load()
    except (ImportError, AttributeError) as exc:
        raise UnsupportedFormatError(
            f"The {LOADER_GROUP!r} entry point {declared.name} = {declared.value!r} cannot be "
            f"loaded: {exc}"
        ) from exc
    if not callable(loaded):
        raise UnsupportedFormatError(
            f"The {LOADER_GROUP!r} entry point {declared.name} = {declared.value!r} is not "
            "callable."
        )
    return _LOADERS.setdefault(kind, loaded)


@functools.cache
def _declared_loaders() -> dict[str, metadata.EntryPoint]:
    """The entry points of :data:`LOADER_GROUP` by kind (read once per process)."""
    return {ep.name: ep for ep in metadata.entry_points(group=LOADER_GROUP)}


def _describe(loader: Loader) -> str:
    module = getattr(loader, "__module__", "?")
    return f"{module}.{getattr(loader, '__qualname__', repr(loader))}"


def refused_types(data: bytes, where: str, trusted_types: Iterable[str] = ()) -> list[str]:
    """The types of skops ``data`` outside skops' defaults, the allow-list and ``trusted_types``."""
    return _refused(_untrusted_types(data, where), trusted_types)


def _untrusted_types(data: bytes, where: str) -> list[str]:
    """The types of skops ``data`` that skops does not trust by default."""
    import skops.io as sio

    try:
        return list(sio.get_untrusted_types(data=data))
    except Exception as exc:  # a corrupt zip or schema: say which payload
        raise ArtifactError(f"{where} is not a readable skops payload: {exc}") from exc


def _refused(untrusted: Iterable[str], trusted_types: Iterable[str]) -> list[str]:
    accepted = ALLOWED_TYPES | frozenset(trusted_types)
    return sorted(t for t in untrusted if t not in accepted)


def untrusted_message(where: str, refused: list[str]) -> str:
    """What a refused payload says: the types, and the operator's two ways to accept them."""
    flags = " ".join(f"--trust {t}" for t in refused)
    return (
        f"{where} references untrusted types, outside leanml's allow-list: "
        f"{', '.join(refused)}. Refusing to load it. If you trust them, list them in the "
        f"setting trusted_types (LEANML_TRUSTED_TYPES, or trusted_types in the config file) "
        f"or, for one command, pass {flags}."
    )


def skops_loads(data: bytes, where: str, *, trusted_types: Iterable[str] = ()) -> Any:
    """Load skops bytes after checking every type skops does not trust against the allow-list
    (plus the operator's ``trusted_types``).

    A payload made of skops' default-trusted types only (the demo pipelines) is read in one pass,
    trusting nothing more. Any other payload is listed first: refused unless each of its other
    types is accepted, then loaded trusting exactly those. (Each pass parses the whole schema: a
    large vocabulary takes seconds, so the common case does not list before loading.)

    ``where`` names the payload in error messages (a path, or e.g. "pass-through step").
    """
    import skops.io as sio

    try:
        return sio.loads(data)  # trusting skops' defaults only
    except Exception:  # other types (UntrustedTypesFoundException), or unreadable: checked below
        pass
    untrusted = _untrusted_types(data, where)
    refused = _refused(untrusted, trusted_types)
    if refused:
        raise UntrustedTypeError(untrusted_message(where, refused))
    return sio.loads(data, trusted=untrusted)


# -- the validation sample kept with a version -------------------------------------------------


def save_sample(
    path: str | os.PathLike[str], texts: Sequence[str], labels: Sequence[Any], *, total: int
) -> dict[str, Any]:
    """Write texts and labels as gzip-compressed JSON; return its manifest entry.

    The entry (file name, rows, rows of the split it was drawn from, sha256, size) goes into
    the original's manifest; :func:`load_sample` checks the sha256 before parsing.
    """
    target = Path(path)
    body = {"texts": list(texts), "labels": [_plain(v) for v in labels]}
    data = gzip.compress(json.dumps(body, ensure_ascii=False).encode("utf-8"), mtime=0)
    target.write_bytes(data)
    return {
        "file": target.name,
        "rows": len(body["texts"]),
        "of": int(total),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def load_sample(
    folder: str | os.PathLike[str], entry: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    """The texts and labels of a sample written by :func:`save_sample` (sha256 checked)."""
    file = str(entry.get("file", ""))
    if not file or Path(file).name != file:
        raise ArtifactError(f"The validation sample entry of {folder} names no plain file.")
    path = Path(folder) / file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactMissingError(f"The validation sample {path} is missing.") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ChecksumMismatchError(
            f"The validation sample {path} does not match the sha256 of its manifest."
        )
    body = json.loads(gzip.decompress(data).decode("utf-8"))
    return list(body["texts"]), list(body["labels"])


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, for JSON."""
    return value.item() if hasattr(value, "item") else value
