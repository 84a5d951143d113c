"""The public surface of leanml.compress matches its __all__; every family has a strategy."""

from __future__ import annotations

import inspect

import leanml.compress as compress
from leanml.compress._base import find_strategy


def test_public_names_match_all() -> None:
    public = {n for n in dir(compress) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if inspect.ismodule(getattr(compress, n))}
    assert public - modules == set(compress.__all__)


def test_every_family_has_a_strategy() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import (
        CountVectorizer,
        HashingVectorizer,
        TfidfTransformer,
        TfidfVectorizer,
    )
    from sklearn.linear_model import (
        LogisticRegression,
        Perceptron,
        RidgeClassifier,
        SGDClassifier,
    )
    from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    supported = [
        CountVectorizer(), TfidfVectorizer(), TfidfTransformer(), HashingVectorizer(),
        LogisticRegression(), SGDClassifier(), LinearSVC(), RidgeClassifier(), Perceptron(),
        MultinomialNB(), ComplementNB(), BernoulliNB(), MLPClassifier(),
        DecisionTreeClassifier(), RandomForestClassifier(), ExtraTreesClassifier(),
        GradientBoostingClassifier(), TruncatedSVD(), StandardScaler(), Normalizer(),
        FeatureUnion([("a", CountVectorizer())]), ColumnTransformer([]),
    ]  # fmt: skip
    for est in supported:
        assert find_strategy(est) is not None, type(est).__name__
    assert find_strategy(Pipeline([("m", SVC())])) is None  # handled by composition itself
    assert find_strategy(SVC()) is None  # passes through
