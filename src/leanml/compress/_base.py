"""Building blocks shared by every strategy: the recipe, stages, heads and the strategy registry.

A compact model is a chain of *stages* (transformers: text vectorizers, SVD, scalers, ...)
ending in a *head* (the classifier). Each scikit-learn estimator family has one strategy module
that turns a fitted estimator into a stage or a head; strategies register themselves here with
:func:`register_strategy` and are found by walking the estimator's class hierarchy
(:func:`find_strategy`). A strategy that cannot convert a particular configuration raises
:class:`Unsupported` with the reason; the caller then passes the estimator through unchanged.

Single-row values flowing through the fast path are either a 1-D dense ``ndarray`` or a
:class:`SparseRow` (indices + values); batches are a scipy CSR matrix or a dense 2-D array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.sparse as sp

from leanml._predict import scores_to_proba

__all__ = [
    "ConvertContext",
    "Head",
    "Recipe",
    "SparseRow",
    "Stage",
    "TokenCounts",
    "Unsupported",
    "find_strategy",
    "node_class",
    "register_node",
    "register_strategy",
    "to_dense_row",
]

Arrays = dict[str, np.ndarray]
#: per text of a batch: how many word tokens, how many of them in the vocabulary (int arrays)
TokenCounts = tuple[np.ndarray, np.ndarray]


class Unsupported(Exception):
    """Raised by a strategy that cannot convert an estimator; carries the reason."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to compress: weight precision, auxiliary precision and magnitude pruning.

    ``precision`` applies to weights (linear coefficients, NB log-probabilities, MLP layers,
    SVD components, tree leaf values); ``aux_precision`` to idf, scaler statistics and tree
    thresholds. Pruning zeroes the ``sparsity`` fraction of smallest-magnitude weights, or every
    weight below ``threshold`` when that is given. With ``drop_features`` input columns whose
    weights are all zero leave the model (and their terms the vocabulary); that is exact unless
    a row normalisation (tf-idf ``norm``) sits between, where the norm then omits those terms.

    Sparsity pruning ranks weights by ``|w| * idf`` (the size of a term's feature when it
    occurs); with ``usage_weighted`` by ``|w| * idf * df / n`` (times how often it occurs, the
    expected contribution to a score; ``df / n = exp(1 - idf)`` is read back from the idf), so
    rare terms go first: smaller vocabularies at the same agreement on most text models.
    """

    precision: str = "fp32"
    aux_precision: str = "fp32"
    sparsity: float = 0.0
    threshold: float | None = None
    dynamic_activations: bool = False
    drop_features: bool = False
    usage_weighted: bool = False

    def label(self) -> str:
        prune = (
            f"thr{self.threshold:g}"
            if self.threshold is not None
            else (f"prune{self.sparsity:g}" if self.sparsity else "noprune")
        )
        if self.usage_weighted and self.threshold is None and self.sparsity:
            prune += "u"
        text = f"{self.precision}/{self.aux_precision}/{prune}"
        text += "/dropvocab" if self.drop_features else ""
        return text + ("/dynact" if self.dynamic_activations else "")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SparseRow(NamedTuple):
    """One sparse row: column ``indices`` (int) and their ``values`` (float32); ``size`` columns."""

    indices: np.ndarray
    values: np.ndarray
    size: int


def to_dense_row(x: Any) -> np.ndarray:
    """A 1-D float32 dense row from a :class:`SparseRow` or a dense row."""
    if isinstance(x, SparseRow):
        out = np.zeros(x.size, dtype=np.float32)
        np.add.at(out, x.indices, x.values)
        return out
    return np.asarray(x, dtype=np.float32).ravel()


def to_dense(X: Any) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray(X.toarray(), dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


class Node:
    """Common part of stages and heads: payload (de)serialisation and pruning hooks."""

    kind: ClassVar[str] = ""
    #: True when output column j depends only on input column j (idf, scaling).
    elementwise: ClassVar[bool] = False

    def payload(self) -> tuple[dict[str, Any], Arrays]:
        """Return ``(spec, arrays)``: JSON-able spec and named arrays (no object arrays)."""
        raise NotImplementedError

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: Arrays) -> Node:
        raise NotImplementedError

    def used_inputs(self) -> np.ndarray | None:
        """Boolean mask of the input columns this node still reads (``None``: all)."""
        return None

    def select_inputs(self, mask: np.ndarray) -> None:
        """Keep only the input columns in ``mask`` (elementwise stages: outputs too)."""
        raise Unsupported(f"{type(self).__name__} cannot drop input columns")

    def can_select_outputs(self) -> bool:
        return False

    def can_permute_inputs(self) -> bool:
        return False

    def permute_inputs(self, perm: np.ndarray) -> None:
        """Reorder input columns: new input column i is old column ``perm[i]``."""
        raise Unsupported(f"{type(self).__name__} cannot reorder its input columns")

    def select_outputs(self, mask: np.ndarray) -> None:
        raise Unsupported(f"{type(self).__name__} cannot drop output columns")

    def output_scale(self) -> np.ndarray | None:
        """Typical magnitude of each output column, used to rank weights for pruning."""
        return None

    def size_components(self) -> dict[str, str]:
        """Map array-name prefixes of this node's payload to a component name for reports."""
        return {}


class Stage(Node):
    """A transformer step: batch ``transform`` and single-row ``transform_one``."""

    def transform(self, X: Any) -> Any:
        raise NotImplementedError

    def transform_one(self, x: Any) -> Any:
        """Default single-row path: a batch of one."""
        if isinstance(x, SparseRow):
            batch: Any = sp.csr_matrix(
                (x.values, x.indices, np.array([0, len(x.indices)])), shape=(1, x.size)
            )
        elif isinstance(x, np.ndarray):
            batch = x.reshape(1, -1)
        else:
            batch = [x]
        out = self.transform(batch)
        if sp.issparse(out):
            row = sp.csr_matrix(out)
            return SparseRow(row.indices, row.data.astype(np.float32), row.shape[1])
        return np.asarray(out)[0]

    def transform_counted(self, X: Any) -> tuple[Any, TokenCounts | None]:
        """``transform(X)`` and, for a text stage, each text's (tokens, known tokens)."""
        return self.transform(X), None

    def transform_one_counted(self, x: Any) -> tuple[Any, tuple[int, int] | None]:
        """``transform_one(x)`` and, for a text stage, the text's (tokens, known tokens)."""
        return self.transform_one(x), None


class Head(Node):
    """The final estimator: decision scores and (optionally) probabilities.

    ``decision`` returns ``(n,)`` for binary margins or ``(n, k)``; ``predict_index`` the index
    into ``classes_``; ``proba`` probabilities ``(n, k)``.
    """

    has_proba: bool = True
    has_decision: bool = True

    def decision(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def decision_one(self, x: Any) -> np.ndarray:
        if isinstance(x, SparseRow):
            x = to_dense_row(x)
        return self.decision(np.asarray(x).reshape(1, -1))[0]

    def proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def proba_one(self, x: Any) -> np.ndarray:
        if isinstance(x, SparseRow):
            x = to_dense_row(x)
        return self.proba(np.asarray(x).reshape(1, -1))[0]

    def predict_index(self, X: Any) -> np.ndarray:
        scores = self.decision(X) if self.has_decision else self.proba(X)
        if scores.ndim == 1:
            return (scores > 0).astype(np.intp)
        return np.argmax(scores, axis=1)

    def predict_index_one(self, x: Any) -> int:
        scores = self.decision_one(x) if self.has_decision else self.proba_one(x)
        if np.ndim(scores) == 0:
            return int(scores > 0)
        return int(np.argmax(scores))

    def top(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the top class index and its probability (``proba``, else a softmax of the
        decision scores), as :func:`leanml._predict.predict_top` gives them."""
        p = self.proba(X) if self.has_proba else scores_to_proba(self.decision(X))
        p = np.asarray(p, dtype=np.float64)
        top = p.argmax(axis=1)
        return top, p[np.arange(len(top)), top]

    def top_one(self, x: Any) -> tuple[int, float]:
        """:meth:`top` of one row."""
        if self.has_proba:
            p = np.asarray(self.proba_one(x), dtype=np.float64).ravel()
        else:
            d = np.asarray(self.decision_one(x), dtype=np.float64)
            p = scores_to_proba(d.reshape(1, -1) if d.ndim else d.reshape(1))[0]
        i = int(p.argmax())
        return i, float(p[i])


@dataclasses.dataclass
class ConvertContext:
    """What a strategy needs: the recipe and the place to report pass-through steps."""

    recipe: Recipe
    passthrough: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    input_scale: np.ndarray | None = None

    def note_passthrough(self, step: str, reason: str) -> None:
        self.passthrough.append((step, reason))


Strategy = Callable[[Any, ConvertContext], Any]
_STRATEGIES: dict[type, Strategy] = {}
_NODES: dict[str, type[Node]] = {}


def register_strategy(*classes: type) -> Callable[[Strategy], Strategy]:
    """Decorator registering ``func(estimator, ctx) -> Stage | Head | list`` for ``classes``."""

    def deco(func: Strategy) -> Strategy:
        for cls in classes:
            _STRATEGIES[cls] = func
        return func

    return deco


def find_strategy(estimator: Any) -> Strategy | None:
    """The strategy registered for the estimator's class or its nearest registered base."""
    for cls in type(estimator).__mro__:
        if cls in _STRATEGIES:
            return _STRATEGIES[cls]
    return None


def register_node(cls: type[Node]) -> type[Node]:
    """Class decorator: make a node kind loadable from a payload by its ``kind`` name."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__} has no kind")
    _NODES[cls.kind] = cls
    return cls


def node_class(kind: str) -> type[Node]:
    from leanml.errors import ArtifactError

    try:
        return _NODES[kind]
    except KeyError:
        raise ArtifactError(f"Unknown compact node kind {kind!r}.") from None


def chain_payload(nodes: list[Node], prefix: str = "") -> tuple[list[dict[str, Any]], Arrays]:
    """Serialise a list of nodes: one spec per node; arrays renamed ``<prefix>n<i>.<name>``."""
    specs: list[dict[str, Any]] = []
    arrays: Arrays = {}
    for i, node in enumerate(nodes):
        spec, node_arrays = node.payload()
        specs.append({"kind": node.kind, "spec": spec})
        for name, value in node_arrays.items():
            arrays[f"{prefix}n{i}.{name}"] = value
    return specs, arrays


def chain_from_payload(specs: list[dict[str, Any]], arrays: Any, prefix: str = "") -> list[Node]:
    """Inverse of :func:`chain_payload`; ``arrays`` is any mapping (e.g. an open ``NpzFile``)."""
    names = list(arrays.keys())
    nodes: list[Node] = []
    for i, item in enumerate(specs):
        head = f"{prefix}n{i}."
        own = {k[len(head) :]: arrays[k] for k in names if k.startswith(head)}
        nodes.append(node_class(item["kind"]).from_payload(item["spec"], own))
    return nodes
