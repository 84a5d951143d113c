"""A map from a model's top-class confidence to the probability that its prediction is correct.

Confidence-based accuracy estimation (the monitor's ``estimated_accuracy``) needs calibrated
confidences: the mean of P(correct) over a window is its expected accuracy. Raw confidences are
not calibrated (a 150-class logistic regression is under-confident, a 3-class one
over-confident), so at training and registration :func:`fit_confidence_map` fits, on the
validation split, two candidate maps of the top-class confidence ``c``:

* ``temperature``: temperature scaling of the top-class probability, read as the probability of
  the event "the prediction is correct": ``p = sigmoid(logit(c) / T)``, one parameter ``T``
  fitted by maximum likelihood. (The monitor receives the top-class confidence only, so the
  temperature acts on that probability rather than on the whole probability vector.)
* ``isotonic``: isotonic regression of correctness on ``c`` (pool adjacent violators), a
  non-decreasing piecewise-linear map through its knots.

and keeps the one with the lower validation log-loss, measured out of fold (``folds``-fold
cross-validation on the validation split, so that the flexible isotonic map is not favoured by
fitting and scoring on the same rows); the chosen map is then refitted on the whole split.
``identity`` (no map) is kept when neither candidate beats the raw confidences.

Class-mix shift (:meth:`ConfidenceMap.shift_adjusted`): a map of the confidence alone cannot see
that the traffic's class mix moved away from the validation split's, yet the precision of each
predicted class moves with it. For models with at most :data:`MAX_SHIFT_CLASSES` classes the
map also keeps the validation confusion counts (rows predicted, columns true). When a window's
predicted-class counts differ from the validation split's (chi-square p < ``SHIFT_P``), the
true class weights ``w`` (live prior / validation prior) are estimated by black-box shift
estimation (Lipton et al. 2018: non-negative least squares of ``C w = q``, with ``C`` the
validation joint of predicted and true class and ``q`` the window's predicted-class shares),
and each P(correct) ``p`` of a prediction of class ``i`` has its odds scaled twice: by the
ratio of class ``i``'s validation precision to its mean mapped P(correct) (the map is fitted
across classes, the precision of each class differs, and a shifted mix weighs the classes
differently), then by the prior ratio ``w_i / r_i``, where ``r_i`` is the weight of the classes
that class ``i``'s validation errors came from. Without evidence of a shift the estimate is left as
it is (the weights of a small window are noisy).

The map is plain JSON (:meth:`ConfidenceMap.to_dict` / :meth:`ConfidenceMap.from_dict`), stored
in the model manifest with the drift reference; never pickled.

Interval of an estimate (:meth:`ConfidenceMap.interval`): the realized accuracy of ``n``
predictions whose P(correct) are ``p_i`` has mean ``mean(p)`` and, the outcomes being
independent Bernoulli draws, variance ``sum p_i (1 - p_i) / n**2``; the map itself is uncertain
by about the sampling error of the validation accuracy it was fitted to reproduce,
``acc (1 - acc) / n_val`` (stored as ``level_var``). The 95% interval is Wilson's at the
estimate with the effective sample size these variances give, ``n_eff = est (1 - est) /
(sum of both)``: asymmetric near 1, where a window of an accurate model holds a handful of
errors and the normal interval under-covers (88.5% measured on the compact email model over
200-row windows of its test split; 99.5% with Wilson's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from leanml._intervals import wilson
from leanml.errors import ParameterError

__all__ = [
    "MAX_SHIFT_CLASSES",
    "METHODS",
    "SHIFT_P",
    "SHRINK_ROWS",
    "ConfidenceMap",
    "confusion_counts",
    "fit_confidence_map",
    "log_loss",
]

#: The maps :func:`fit_confidence_map` chooses from.
METHODS = ("identity", "temperature", "isotonic")
_EPS = 1e-4
#: models with more classes keep no confusion counts (the weights would be too noisy to solve)
MAX_SHIFT_CLASSES = 20
#: the chi-square p-value below which a window's class mix counts as shifted
SHIFT_P = 0.001
#: pseudo-rows per true class added to the confusion counts (shrinkage of small classes)
SHRINK_ROWS = 5.0


def log_loss(p: np.ndarray, correct: np.ndarray) -> float:
    """Mean binary log-loss of P(correct) ``p`` against the outcomes ``correct``."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(correct, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def _odds(p: Any) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return q / (1 - q)


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(c) - np.log1p(-c)


def _temperature_apply(c: np.ndarray, t: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-_logit(c) / t))


def _fit_temperature(c: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the log-loss (golden-section search on log T)."""
    z = _logit(c)

    def loss(log_t: float) -> float:
        return log_loss(1.0 / (1.0 + np.exp(-z / math.exp(log_t))), y)

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


def _fit_isotonic(c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of the isotonic regression of ``y`` on ``c`` (pool adjacent violators)."""
    order = np.argsort(c, kind="mergesort")
    xs, ys = np.asarray(c, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    # one block per distinct confidence, then pool adjacent violators
    ux, start = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, start)
    counts = np.diff(np.append(start, xs.size)).astype(np.float64)
    bx: list[list[float]] = []  # [x_first, x_last] of each block
    bs: list[float] = []
    bn: list[float] = []
    for x, s, n in zip(ux, sums, counts, strict=True):
        bx.append([x, x])
        bs.append(s)
        bn.append(n)
        while len(bs) > 1 and bs[-2] / bn[-2] >= bs[-1] / bn[-1]:
            s2, n2, x2 = bs.pop(), bn.pop(), bx.pop()
            bs[-1] += s2
            bn[-1] += n2
            bx[-1][1] = x2[1]
    kx: list[float] = []
    ky: list[float] = []
    for (x0, x1), s, n in zip(bx, bs, bn, strict=True):
        kx.extend((x0, x1) if x1 > x0 else (x0,))
        ky.extend((s / n, s / n) if x1 > x0 else (s / n,))
    return np.asarray(kx), np.asarray(ky)


def _shrunk(confusion: np.ndarray, rows: float = SHRINK_ROWS) -> np.ndarray:
    """Confusion counts [predicted][true] with ``rows`` pseudo-rows added to each true class:
    correct at the overall accuracy, the errors spread as the overall errors are over the
    predicted classes (other than the true one). A class seen 25 times keeps a trace of the
    others' error pattern; one seen 200 times is barely moved."""
    c = np.asarray(confusion, dtype=np.float64)
    k = c.shape[0]
    total = c.sum()
    if k < 2 or total <= 0 or rows <= 0:
        return c
    acc = float(np.trace(c) / total)
    errors = c.sum(axis=1) - np.diag(c)
    prior = np.zeros_like(c)
    for j in range(k):
        e = errors.copy()
        e[j] = 0.0
        e = e / e.sum() if e.sum() > 0 else np.where(np.arange(k) == j, 0.0, 1.0 / (k - 1))
        prior[:, j] = rows * (1 - acc) * e
        prior[j, j] = rows * acc
    return c + prior


@dataclass
class ConfidenceMap:
    """Top-class confidence -> P(correct) (see the module docstring)."""

    method: str = "identity"
    temperature: float = 1.0
    knots_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    knots_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n: int = 0
    level_var: float = 0.0
    val_accuracy: float | None = None
    log_loss: dict[str, float] = field(default_factory=dict)
    #: class labels (str) and validation counts [predicted][true], for the shift correction
    classes: list[str] = field(default_factory=list)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    #: per class (as ``classes``): the mean mapped P(correct) of its validation predictions
    class_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: the share of ``confusion`` that came from out-of-fold predictions on the training split
    #: (counts [predicted][true], as ``classes``; empty when only validation data was there)
    heldout: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def shift_adjusted(self, p: np.ndarray, predicted: Any) -> np.ndarray:
        """P(correct) ``p`` of predictions of the classes ``predicted`` (labels), corrected for
        the window's class-mix shift (see the module docstring); ``p`` itself without evidence
        of a shift or without confusion counts."""
        p = np.asarray(p, dtype=np.float64)
        pred = np.asarray(predicted).astype(str)
        k = len(self.classes)
        if k < 2 or pred.size != p.size or pred.size == 0:
            return p
        index = {c: i for i, c in enumerate(self.classes)}
        codes = np.fromiter((index.get(c, -1) for c in pred), np.int64, pred.size)
        if (codes < 0).any():
            return p  # a class the validation split never predicted: no estimate of w
        counts = _shrunk(self.confusion)
        joint = counts / counts.sum()
        val_pred = joint.sum(axis=1)
        live = np.bincount(codes, minlength=k).astype(np.float64)
        seen = val_pred > 0
        expected = val_pred[seen] * pred.size
        chi = float(((live[seen] - expected) ** 2 / expected).sum())
        if stats.chi2.sf(chi, max(int(seen.sum()) - 1, 1)) >= SHIFT_P:
            return p
        w, _ = optimize.nnls(joint, live / pred.size)
        prior = joint.sum(axis=0)
        if (w * prior).sum() <= 0:
            return p
        w /= (w * prior).sum()
        off = joint - np.diag(np.diag(joint))
        errors = off.sum(axis=1)
        r = np.where(errors > 0, (off * w).sum(axis=1) / np.where(errors > 0, errors, 1), w)
        # odds of p, times (precision / mean map) odds of the class, times the prior ratio
        diag = np.diag(joint)
        precision = np.where(val_pred > 0, diag / np.where(seen, val_pred, 1), 0.5)
        ratio = _odds(precision) / _odds(self.class_mean) if self.class_mean.size == k else 1.0
        factor = (np.ones(k) * ratio * w / np.where(r > 0, r, 1))[codes]
        o = _odds(p) * factor
        return o / (1 + o)

    def apply(self, confidences: Any) -> np.ndarray:
        """P(correct) of each confidence."""
        c = np.asarray(confidences, dtype=np.float64)
        if self.method == "temperature":
            return _temperature_apply(c, self.temperature)
        if self.method == "isotonic" and self.knots_x.size:
            return np.interp(c, self.knots_x, self.knots_y)
        return c

    def interval(self, p: np.ndarray) -> tuple[float, float, float]:
        """``(estimate, lower, upper)``: the expected accuracy of predictions with P(correct)
        ``p`` (already mapped) and its 95% interval (see the module docstring)."""
        p = np.asarray(p, dtype=np.float64)
        if p.size == 0:
            return math.nan, math.nan, math.nan
        est = float(p.mean())
        var = float((p * (1 - p)).sum()) / p.size**2 + self.level_var
        if var <= 0 or est * (1 - est) <= 0:
            return est, est, est
        n_eff = est * (1 - est) / var
        lo, hi = wilson(est * n_eff, n_eff)
        return est, est if lo is None else lo, est if hi is None else hi

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "n": self.n,
            "level_var": self.level_var,
            "val_accuracy": self.val_accuracy,
            "log_loss": {k: round(v, 6) for k, v in self.log_loss.items()},
        }
        if self.method == "temperature":
            out["temperature"] = self.temperature
        if self.method == "isotonic":
            out["knots_x"] = [float(x) for x in self.knots_x]
            out["knots_y"] = [float(y) for y in self.knots_y]
        if self.classes:
            out["classes"] = list(self.classes)
            out["confusion"] = self.confusion.astype(int).tolist()
            out["class_mean"] = [float(x) for x in self.class_mean]
            if self.heldout.size:
                out["heldout_confusion"] = self.heldout.astype(int).tolist()
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ConfidenceMap:
        if not isinstance(d, dict):
            raise ParameterError(f"a confidence map must be a dict, got {type(d).__name__}")
        method = d.get("method", "identity")
        if method not in METHODS:
            raise ParameterError(
                f"a confidence map's method must be one of {', '.join(METHODS)}, "
                f"got {method!r} instead."
            )
        try:
            kx = np.asarray(d.get("knots_x", []), dtype=np.float64)
            ky = np.asarray(d.get("knots_y", []), dtype=np.float64)
            t = float(d.get("temperature", 1.0))
            out = cls(
                method,
                t,
                kx,
                ky,
                int(d.get("n", 0)),
                float(d.get("level_var", 0.0)),
                None if d.get("val_accuracy") is None else float(d["val_accuracy"]),
                {str(k): float(v) for k, v in dict(d.get("log_loss", {})).items()},
                [str(c) for c in d.get("classes", [])],
                np.asarray(d.get("confusion", np.zeros((0, 0))), dtype=np.float64),
                np.asarray(d.get("class_mean", []), dtype=np.float64),
                np.asarray(d.get("heldout_confusion", np.zeros((0, 0))), dtype=np.float64),
            )
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"invalid confidence map: {exc}") from exc
        if method == "isotonic" and (kx.size == 0 or kx.shape != ky.shape):
            raise ParameterError("an isotonic confidence map needs knots_x and knots_y alike")
        k = len(out.classes)
        if k and out.confusion.shape != (k, k):
            raise ParameterError("a confidence map's confusion must be classes x classes")
        if out.heldout.size and out.heldout.shape != (k, k):
            raise ParameterError("a confidence map's heldout_confusion must be classes x classes")
        if method == "temperature" and not t > 0:
            raise ParameterError(f"a confidence map's temperature must be > 0, got {t}")
        return out


def _fit(method: str, c: np.ndarray, y: np.ndarray) -> ConfidenceMap:
    if method == "temperature":
        return ConfidenceMap("temperature", temperature=_fit_temperature(c, y))
    if method == "isotonic":
        kx, ky = _fit_isotonic(c, y)
        return ConfidenceMap("isotonic", knots_x=kx, knots_y=ky)
    return ConfidenceMap()


def fit_confidence_map(
    confidences: Any,
    correct: Any,
    *,
    predicted: Any = None,
    true: Any = None,
    heldout: tuple[Any, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> ConfidenceMap:
    """Fit the temperature and isotonic maps on validation predictions and keep the one with
    the lower out-of-fold log-loss (see the module docstring); given the ``predicted`` and
    ``true`` labels of a model with at most :data:`MAX_SHIFT_CLASSES` classes, keep their
    confusion counts for the class-mix shift correction, pooled with ``heldout``: ``(classes,
    counts [predicted][true])`` of more held-out predictions (out of fold on the training
    split, :func:`leanml.training.heldout_confusion`)."""
    c = np.asarray(confidences, dtype=np.float64).ravel()
    y = np.asarray(correct, dtype=np.float64).ravel()
    if c.size == 0 or c.size != y.size:
        raise ParameterError(
            "The 'correct' parameter of fit_confidence_map must be as long as the non-empty "
            f"confidences, got {y.size} outcomes for {c.size} confidences instead."
        )
    k = max(2, min(folds, c.size))
    fold = np.random.default_rng(seed).permutation(c.size) % k
    losses: dict[str, float] = {}
    for method in METHODS:
        p = np.empty_like(c)
        for f in range(k):
            test = fold == f
            p[test] = _fit(method, c[~test], y[~test]).apply(c[test])
        losses[method] = log_loss(p, y)
    best = min(METHODS, key=lambda m: (losses[m], METHODS.index(m)))
    out = _fit(best, c, y)
    acc = float(y.mean())
    out.n = int(c.size)
    out.level_var = acc * (1 - acc) / c.size
    out.val_accuracy = acc
    out.log_loss = losses
    if predicted is not None and true is not None:
        pred = np.asarray(predicted).astype(str)
        truth = np.asarray(true).astype(str)
        extra_classes: list[str] = []
        extra = np.zeros((0, 0))
        if heldout is not None:
            extra_classes = [str(v) for v in heldout[0]]
            extra = np.asarray(heldout[1], dtype=np.float64)
            if extra.shape != (len(extra_classes), len(extra_classes)):
                raise ParameterError(
                    "The 'heldout' parameter of fit_confidence_map must be (classes, counts) "
                    f"with classes x classes counts, got {extra.shape} for "
                    f"{len(extra_classes)} classes instead."
                )
        classes = sorted(set(pred.tolist()) | set(truth.tolist()) | set(extra_classes))
        if len(classes) <= MAX_SHIFT_CLASSES and pred.size == c.size == truth.size:
            confusion = confusion_counts(pred, truth, classes)
            codes = np.array([classes.index(v) for v in pred])
            if extra.size:
                at = np.array([classes.index(v) for v in extra_classes])
                out.heldout = np.zeros((len(classes), len(classes)))
                out.heldout[np.ix_(at, at)] = extra
                confusion = confusion + out.heldout
            mapped = out.apply(c)
            sums = np.bincount(codes, weights=mapped, minlength=len(classes))
            counts = np.bincount(codes, minlength=len(classes))
            out.classes, out.confusion = classes, confusion
            out.class_mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)
    return out


def confusion_counts(predicted: Any, true: Any, classes: list[str]) -> np.ndarray:
    """Counts [predicted][true] of the label pairs (as str), rows and columns as ``classes``."""
    index = {v: i for i, v in enumerate(classes)}
    pred = np.asarray(predicted).astype(str)
    truth = np.asarray(true).astype(str)
    out = np.zeros((len(classes), len(classes)))
    np.add.at(out, (np.array([index[v] for v in pred]), np.array([index[v] for v in truth])), 1)
    return out
