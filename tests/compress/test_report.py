"""Size breakdown by component, before and after."""

from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.compress import Recipe, serialized_size, size_breakdown, to_compact

from .conftest import Texts


def test_size_breakdown(emails: Texts) -> None:
    pipe = Pipeline([("v", TfidfVectorizer(min_df=2)), ("c", LogisticRegression())])
    pipe.fit(emails.X_train, emails.y_train)
    compact, _ = to_compact(pipe, Recipe(precision="int8", sparsity=0.5, drop_features=True))
    sizes = size_breakdown(pipe, compact)
    assert {"vocabulary", "idf", "weights"} <= set(sizes["before"])
    assert {"vocabulary", "idf", "weights", "spec"} <= set(sizes["after"])
    assert sizes["before"]["weights"] >= pipe[-1].coef_.nbytes
    for component in ("vocabulary", "idf", "weights"):
        assert sizes["after"][component]["stored"] < sizes["before"][component]
    stored = sum(entry["stored"] for entry in sizes["after"].values())
    assert stored <= serialized_size(compact)  # the zip adds its own headers
    assert size_breakdown(compact)["after"] == sizes["after"]
