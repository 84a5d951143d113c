"""Compression of scikit-learn text classifiers behind an accuracy guard.

>>> from leanml.compress import compress
>>> result = compress(pipeline, X_val, y_val)          # doctest: +SKIP
>>> result.model.predict(["win a free cruise"])         # compact model, or the original

Strategies (one module per estimator family) register themselves when this package is
imported: ``text`` (vectorizers), ``linear``, ``naive_bayes``, ``mlp``, ``trees``,
``decomposition`` (TruncatedSVD, StandardScaler, Normalizer) and ``composition`` (Pipeline,
FeatureUnion, ColumnTransformer). ``quantizer`` builds and scores the candidates, ``guard``
holds the verdict rules and the result, ``compact`` the compact model and its file format,
``report`` the size breakdown.
"""

from __future__ import annotations

from leanml.compress import decomposition, linear, mlp, naive_bayes, text, trees  # noqa: F401
from leanml.compress._base import Recipe, register_strategy
from leanml.compress.compact import CompactModel
from leanml.compress.composition import to_compact
from leanml.compress.guard import CandidateReport, CompressionResult
from leanml.compress.quantizer import (
    ModelQuantizer,
    candidate_recipes,
    choose_candidate,
    compress,
    compress_many,
    serialized_size,
)
from leanml.compress.report import size_breakdown

__all__ = [
    "CandidateReport",
    "CompactModel",
    "CompressionResult",
    "ModelQuantizer",
    "Recipe",
    "candidate_recipes",
    "choose_candidate",
    "compress",
    "compress_many",
    "register_strategy",
    "serialized_size",
    "size_breakdown",
    "to_compact",
]
