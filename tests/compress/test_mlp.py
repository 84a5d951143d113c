"""MLPClassifier: int8 weights per neuron, optional dynamic activation quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from leanml.compress import Recipe, to_compact

from .conftest import Texts, agreement, check_strategy, roundtrip


@pytest.fixture(scope="module")
def mlp_pipe(emails: Texts) -> Pipeline:
    vec = TfidfVectorizer(min_df=3, max_features=3000)
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=0)
    return Pipeline([("v", vec), ("mlp", mlp)]).fit(emails.X_train, emails.y_train)


def test_mlp(mlp_pipe: Pipeline, emails: Texts, tmp_path: Path) -> None:
    check_strategy(mlp_pipe, emails, tmp_path, proba_atol=1e-4)


@pytest.mark.parametrize("dynamic", [False, True])
def test_int8_with_and_without_dynamic_activations(
    mlp_pipe: Pipeline, emails: Texts, tmp_path: Path, dynamic: bool
) -> None:
    recipe = Recipe(precision="int8", aux_precision="fp16", dynamic_activations=dynamic)
    loaded = roundtrip(to_compact(mlp_pipe, recipe)[0], tmp_path)
    assert agreement(loaded.predict(emails.X_test), mlp_pipe.predict(emails.X_test)) >= 0.98
    error = np.abs(loaded.predict_proba(emails.X_test) - mlp_pipe.predict_proba(emails.X_test))
    assert error.max() < 0.2


def test_binary_mlp(binary_emails: Texts, tmp_path: Path) -> None:
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=400, random_state=0)
    pipe = Pipeline([("v", TfidfVectorizer(min_df=3, max_features=2000)), ("mlp", mlp)])
    pipe.fit(binary_emails.X_train, binary_emails.y_train)
    check_strategy(pipe, binary_emails, tmp_path, proba_atol=1e-4, guard=False)
