"""``leanml compress`` and ``leanml size`` (src/leanml/cli/compress.py) on a tiny registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from leanml.cli.compress import register
from leanml.compress import CompactModel
from leanml.errors import ParameterError
from leanml.registry import ModelRegistry

from .conftest import Texts


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """leanml (test app)"""

    register(app)
    return app


@pytest.fixture()
def registry(tmp_path: Path, emails: Texts) -> ModelRegistry:
    pipe = Pipeline(
        [("v", TfidfVectorizer(ngram_range=(1, 2), min_df=2)), ("c", LogisticRegression(C=10))]
    ).fit(emails.X_train, emails.y_train)
    reg = ModelRegistry(tmp_path / "models")
    reg.register("email", pipe, task="email", classes=list(pipe.classes_))
    return reg


def test_compress_registers_the_compact_variant(
    app: typer.Typer, registry: ModelRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "compress.json"
    result = CliRunner().invoke(
        app,
        ["compress", "email", "--models-dir", str(registry.root), "--prune", "0,0.9",
         "--json", str(out), "--activate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "leanml compress" in result.output
    row = json.loads(out.read_text())["models"][0]
    for key in (
        "pickle_bytes", "joblib3_bytes", "skops_bytes", "compact_bytes", "accuracy_original",
        "accuracy_compact", "agreement", "single_us_original", "single_us_compact",
        "batch_per_s_compact", "recipe", "fallback_reason", "rejected",
    ):  # fmt: skip
        assert key in row
    assert row["guard_passed"] and row["compact_bytes"] < row["skops_bytes"]
    manifest = registry.manifest("email", variant="compact")
    assert manifest.extra["guard"]["passed"] is True
    loaded = registry.load("email")
    assert loaded.variant == "compact" and isinstance(loaded.model, CompactModel)

    sizes = tmp_path / "sizes.json"
    result = CliRunner().invoke(
        app, ["size", "email", "--models-dir", str(registry.root), "--json", str(sizes)]
    )
    assert result.exit_code == 0, result.output
    breakdown = json.loads(sizes.read_text())
    assert "vocabulary" in breakdown["before"] and "vocabulary" in breakdown["after"]
    assert "vocabulary" in result.output


def test_rejected_model_is_recorded_and_falls_back(
    app: typer.Typer, registry: ModelRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "compress.json"
    result = CliRunner().invoke(
        app,
        ["compress", "--models-dir", str(registry.root), "--precision", "int8",
         "--prune", "0.99", "--min-agreement", "1.0", "--tolerance", "0", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["models"][0]
    assert row["guard_passed"] is False and "no candidate passed" in row["fallback_reason"]
    guard = registry.manifest("email", variant="compact").extra["guard"]
    assert guard["passed"] is False
    loaded = registry.load("email", variant="compact")
    assert loaded.variant == "original" and "guard" in (loaded.fallback_reason or "")


def test_bad_options(app: typer.Typer, registry: ModelRegistry) -> None:
    result = CliRunner().invoke(
        app, ["compress", "--models-dir", str(registry.root), "--precision", "int4"]
    )
    assert isinstance(result.exception, ParameterError)
    result = CliRunner().invoke(
        app, ["compress", "--models-dir", str(registry.root), "--prune", "lots"]
    )
    assert isinstance(result.exception, ParameterError)
