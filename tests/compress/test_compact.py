"""CompactModel: scikit-learn compatible, fast single path equal to the batch path, safe load."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, f1_score, log_loss
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from leanml._predict import predict_with_confidence
from leanml.compress import CompactModel, Recipe, to_compact
from leanml.errors import ArtifactError, ArtifactMissingError, UnsupportedFormatError

from .conftest import Texts, roundtrip


@pytest.fixture(scope="module")
def compact_and_pipe(emails: Texts) -> tuple[CompactModel, Pipeline]:
    pipe = Pipeline(
        [("v", TfidfVectorizer(ngram_range=(1, 2), min_df=2)), ("c", LogisticRegression(C=5))]
    ).fit(emails.X_train, emails.y_train)
    compact, _ = to_compact(pipe, Recipe(precision="int8", aux_precision="fp16"))
    return compact, pipe


def test_sklearn_api_and_metrics(compact_and_pipe: tuple, emails: Texts) -> None:
    compact, pipe = compact_and_pipe
    assert list(compact.classes_) == list(pipe.classes_)
    pred = compact.predict(emails.X_test)
    proba = compact.predict_proba(emails.X_test)
    assert proba.shape == (len(emails.X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert accuracy_score(emails.y_test, pred) == pytest.approx(
        compact.score(emails.X_test, emails.y_test)
    )
    f1_score(emails.y_test, pred, average="macro")
    log_loss(emails.y_test, proba, labels=compact.classes_)
    classification_report(emails.y_test, pred, zero_division=0)
    assert compact.decision_function(emails.X_test).shape == (len(emails.X_test), 3)
    np.testing.assert_allclose(np.exp(compact.predict_log_proba(emails.X_test[:5])), proba[:5])
    labels, confidences, _ = predict_with_confidence(compact, emails.X_test[:20])
    assert list(labels) == list(pred[:20]) and np.all(confidences > 0)
    assert list(clone(compact).predict(emails.X_test[:5])) == list(pred[:5])


def test_single_path_equals_batch(compact_and_pipe: tuple, emails: Texts) -> None:
    compact, _ = compact_and_pipe
    docs = emails.X_test[:80] + ["", "zzzz unknown words only"]
    batch_pred = compact.predict(docs)
    batch_proba = compact.predict_proba(docs)
    batch_dec = compact.decision_function(docs)
    for i, doc in enumerate(docs):
        assert compact.predict([doc])[0] == batch_pred[i] == compact.predict_one(doc)
        np.testing.assert_allclose(compact.predict_proba([doc])[0], batch_proba[i], atol=1e-6)
        np.testing.assert_allclose(compact.predict_proba_one(doc), batch_proba[i], atol=1e-6)
        np.testing.assert_allclose(compact.decision_function([doc])[0], batch_dec[i], atol=1e-5)


def test_methods_follow_the_original(emails: Texts) -> None:
    pipe = Pipeline([("v", TfidfVectorizer()), ("c", LinearSVC())]).fit(
        emails.X_train, emails.y_train
    )
    compact, _ = to_compact(pipe)
    assert not hasattr(compact, "predict_proba")  # LinearSVC has none either
    assert hasattr(compact, "decision_function")
    labels, _, _ = predict_with_confidence(compact, emails.X_test[:10])
    assert list(labels) == list(pipe.predict(emails.X_test[:10]))


def test_integer_labels_roundtrip(emails: Texts, tmp_path: Path) -> None:
    y = np.searchsorted(np.unique(emails.y_train), emails.y_train)
    pipe = Pipeline([("v", TfidfVectorizer()), ("c", LogisticRegression())]).fit(emails.X_train, y)
    loaded = roundtrip(to_compact(pipe)[0], tmp_path)
    assert loaded.classes_.dtype.kind == "i"
    assert np.array_equal(loaded.predict(emails.X_test), pipe.predict(emails.X_test))


def test_files_are_npz_and_json_without_pickle(compact_and_pipe: tuple, tmp_path: Path) -> None:
    compact, _ = compact_and_pipe
    loaded = roundtrip(compact, tmp_path)
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert spec["format"] == "leanml-compact" and spec["format_version"] == 1
    with zipfile.ZipFile(tmp_path / "arrays.npz") as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            header = zf.read(info.filename)[:128]
            assert b"'O'" not in header and b"|O" not in header  # no object arrays
    assert loaded.recipe == compact.recipe


def test_load_errors(compact_and_pipe: tuple, tmp_path: Path) -> None:
    compact, _ = compact_and_pipe
    compact.save_payload(tmp_path)
    spec_path = tmp_path / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["format_version"] = 99
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(UnsupportedFormatError, match="newer"):
        CompactModel.load_payload(tmp_path)
    spec_path.write_text("{not json")
    with pytest.raises(ArtifactError, match="JSON"):
        CompactModel.load_payload(tmp_path)
    (tmp_path / "arrays.npz").unlink()
    with pytest.raises(ArtifactMissingError):
        CompactModel.load_payload(tmp_path)


def test_object_arrays_refused(tmp_path: Path, compact_and_pipe: tuple) -> None:
    compact, _ = compact_and_pipe
    compact.save_payload(tmp_path)
    spec = json.loads((tmp_path / "spec.json").read_text())
    name = next(iter(spec["arrays"]))
    spec["arrays"][name][1] = "|O"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match="object"):
        CompactModel.load_payload(tmp_path)
