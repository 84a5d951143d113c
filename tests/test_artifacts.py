import json
import os
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from leanml import artifacts
from leanml.artifacts import (
    FORMAT_VERSION,
    artifact_loader,
    load_model,
    read_manifest,
    register_loader,
    save_model,
)
from leanml.errors import (
    ArtifactMissingError,
    ChecksumMismatchError,
    ParameterError,
    UnsupportedFormatError,
    UntrustedTypeError,
)

REPO = Path(__file__).resolve().parents[1]


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


# -- loaders by kind: registered, or found through the entry point ------------------------------


class _Toy:
    """A model that writes its own payload under the kind "toy"."""

    leanml_format = "toy"

    def __init__(self, word: str) -> None:
        self.word = word

    def save_payload(self, directory: Path) -> list[str]:
        (directory / "word.txt").write_text(self.word)
        return ["word.txt"]


def _load_toy(directory: Path) -> _Toy:
    return _Toy((directory / "word.txt").read_text())


@pytest.fixture()
def loaders(monkeypatch):
    """The loader table and the entry-point cache as a fresh process has them."""
    monkeypatch.setattr(artifacts, "_LOADERS", {"skops": artifacts._LOADERS["skops"]})
    artifacts._declared_loaders.cache_clear()
    yield artifacts._LOADERS
    artifacts._declared_loaders.cache_clear()


def _declared_compact_entry_point() -> metadata.EntryPoint:
    """The "compact" loader exactly as pyproject.toml declares it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    value = project["entry-points"][artifacts.LOADER_GROUP]["compact"]
    return metadata.EntryPoint(name="compact", value=value, group=artifacts.LOADER_GROUP)


def _fake_entry_points(monkeypatch, found: list[metadata.EntryPoint]) -> list[str]:
    """Make importlib.metadata list ``found`` in the loader group; returns the groups asked."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        asked.append(group)
        return [ep for ep in found if ep.group == group]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    return asked


def test_a_registered_loader_reads_its_kind(tmp_path, loaders, monkeypatch):
    _fake_entry_points(monkeypatch, [])
    folder = tmp_path / "toy"
    manifest = save_model(_Toy("hello"), folder, name="toy", version=1, task="email")
    assert manifest.kind == "toy" and set(manifest.payload) == {"word.txt"}
    register_loader("toy", _load_toy)
    register_loader("toy", _load_toy)  # the same loader again: a no-op
    model, _ = load_model(folder)
    assert isinstance(model, _Toy) and model.word == "hello"
    assert artifact_loader("toy") is _load_toy


def test_an_unknown_kind_is_refused_by_name(tmp_path, loaders, monkeypatch):
    asked = _fake_entry_points(monkeypatch, [])
    folder = tmp_path / "toy"
    save_model(_Toy("hello"), folder, name="toy", version=1, task="email")
    with pytest.raises(UnsupportedFormatError, match=r"No loader for artifact kind 'toy'") as e:
        load_model(folder)
    assert "manifest.json" in str(e.value) and "known kinds: skops" in str(e.value)
    with pytest.raises(UnsupportedFormatError, match="'toy'"):
        load_model(folder)
    assert asked == [artifacts.LOADER_GROUP]  # the entry points are read once per process


def test_register_loader_refuses_bad_arguments_and_a_second_loader(loaders):
    with pytest.raises(ParameterError, match="The 'kind' parameter of register_loader"):
        register_loader("", _load_toy)
    with pytest.raises(ParameterError, match="The 'loader' parameter of register_loader"):
        register_loader("toy", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"got 'skops' instead \(it is read by"):
        register_loader("skops", _load_toy)
    assert artifact_loader("skops") is not _load_toy


def test_a_compact_variant_loads_through_the_declared_entry_point(
    tmp_path, loaders, monkeypatch, tiny_pipeline, tiny_texts
):
    from leanml.compress import CompactModel, to_compact

    compact, _ = to_compact(tiny_pipeline)
    folder = tmp_path / "compact"
    assert save_model(compact, folder, name="m", version=1, task="email").kind == "compact"
    loaders.pop("compact", None)  # as in a process that never imported leanml.compress
    _fake_entry_points(monkeypatch, [_declared_compact_entry_point()])
    model, manifest = load_model(folder)
    assert isinstance(model, CompactModel) and manifest.kind == "compact"
    X, _ = tiny_texts
    np.testing.assert_array_equal(model.predict(X), tiny_pipeline.predict(X))
    assert loaders["compact"] == CompactModel.load_payload  # loaded once, then kept


def test_an_entry_point_that_cannot_load_is_reported(tmp_path, loaders, monkeypatch):
    broken = metadata.EntryPoint(
        name="toy", value="leanml.no_such_module:load", group=artifacts.LOADER_GROUP
    )
    _fake_entry_points(monkeypatch, [broken])
    folder = tmp_path / "toy"
    save_model(_Toy("hello"), folder, name="toy", version=1, task="email")
    with pytest.raises(UnsupportedFormatError, match="toy = 'leanml.no_such_module:load'"):
        load_model(folder)


def _count_listings(monkeypatch) -> list[int]:
    """Count the skops passes that list a payload's untrusted types (each parses it all)."""
    import skops.io as sio

    calls: list[int] = []
    listing = sio.get_untrusted_types

    def counted(**kwargs):
        calls.append(1)
        return listing(**kwargs)

    monkeypatch.setattr(sio, "get_untrusted_types", counted)
    return calls


def test_a_payload_of_default_trusted_types_loads_in_one_pass(
    tmp_path, tiny_pipeline, tiny_texts, monkeypatch
):
    listings = _count_listings(monkeypatch)
    loaded, _ = load_model(_save(tiny_pipeline, tmp_path))
    X, _ = tiny_texts
    np.testing.assert_array_equal(loaded.predict(X), tiny_pipeline.predict(X))
    assert listings == []  # loaded trusting skops' defaults only: never listed first


def test_an_allow_listed_type_is_listed_then_loaded(tmp_path, tiny_texts, monkeypatch):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.tree import DecisionTreeClassifier

    X, y = tiny_texts
    tree = Pipeline([("t", TfidfVectorizer()), ("c", DecisionTreeClassifier(random_state=0))])
    tree.fit(X, y)
    listings = _count_listings(monkeypatch)
    loaded, _ = load_model(_save(tree, tmp_path))  # sklearn.tree._tree.Tree: on the allow-list
    np.testing.assert_array_equal(loaded.predict(X), tree.predict(X))
    assert listings == [1]


def test_an_unreadable_skops_payload_names_its_file(tmp_path, tiny_pipeline):
    folder = _save(tiny_pipeline, tmp_path)
    with pytest.raises(artifacts.ArtifactError, match="not a readable skops payload"):
        artifacts.skops_loads(b"not a zip file", str(folder / "model.skops"))
