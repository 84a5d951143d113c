"""The accuracy guard's verdict on candidates, and the result of a compression.

Guard contract (see :mod:`leanml.compress.quantizer` for how candidates are produced). A
candidate passes when its serialized size is strictly smaller than the original's, its
accuracy drop is ``<= tolerance``, its agreement with the original is ``>= min_agreement``,
optionally its largest probability change is ``<= max_proba_error``, and, when a
``confidence`` is set (0.9 by default in ``ModelQuantizer.compress``), the one-sided
confidence bounds of the drop and the agreement (:func:`confidence_bounds`) meet the same
limits. :func:`choose_candidate` returns the smallest passing candidate, or ``None``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np

from leanml.compress._base import Recipe
from leanml.compress.compact import CompactModel

__all__ = [
    "CandidateReport",
    "CompressionResult",
    "check_candidate",
    "choose_candidate",
    "confidence_bounds",
]


@dataclasses.dataclass
class CandidateReport:
    """One candidate recipe and what the guard made of it."""

    recipe: dict[str, Any]
    label: str
    bytes: int | None = None
    accuracy: float | None = None
    agreement: float | None = None
    max_proba_error: float | None = None
    accepted: bool = False
    reason: str = ""
    #: with a guard ``confidence``: upper bound of the accuracy drop, lower bound of agreement
    drop_upper: float | None = None
    agreement_lower: float | None = None


@dataclasses.dataclass
class CompressionResult:
    """What :meth:`ModelQuantizer.compress` returns; ``model`` is compact or the original."""

    model: Any
    compressed: bool
    recipe: dict[str, Any] | None
    original_bytes: int
    compact_bytes: int
    accuracy_before: float
    accuracy_after: float
    agreement: float
    max_proba_error: float | None
    fallback_reason: str | None
    candidates: list[CandidateReport]
    passthrough: list[tuple[str, str]]
    single_us_before: float | None = None
    single_us_after: float | None = None
    batch_per_s_before: float | None = None
    batch_per_s_after: float | None = None
    tolerance: float = 0.005
    min_agreement: float = 0.99
    confidence: float | None = None
    #: On fallback: the smallest candidate that was scored and rejected (to record the verdict)
    rejected_model: CompactModel | None = dataclasses.field(default=None, repr=False)

    @property
    def ratio(self) -> float:
        """Original bytes / result bytes (1.0 on fallback)."""
        return self.original_bytes / max(self.compact_bytes, 1)

    @property
    def rejected(self) -> list[CandidateReport]:
        return [c for c in self.candidates if not c.accepted]

    def guard_verdict(self) -> dict[str, Any]:
        """The verdict stored in the manifest (``extra={"guard": ...}``)."""
        return {
            "passed": self.compressed,
            "reason": (
                f"accepted {self.recipe_label}: accuracy drop "
                f"{self.accuracy_before - self.accuracy_after:+.4f} <= {self.tolerance}, "
                f"agreement {self.agreement:.4f} >= {self.min_agreement}"
                if self.compressed
                else (self.fallback_reason or "")
            ),
            "recipe": self.recipe,
            "tolerance": self.tolerance,
            "min_agreement": self.min_agreement,
            "confidence": self.confidence,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "agreement": self.agreement,
            "max_proba_error": self.max_proba_error,
            "original_bytes": self.original_bytes,
            "compact_bytes": self.compact_bytes,
            "passthrough": [list(p) for p in self.passthrough],
        }

    @property
    def recipe_label(self) -> str:
        return Recipe(**self.recipe).label() if self.recipe else "original"

    def to_dict(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("model", "rejected_model")
        }
        out["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        out["ratio"] = self.ratio
        out["recipe_label"] = self.recipe_label
        return out


def confidence_bounds(
    original_correct: np.ndarray,
    candidate_correct: np.ndarray,
    same: np.ndarray,
    confidence: float,
) -> tuple[float, float]:
    """One-sided bounds at ``confidence``: (upper bound of the accuracy drop, lower bound of
    the agreement).

    The drop is a paired difference: with ``b`` samples only the original gets right and ``c``
    only the candidate, ``drop = (b - c) / n`` with variance ``((b + c) - (b - c)**2 / n) / n**2``
    (normal approximation). The agreement bound is Wilson's score interval.
    """
    z = statistics.NormalDist().inv_cdf(confidence)
    n = len(same)
    b = float(np.sum(original_correct & ~candidate_correct))
    c = float(np.sum(~original_correct & candidate_correct))
    var = max((b + c) - (b - c) ** 2 / n, 0.0) / n**2
    drop_upper = (b - c) / n + z * var**0.5
    p = float(np.mean(same))
    centre = p + z * z / (2 * n)
    spread = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    agreement_lower = (centre - spread) / (1 + z * z / n)
    return drop_upper, agreement_lower


def check_candidate(
    report: CandidateReport,
    *,
    original_bytes: int,
    accuracy_before: float,
    tolerance: float,
    min_agreement: float,
    max_proba_error: float | None = None,
) -> str | None:
    """The reason the guard rejects ``report``, or ``None`` when it passes."""
    if report.bytes is None or report.accuracy is None or report.agreement is None:
        return report.reason or "not evaluated"
    if report.bytes >= original_bytes:
        return f"not smaller than the original ({report.bytes} >= {original_bytes} bytes)"
    drop = accuracy_before - report.accuracy
    if drop > tolerance + 1e-12:
        return f"accuracy drop {drop:.4f} > tolerance {tolerance}"
    if report.agreement < min_agreement:
        return f"agreement {report.agreement:.4f} < min_agreement {min_agreement}"
    if report.drop_upper is not None and report.drop_upper > tolerance + 1e-12:
        return (
            f"accuracy drop {drop:.4f}, upper confidence bound {report.drop_upper:.4f} "
            f"> tolerance {tolerance}"
        )
    if report.agreement_lower is not None and report.agreement_lower < min_agreement:
        return (
            f"agreement {report.agreement:.4f}, lower confidence bound "
            f"{report.agreement_lower:.4f} < min_agreement {min_agreement}"
        )
    error = report.max_proba_error
    if max_proba_error is not None and error is not None and error > max_proba_error:
        return f"max probability error {error:.4f} > max_proba_error {max_proba_error}"
    return None


def choose_candidate(
    reports: Iterable[CandidateReport],
    *,
    original_bytes: int,
    accuracy_before: float,
    tolerance: float,
    min_agreement: float,
    max_proba_error: float | None = None,
) -> CandidateReport | None:
    """The smallest candidate the guard accepts (pure function over evaluated reports)."""
    passing = [
        r
        for r in reports
        if check_candidate(
            r,
            original_bytes=original_bytes,
            accuracy_before=accuracy_before,
            tolerance=tolerance,
            min_agreement=min_agreement,
            max_proba_error=max_proba_error,
        )
        is None
    ]
    return min(passing, key=lambda r: r.bytes or 0) if passing else None
