"""The compact model: a scikit-learn-compatible classifier over a chain of compact stages.

``CompactModel`` exposes ``classes_``, ``predict``, ``predict_proba`` and
``decision_function`` (the latter two only when the original had them) and ``score``, so it
works with ``sklearn.metrics``. Inputs are not re-validated on every call: a batch of one takes
a dedicated single-row path (a dict lookup per token and a gather of the weight rows it
touches), larger batches a vectorised CSR path. :meth:`predict_one` / :meth:`predict_proba_one`
take one document directly.

On disk it is two files, written by :meth:`CompactModel.save_payload`: ``arrays.npz``
(deflated numpy arrays, read back with ``allow_pickle=False``) and ``spec.json`` (node kinds and
settings). Nothing is ever unpickled. The model store reads it through the loader this module
registers with :func:`leanml.artifacts.register_loader` (kind "compact"), which is also declared
as a ``leanml.artifact_loaders`` entry point so the store finds it without importing this package.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if

from leanml._predict import scores_to_proba
from leanml.artifacts import register_loader
from leanml.compress._base import (
    Head,
    Node,
    Stage,
    TokenCounts,
    chain_from_payload,
    chain_payload,
)
from leanml.errors import ArtifactError, ArtifactMissingError, UnsupportedFormatError

__all__ = ["ARRAYS_FILE", "FORMAT_VERSION", "SPEC_FILE", "CompactModel"]

FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.npz"
SPEC_FILE = "spec.json"


def _has_proba(self: CompactModel) -> bool:
    return self.head is not None and self.head.has_proba


def _has_decision(self: CompactModel) -> bool:
    return self.head is not None and self.head.has_decision


_BLOB = "blob"
_ALIGN = 16


def _write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """Write every array into one deflated ``.npy`` member (one stream, one header to parse).

    Returns the index ``{name: [offset, dtype, shape]}`` that goes into the spec.
    """
    index: dict[str, list[Any]] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        data = arr.tobytes()
        index[name] = [offset, arr.dtype.str, list(arr.shape)]
        pad = (-len(data)) % _ALIGN
        chunks.append(data + b"\0" * pad)
        offset += len(data) + pad
    blob = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        with zf.open(_BLOB + ".npy", "w") as fh:
            np.lib.format.write_array(fh, blob, allow_pickle=False)
    return index


def _unpack(blob: np.ndarray, index: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """Zero-copy views of the arrays in ``blob`` (read-only)."""
    buffer = blob.data
    out: dict[str, np.ndarray] = {}
    for name, (offset, dtype_str, shape) in index.items():
        dtype = np.dtype(dtype_str)
        if dtype.kind == "O":
            raise ArtifactError(f"Array {name!r} has dtype object; refusing (it needs pickle).")
        count = int(np.prod(shape)) if shape else 1
        arr = np.frombuffer(buffer, dtype=dtype, count=count, offset=int(offset))
        out[name] = arr.reshape(shape)
    return out


class CompactModel(ClassifierMixin, BaseEstimator):
    """A compressed classifier: ``stages`` (transformers) then ``head`` (the classifier).

    Build one with :func:`leanml.compress.compress` or :func:`leanml.compress.to_compact`
    rather than by hand.
    """

    leanml_format: ClassVar[str] = "compact"

    def __init__(
        self,
        stages: Sequence[Stage] = (),
        head: Head | None = None,
        classes: np.ndarray | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        self.stages = stages
        self.head = head
        self.classes = classes
        self.recipe = recipe

    # -- fitted state -------------------------------------------------------------------------
    @property
    def classes_(self) -> np.ndarray:
        if self.classes is None:
            raise AttributeError("classes_")
        return np.asarray(self.classes)

    @property
    def nodes(self) -> list[Node]:
        head = self._head()
        return [*self.stages, head]

    def _head(self) -> Head:
        if self.head is None:
            raise ArtifactError("This CompactModel has no head (classifier).")
        return self.head

    def __sklearn_is_fitted__(self) -> bool:
        return self.head is not None and self.classes is not None

    # -- transforms ---------------------------------------------------------------------------
    def _single(self, X: Any) -> bool:
        return isinstance(X, list | tuple | np.ndarray) and len(X) == 1

    def transform_batch(self, X: Any) -> Any:
        for stage in self.stages:
            X = stage.transform(X)
        return X

    def transform_one(self, x: Any) -> Any:
        for stage in self.stages:
            x = stage.transform_one(x)
        return x

    # -- single-document fast path ------------------------------------------------------------
    def predict_one(self, x: Any) -> Any:
        """The predicted label of one document (or one feature row)."""
        return self.classes_[self._head().predict_index_one(self.transform_one(x))]

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """Class probabilities (k,) of one document."""
        return np.asarray(self._head().proba_one(self.transform_one(x)), dtype=np.float64)

    # -- one pass for monitoring ---------------------------------------------------------------
    def predict_fused_one(self, x: Any) -> tuple[int, float, int, int]:
        """One document in one pass: (class index, its probability, word tokens, known tokens).

        The probability is the top class's (``predict_proba``'s, else a softmax of the decision
        scores); the counts come from the tokenization the prediction makes anyway: the text's
        word tokens and how many of them are in the vocabulary (-1, -1 when the model does not
        start with a word vectorizer)."""
        counts = None
        stages = self.stages
        if stages:
            x, counts = stages[0].transform_one_counted(x)
            for stage in stages[1:]:
                x = stage.transform_one(x)
        top, conf = self._head().top_one(x)
        if counts is None:
            return top, conf, -1, -1
        return top, conf, counts[0], counts[1]

    def predict_fused(
        self, X: Any, proba: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, TokenCounts | None]:
        """A batch in one pass: (class indices, top-class probabilities, the probabilities when
        ``proba`` else None, per-text (word tokens, known tokens) or None); see
        :meth:`predict_fused_one`."""
        head = self._head()
        counts = None
        stages = self.stages
        if stages:
            X, counts = stages[0].transform_counted(X)
            for stage in stages[1:]:
                X = stage.transform(X)
        if proba:
            p = head.proba(X) if head.has_proba else scores_to_proba(head.decision(X))
            p = np.asarray(p, dtype=np.float64)
            top = p.argmax(axis=1)
            return top, p[np.arange(len(top)), top], p, counts
        top, conf = head.top(X)
        return top, conf, None, counts

    # -- scikit-learn API ---------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        head = self._head()
        if self._single(X):
            return self.classes_[[head.predict_index_one(self.transform_one(X[0]))]]
        return self.classes_[head.predict_index(self.transform_batch(X))]

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        head = self._head()
        if self._single(X):
            row = head.proba_one(self.transform_one(X[0]))
            return np.asarray(row, dtype=np.float64).reshape(1, -1)
        return np.asarray(head.proba(self.transform_batch(X)), dtype=np.float64)

    @available_if(_has_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @available_if(_has_decision)
    def decision_function(self, X: Any) -> np.ndarray:
        head = self._head()
        if self._single(X):
            row = np.asarray(head.decision_one(self.transform_one(X[0])), dtype=np.float64)
            return row.reshape(1, *row.shape) if row.ndim else row.reshape(1)
        return np.asarray(head.decision(self.transform_batch(X)), dtype=np.float64)

    # -- persistence --------------------------------------------------------------------------
    def save_payload(self, directory: pathlib.Path) -> list[str]:
        """Write ``arrays.npz`` and ``spec.json`` into ``directory``; return their names."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        specs, arrays = chain_payload(self.nodes)
        classes = self.classes_
        if classes.dtype.kind == "O":
            classes = classes.astype(str)
        arrays["classes"] = classes
        for name, value in arrays.items():
            if np.asarray(value).dtype.kind == "O":
                raise ArtifactError(f"Array {name!r} has dtype object; it would need pickle.")
        spec = {
            "format": "leanml-compact",
            "format_version": FORMAT_VERSION,
            "sklearn_version": sklearn.__version__,
            "recipe": self.recipe,
            "nodes": specs,
        }
        spec["arrays"] = _write_npz(directory / ARRAYS_FILE, arrays)
        (directory / SPEC_FILE).write_text(json.dumps(spec, sort_keys=True), encoding="utf-8")
        return [ARRAYS_FILE, SPEC_FILE]

    @classmethod
    def load_payload(cls, directory: pathlib.Path) -> CompactModel:
        """Read a model written by :meth:`save_payload` (``allow_pickle=False``, JSON spec)."""
        directory = pathlib.Path(directory)
        for name in (ARRAYS_FILE, SPEC_FILE):
            if not (directory / name).is_file():
                raise ArtifactMissingError(f"Compact model file {name!r} missing in {directory}.")
        try:
            spec = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{SPEC_FILE} is not valid JSON: {exc}") from None
        if spec.get("format") != "leanml-compact":
            raise UnsupportedFormatError(f"{SPEC_FILE} is not a leanml compact model spec.")
        if int(spec.get("format_version", -1)) > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"Compact format version {spec.get('format_version')} is newer than "
                f"{FORMAT_VERSION}, the newest this leanml reads."
            )
        try:
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
                blob = npz[_BLOB]
            arrays = _unpack(blob, spec["arrays"])
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise ArtifactError(f"Cannot read {ARRAYS_FILE}: {exc}") from None
        nodes = chain_from_payload(spec["nodes"], arrays)
        head = nodes[-1]
        if not isinstance(head, Head) or not all(isinstance(s, Stage) for s in nodes[:-1]):
            raise ArtifactError("A compact model must be stages followed by one head.")
        stages = [s for s in nodes[:-1] if isinstance(s, Stage)]
        return cls(stages, head, arrays["classes"], spec.get("recipe"))


register_loader(CompactModel.leanml_format, CompactModel.load_payload)
