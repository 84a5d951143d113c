"""What an out-of-vocabulary rate counts, for a fitted scikit-learn text vectorizer.

One definition for every place that computes the rate: the training reference
(:func:`leanml.training.oov_rate`), the monitor scoring sampled inputs of a model that does
not count its tokens (:func:`leanml.monitor.monitored` on an original pipeline) and a compact
text model counting them in its one pass (``CompactModel.predict_fused``). With a word
analyzer the tokens are the document's words as the vectorizer makes them (decoded,
preprocessed, tokenized, stop words removed): its unigram terms, whatever n-grams it adds.
Counting its n-grams too made an original pipeline's live rate several times its reference
(most word pairs of any text are unseen), and cost the monitor about four times as much.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sklearn.base import clone

__all__ = ["oov_analyzer", "oov_inputs"]


def oov_analyzer(vectorizer: Any) -> Callable[[str], Sequence[str]]:
    """The tokens of a document whose share outside ``vectorizer.vocabulary_`` is its
    out-of-vocabulary rate: its words for a word analyzer whose terms include them (see the
    module docstring); else (char n-grams, a callable, word n-grams from 2 up) the
    vectorizer's own terms."""
    ngrams = getattr(vectorizer, "ngram_range", (1, 1))
    if getattr(vectorizer, "analyzer", None) == "word" and ngrams[0] == 1:
        return clone(vectorizer).set_params(ngram_range=(1, 1)).build_analyzer()
    return vectorizer.build_analyzer()


def oov_inputs(estimator: Any) -> dict[str, Any]:
    """``analyzer`` (:func:`oov_analyzer`) and ``vocabulary`` of the fitted text vectorizer at
    the head of ``estimator`` (a Pipeline, or the vectorizer itself), the
    :class:`~leanml.monitor.ModelMonitor` arguments that score the out-of-vocabulary rate of
    sampled inputs; ``{}`` when there is none."""
    steps = getattr(estimator, "steps", None)
    head = steps[0][1] if steps else estimator
    vocab = getattr(head, "vocabulary_", None)
    if vocab is None or not hasattr(head, "build_analyzer"):
        return {}
    return {"analyzer": oov_analyzer(head), "vocabulary": vocab}
