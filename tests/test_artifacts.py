import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from leanml.artifacts import FORMAT_VERSION, load_model, read_manifest, save_model
from leanml.errors import (
    ArtifactMissingError,
    ChecksumMismatchError,
    UnsupportedFormatError,
    UntrustedTypeError,
)


def _save(model, tmp_path: Path) -> Path:
    folder = tmp_path / "m" / "1" / "original"
    save_model(model, folder, name="m", version=1, task="email", metrics={"test": {"accuracy": 1}})
    return folder


def test_round_trip_keeps_predictions_and_records_checksums(tmp_path, tiny_pipeline, tiny_texts):
    folder = _save(tiny_pipeline, tmp_path)
    manifest = read_manifest(folder)
    assert manifest.kind == "skops" and manifest.format_version == FORMAT_VERSION
    assert manifest.classes == ["ham", "spam"]
    assert set(manifest.payload) == {"model.skops"}
    assert manifest.payload["model.skops"]["size"] == (folder / "model.skops").stat().st_size
    assert {"python", "scikit-learn", "numpy", "skops"} <= set(manifest.library_versions)
    loaded, _ = load_model(folder)
    X, _ = tiny_texts
    np.testing.assert_array_equal(loaded.predict(X), tiny_pipeline.predict(X))


def test_a_flipped_byte_fails_the_checksum(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    payload = folder / "model.skops"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="model.skops"):
        load_model(folder)


def test_a_type_outside_the_allow_list_is_refused(tmp_path, tiny_texts):
    # os.system inside a FunctionTransformer: loading would let the file run commands.
    evil = Pipeline([("f", FunctionTransformer(func=os.system))])
    folder = _save(evil, tmp_path)
    with pytest.raises(UntrustedTypeError, match="system"):
        load_model(folder)


def test_missing_payload_and_missing_manifest(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    (folder / "model.skops").unlink()
    with pytest.raises(ArtifactMissingError, match="model.skops"):
        load_model(folder)
    with pytest.raises(ArtifactMissingError, match="No manifest"):
        load_model(tmp_path / "elsewhere")


def test_unsupported_format_version(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    manifest_path = folder / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(UnsupportedFormatError, match="format_version"):
        load_model(folder)


def test_payload_path_cannot_escape_the_folder(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    manifest_path = folder / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["payload"]["../outside"] = {"sha256": "0", "size": 1}
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="outside its folder"):
        load_model(folder)


def test_save_replaces_atomically(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    _save(tiny_pipeline, tmp_path)
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
