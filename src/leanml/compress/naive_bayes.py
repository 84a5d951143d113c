"""Naive Bayes: MultinomialNB, ComplementNB, BernoulliNB as a linear head.

Only what ``predict`` needs is kept: ``feature_log_prob_`` and ``class_log_prior_`` (folded into
one weight matrix and intercept); counts and smoothing statistics are dropped. The joint log
likelihood is linear in the (binarized, for Bernoulli) input:

* Multinomial: ``jll = X @ flp.T + log_prior``;
* Complement: ``jll = X @ flp.T`` (the prior only when there is a single class);
* Bernoulli: ``jll = B @ (flp - log(1 - exp(flp))).T + log_prior + sum(log(1 - exp(flp)))``
  with ``B = X > binarize``.

Probabilities are the softmax of ``jll`` as in scikit-learn. Weights are centered per column
before quantizing (a shift shared by all classes, which the softmax ignores), then stored in
the recipe's precision; error contract as in :mod:`leanml.compress.linear`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

from leanml.compress._base import ConvertContext, Unsupported, register_strategy
from leanml.compress.linear import LinearHead, prune_weights

__all__: list[str] = []


@register_strategy(MultinomialNB, ComplementNB, BernoulliNB)
def _convert_naive_bayes(est: Any, ctx: ConvertContext) -> LinearHead:
    flp = np.asarray(est.feature_log_prob_, dtype=np.float64)
    prior = np.asarray(est.class_log_prior_, dtype=np.float64)
    binarize = None
    if isinstance(est, BernoulliNB):
        neg = np.log1p(-np.exp(flp))
        W, b = flp - neg, prior + neg.sum(axis=1)
        if est.binarize is None:
            raise Unsupported("BernoulliNB(binarize=None) expects binary input; not converted")
        binarize = float(est.binarize)
    elif isinstance(est, ComplementNB):
        W = flp
        b = prior if len(est.classes_) == 1 else np.zeros(flp.shape[0])
    else:
        W, b = flp, prior
    W = prune_weights(W, ctx.recipe, center=True, input_scale=ctx.input_scale)
    return LinearHead(
        W, b, link="softmax", precision=ctx.recipe.precision, binarize=binarize,
        has_decision=False,
    )  # fmt: skip
