"""Shared fixtures: where the demo data lives, small fitted pipelines, a tiny registry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.config import Settings

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    env = os.environ.get("LEANML_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets")
    return next((c for c in candidates if (c / "clinc150" / "data_full.json").is_file()), None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with clinc150/ and spamassassin/ (LEANML_DATA_DIR or ../shared/datasets)."""
    found = _data_dir()
    if found is None:
        pytest.skip("CLINC150 not found: set LEANML_DATA_DIR to the shared datasets folder")
    return found


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the user's environment: no data dir, cache in tmp, no network."""
    return Settings.load(env={}).replace(
        cache_dir=tmp_path / "cache", models_dir=tmp_path / "models", allow_download=False
    )


SPAM = ["buy cheap pills now", "win money fast click here", "cheap viagra offer today"]
HAM = ["meeting notes attached for monday", "can we review the budget", "lunch at noon tomorrow"]


@pytest.fixture(scope="session")
def tiny_texts() -> tuple[list[str], np.ndarray]:
    X = (SPAM + HAM) * 10
    y = np.array((["spam"] * 3 + ["ham"] * 3) * 10)
    return X, y


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_texts: tuple[list[str], np.ndarray]) -> Pipeline:
    X, y = tiny_texts
    return Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(X, y)


def count_registry_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the artifact folders the registry reads a model from (each a full verify
    and parse), as ``name/version/variant``, in order."""
    import leanml.registry as registry_module

    folders: list[str] = []
    load = registry_module.load_model

    def counted(directory, **kwargs):  # type: ignore[no-untyped-def]
        folders.append("/".join(Path(directory).parts[-3:]))
        return load(directory, **kwargs)

    monkeypatch.setattr(registry_module, "load_model", counted)
    return folders
