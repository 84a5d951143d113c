"""Linear classifiers: LogisticRegression, SGDClassifier, LinearSVC, RidgeClassifier, Perceptron,
PassiveAggressiveClassifier (and naive Bayes, which reduces to the same head).

The head stores ``W`` (classes x features) and the intercepts. Weights are quantized with
:func:`leanml.compress._quant.encode_matrix` (fp32 / fp16 / int8 per class row; intercepts stay
fp32) and pruned by magnitude, weighted by the typical size of each input column (the idf of a
preceding tf-idf step). A column whose weights are all pruned is dropped, and the vectorizer
drops the term with it.

Centering: for a softmax model (multinomial LogisticRegression, naive Bayes) and for a
multiclass model without probabilities, subtracting a per-column constant ``c_j`` from every
class row changes every class score of a sample by the same amount, so predictions and softmax
probabilities are unchanged; pruning uses the column median as ``c_j``, which turns the many
small "not this class" weights of a column into zeros (and one weight per column is exactly
zero). It is applied whenever a recipe prunes or quantizes below fp32; ``decision_function``
of such a model equals the original's up to that per-sample constant, while predictions,
probabilities and softmax confidences are unchanged by it.

Error contract before pruning: decision scores differ by at most
``sum_j |x_j| * e_j`` where ``e_j`` is the per-weight error of the precision (see ``_quant``);
probabilities (softmax/sigmoid, 1-Lipschitz in the max-norm) differ by at most twice that.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import (
    LogisticRegression,
    Perceptron,
    RidgeClassifier,
    RidgeClassifierCV,
    SGDClassifier,
)
from sklearn.svm import LinearSVC

from leanml._native import top_softmax
from leanml.compress._base import (
    ConvertContext,
    Head,
    Recipe,
    SparseRow,
    Unsupported,
    register_node,
    register_strategy,
)
from leanml.compress._quant import decode_matrix, encode_matrix, magnitude_threshold

__all__ = ["LINKS", "LinearHead", "prune_weights"]

#: logistic: sigmoid (binary) / softmax (multiclass) as LogisticRegression;
#: softmax: softmax of the class scores (naive Bayes); ovr: SGD log_loss (normalized sigmoids);
#: modified_huber: SGD's modified_huber probabilities; none: no predict_proba.
LINKS = ("logistic", "softmax", "ovr", "modified_huber", "none")


def prune_weights(
    W: np.ndarray,
    recipe: Recipe,
    *,
    center: bool,
    input_scale: np.ndarray | None,
) -> np.ndarray:
    """Center (optional) and magnitude-prune ``W`` (rows = outputs, columns = inputs)."""
    W = np.array(W, dtype=np.float64)
    pruning = recipe.threshold is not None or recipe.sparsity > 0
    if center and (pruning or recipe.precision != "fp32") and W.shape[0] > 1:
        W -= np.median(W, axis=0, keepdims=True)
    if recipe.threshold is not None:
        W[np.abs(W) < recipe.threshold] = 0.0
    elif recipe.sparsity > 0:
        importance = np.abs(W)
        if input_scale is not None and input_scale.shape[0] == W.shape[1]:
            scale = np.asarray(input_scale, dtype=np.float64)
            if recipe.usage_weighted:  # the scale is an idf: exp(1 - idf) = df / n
                scale = scale * np.exp(1.0 - scale)
            importance = importance * scale[None, :]
        cut = magnitude_threshold(importance, recipe.sparsity)
        W[importance < cut] = 0.0
    return W


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@register_node
class LinearHead(Head):
    """``scores = X @ W.T + b`` with a link turning scores into probabilities."""

    kind = "linear"

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray,
        *,
        link: str,
        precision: str = "fp32",
        binarize: float | None = None,
        has_decision: bool = True,
    ) -> None:
        if link not in LINKS:
            raise Unsupported(f"unknown link {link!r}")
        self.WT = np.ascontiguousarray(np.asarray(W, dtype=np.float32).T)
        self.b = np.asarray(b, dtype=np.float32).ravel()
        self.link, self.precision, self.binarize = link, precision, binarize
        self.has_proba = link != "none"
        self.has_decision = has_decision
        self._refresh()

    @property
    def W(self) -> np.ndarray:
        """Weights (classes x inputs), a view of the stored ``WT`` (inputs x classes)."""
        return self.WT.T

    def _refresh(self) -> None:
        self.WT = np.ascontiguousarray(self.WT)
        self.binary_margin = self.WT.shape[1] == 1

    def _prepare(self, X: Any) -> Any:
        if self.binarize is None:
            return X
        if sp.issparse(X):
            X = sp.csr_matrix(X, copy=True)
            X.data = (X.data > self.binarize).astype(np.float32)
            X.eliminate_zeros()
            return X
        return (np.asarray(X) > self.binarize).astype(np.float32)

    def decision(self, X: Any) -> np.ndarray:
        X = self._prepare(X)
        scores = np.asarray(X @ self.WT) + self.b
        return scores[:, 0] if self.binary_margin else scores

    def decision_one(self, x: Any) -> np.ndarray:
        if isinstance(x, SparseRow):
            values = x.values
            if self.binarize is not None:
                values = (values > self.binarize).astype(np.float32)
            scores = values @ self.WT[x.indices] + self.b
        else:
            scores = np.asarray(self._prepare(np.asarray(x, dtype=np.float32))) @ self.WT + self.b
        return scores[0] if self.binary_margin else scores

    def _link(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.binary_margin:
            if self.link == "modified_huber":
                p = (np.clip(scores, -1, 1) + 1) / 2
            else:
                p = _sigmoid(scores)
            return np.stack([1 - p, p], axis=-1)
        if self.link in ("logistic", "softmax"):
            return _softmax(scores)
        if self.link == "ovr":
            p = _sigmoid(scores)
        else:  # modified_huber
            p = (np.clip(scores, -1, 1) + 1) / 2
        total = p.sum(axis=-1, keepdims=True)
        k = p.shape[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / k)
        return out

    def proba(self, X: Any) -> np.ndarray:
        return self._link(self.decision(X))

    def proba_one(self, x: Any) -> np.ndarray:
        return self._link(self.decision_one(x))

    def predict_index(self, X: Any) -> np.ndarray:
        scores = self.decision(X)
        if scores.ndim == 1:
            return (scores > 0).astype(np.intp)
        return np.argmax(scores, axis=1)

    def predict_index_one(self, x: Any) -> int:
        scores = self.decision_one(x)
        if np.ndim(scores) == 0:
            return int(scores > 0)
        return int(np.argmax(scores))

    def top_one(self, x: Any) -> tuple[int, float]:
        """Top class and its probability from the scores alone (no probability vector) for
        the sigmoid and softmax links."""
        s = self.decision_one(x)
        if self.binary_margin:
            v = float(s)
            if self.link == "modified_huber" and self.has_proba:
                p1 = (min(max(v, -1.0), 1.0) + 1.0) / 2.0
            elif v >= 0:
                p1 = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                p1 = e / (1.0 + e)
            return (1, p1) if p1 > 0.5 else (0, 1.0 - p1)
        if self.link in ("logistic", "softmax") or not self.has_proba:
            return top_softmax(np.ascontiguousarray(s, dtype=np.float64))  # one C pass
        return super().top_one(x)

    def used_inputs(self) -> np.ndarray | None:
        return np.asarray(np.any(self.W != 0, axis=0))

    def select_inputs(self, mask: np.ndarray) -> None:
        self.WT = self.WT[mask]
        self._refresh()

    def can_permute_inputs(self) -> bool:
        return True

    def permute_inputs(self, perm: np.ndarray) -> None:
        self.WT = self.WT[perm]
        self._refresh()

    def payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        wspec, arrays = encode_matrix(self.WT, self.precision, "W", per="column")
        arrays["b"] = self.b.astype(np.float32)
        spec = {
            "W": wspec,
            "link": self.link,
            "binarize": self.binarize,
            "has_decision": self.has_decision,
        }
        return spec, arrays

    @classmethod
    def from_payload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearHead:
        return cls(  # decode gives WT in C order; its .T view transposes back without a copy
            decode_matrix(spec["W"], arrays, "W").T,
            arrays["b"],
            link=spec["link"],
            precision=spec["W"]["precision"],
            binarize=spec["binarize"],
            has_decision=spec["has_decision"],
        )

    def size_components(self) -> dict[str, str]:
        return {"W": "weights", "b": "weights"}


def _coef(est: Any) -> tuple[np.ndarray, np.ndarray]:
    coef = est.coef_
    coef = np.atleast_2d(coef.toarray() if sp.issparse(coef) else np.asarray(coef))
    intercept = np.broadcast_to(np.asarray(est.intercept_, dtype=np.float64), (coef.shape[0],))
    return np.asarray(coef, dtype=np.float64), np.array(intercept)


def _linear_head(est: Any, ctx: ConvertContext, link: str) -> LinearHead:
    W, b = _coef(est)
    center = W.shape[0] > 1 and link in ("logistic", "softmax", "none")
    W = prune_weights(W, ctx.recipe, center=center, input_scale=ctx.input_scale)
    return LinearHead(W, b, link=link, precision=ctx.recipe.precision)


@register_strategy(LogisticRegression)
def _convert_logistic(est: Any, ctx: ConvertContext) -> LinearHead:
    multi = getattr(est, "multi_class", "auto")
    k = len(est.classes_)
    ovr = k > 2 and (multi == "ovr" or (multi != "multinomial" and est.solver == "liblinear"))
    return _linear_head(est, ctx, "ovr" if ovr else "logistic")


@register_strategy(SGDClassifier)
def _convert_sgd(est: Any, ctx: ConvertContext) -> LinearHead:
    link = {"log_loss": "ovr", "modified_huber": "modified_huber"}.get(est.loss, "none")
    return _linear_head(est, ctx, link)


@register_strategy(LinearSVC, RidgeClassifier, RidgeClassifierCV, Perceptron)
def _convert_margin(est: Any, ctx: ConvertContext) -> LinearHead:
    return _linear_head(est, ctx, "none")


try:  # deprecated in recent scikit-learn, still supported while it exists
    from sklearn.linear_model import PassiveAggressiveClassifier

    register_strategy(PassiveAggressiveClassifier)(_convert_margin)
except ImportError:  # pragma: no cover - removed in a future scikit-learn
    pass
