"""Bring your own model and data, through the CLI entry point: train, register, compress,
predict, versions, and every refusal leaving the registry unchanged."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.serving.conftest import CONFIG, Server, running, wait_for

from leanml._ids import is_sampled
from leanml.cli import main
from leanml.datasets import load_file, read_labelled
from leanml.monitor._redact import redact
from leanml.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "tickets.csv"


class Shout(BaseEstimator, TransformerMixin):
    """A user's own transformer: a type outside leanml's allow-list."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return [x.upper() for x in X]


@pytest.fixture()
def env(monkeypatch, tmp_path):
    for var in ("LEANML_CONFIG", "LEANML_MODELS_DIR", "LEANML_TRUSTED_TYPES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LEANML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LEANML_STORE_URL", f"sqlite:///{tmp_path / 'monitor.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _as(kind: str, folder: Path) -> Path:
    """The shipped tickets as a CSV, JSONL, Parquet file or class-folder tree."""
    texts, labels = [], []
    ds = load_file(TICKETS)
    for X, y in ((ds.X_train, ds.y_train), (ds.X_val, ds.y_val), (ds.X_test, ds.y_test)):
        texts += X
        labels += y.tolist()
    if kind == "csv":
        return Path(shutil.copy(TICKETS, folder / "tickets.csv"))
    if kind == "jsonl":
        path = folder / "tickets.jsonl"
        path.write_text(
            "".join(
                json.dumps({"text": t, "label": y}) + "\n"
                for t, y in zip(texts, labels, strict=True)
            )
        )
        return path
    if kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        path = folder / "tickets.parquet"
        pq.write_table(pa.table({"text": texts, "label": labels}), path)
        return path
    tree = folder / "tickets"
    for i, (t, y) in enumerate(zip(texts, labels, strict=True)):
        (tree / y).mkdir(parents=True, exist_ok=True)
        (tree / y / f"{i}.txt").write_text(t)
    return tree


#: each kind of training file, and the kind of file its feedback is exported as
CHAINS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "folder": ".csv"}


@dataclasses.dataclass
class Chain:
    root: Path
    models: Path
    store: str
    server: Server
    files: dict[str, Path]


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Iterator[Chain]:
    """The tickets as each kind of file, trained and compressed (``leanml train``, ``leanml
    compress``) as four models of one registry, served by one ``leanml serve``."""
    root = tmp_path_factory.mktemp("chain")
    models, store = root / "m", f"sqlite:///{root / 'monitor.db'}"
    files = {kind: _as(kind, root) for kind in CHAINS}
    # the servers of tests/serving keep every second prediction's text (sampling_rate 0.5,
    # deterministic in the id): the export both keeps and skips rows. The export reads the
    # same settings, for its hint.
    (root / "chain.toml").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith("LEANML_")]:
            mp.delenv(var)
        mp.setenv("LEANML_CACHE_DIR", str(root / "cache"))
        trained = [(f"t_{kind}", data) for kind, data in files.items()]
        for name, data in [*trained, ("t_life", files["csv"])]:  # t_life: test_lifecycle...
            args = ["train", name, "--data", str(data), "--models-dir", str(models)]
            assert main(args) == 0
        stored = ModelRegistry(models).validation_sample("t_csv")
        assert stored is not None and len(stored[0]) == 29
        report = root / "compress.json"
        args = [
            "compress",
            "--activate",
            "--confidence",
            "0",
            "--json",
            str(report),
            "--models-dir",
            str(models),
        ]
        assert main(args) == 0
        rows = json.loads(report.read_text())["models"]
        assert sorted(r["task"] for r in rows) == sorted([*(f"t_{k}" for k in CHAINS), "t_life"])
        assert all(r["accuracy_original"] > 0.8 for r in rows)
        with running(models, store, root) as server:
            yield Chain(root, models, store, server, files)


def _tickets() -> tuple[list[str], list[str]]:
    texts, labels = read_labelled(TICKETS)
    return texts, labels


@pytest.mark.parametrize("kind", CHAINS)
def test_each_kind_of_file_goes_from_training_to_training_again(chain, capsys, kind):
    """train -> compress (the fixture) -> serve -> predict -> feedback -> export -> train."""
    name, models = f"t_{kind}", str(chain.models)
    texts, labels = _tickets()
    preds = chain.root / f"{name}-predictions.csv"
    args = ["predict", name, "--input", str(chain.files[kind]), "--output", str(preds)]
    assert main([*args, "--store", chain.store, "--models-dir", models]) == 0
    assert len(preds.read_text().splitlines()) == 289
    ids: list[str] = []
    with chain.server.client() as client:  # at most 16 texts, 20 labels a request (CONFIG)
        for start in range(0, 288, 16):
            batch = {"inputs": texts[start : start + 16]}
            r = client.post(f"/v1/models/{name}/predict", json=batch)
            assert r.status_code == 200, r.text
            assert (r.json()["version"], r.json()["variant"]) == (1, "compact")
            ids += [p["id"] for p in r.json()["predictions"]]
        items = [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
        for start in range(0, 288, 20):
            r = client.post(
                f"/v1/models/{name}/feedback", json={"items": items[start : start + 20]}
            )
            assert r.status_code == 200, r.text
            assert {item["status"] for item in r.json()["items"]} == {"joined"}
    sampled = {i for i in ids if is_sampled(i, 0.5)}
    assert 100 < len(sampled) < 188  # both kept and skipped rows
    out = chain.root / f"{name}-feedback{CHAINS[kind]}"
    export = ["--config", str(chain.root / "chain.toml"), "feedback", "export", name]
    export += ["--out", str(out), "--store", chain.store]
    export += ["--models-dir", models]

    def exported() -> str | None:  # the server writes sampled predictions every 0.2 s
        code = main(export)  # 1 (nothing written) until the first of them are in
        said = capsys.readouterr().out
        return said if code == 0 and f"({len(sampled)} with their text)" in said else None

    said = wait_for(exported, timeout=30)
    assert said is not None, "the sampled predictions never reached the store"
    assert f"wrote {len(sampled)} labelled predictions of {name} to {out}" in said
    skipped = 288 - len(sampled)
    assert f"skipped {skipped} of the 288 labelled predictions: their text is not stored" in said
    assert "sampling_rate is 0.5" in said
    got_texts, got_labels = read_labelled(out)
    truth = dict(zip(ids, zip(texts, labels, strict=True), strict=True))
    expected = sorted((redact(truth[i][0]), truth[i][1]) for i in sampled)
    assert sorted(zip(got_texts, got_labels, strict=True)) == expected
    assert main(["train", name, "--data", str(out), "--models-dir", models]) == 0
    assert f"registered {name} v2 (logreg, {out.stem})" in capsys.readouterr().out
    assert ModelRegistry(chain.models).serving_version(name) == 2


def test_a_running_server_follows_promotions_as_it_follows_variant_switches(chain, capsys):
    """``leanml models promote|rollback|switch`` on the registry; the server serving it follows
    each (its registry watch: 0.5 s here) without a restart or an admin call."""
    models = ["--models-dir", str(chain.models)]
    data = str(chain.files["csv"])
    with chain.server.client() as client:

        def served() -> tuple[int, str]:
            r = client.post("/v1/models/t_life/predict", json={"inputs": ["refund my order"]})
            return int(r.json()["version"]), str(r.json()["variant"])

        assert served() == (1, "compact")
        assert main(["train", "t_life", "--data", data, *models]) == 0  # v2, promoted
        # the active variant is compact (compress --activate), which v2 lacks: its original
        assert wait_for(lambda: served() == (2, "original"))
        assert main(["models", "promote", "t_life", "1", *models]) == 0
        assert wait_for(lambda: served() == (1, "compact"))
        assert main(["models", "switch", "t_life", "original", *models]) == 0
        assert wait_for(lambda: served() == (1, "original"))
        assert main(["models", "rollback", "t_life", *models]) == 0
        assert wait_for(lambda: served() == (2, "original"))
    assert "rolled back to v2 (was v1)" in capsys.readouterr().out


def test_report_dashboard_and_v2_metadata_show_a_users_model(chain):
    with chain.server.client() as client:
        r = client.get("/v2/models/t_jsonl")
        assert r.status_code == 200 and r.json()["name"] == "t_jsonl"
        assert r.json()["outputs"][-1]["shape"] == [-1, 4]  # its four classes
        r = client.get("/dashboard/data.json")
        assert r.status_code == 200 and "t_jsonl" in r.text
    out = chain.root / "report"
    args = ["report", "--store", chain.store, "--models-dir", str(chain.models), "--out", str(out)]
    assert main([*args, "--models", "t_jsonl"]) == 0
    assert "t_jsonl" in (out / "report.html").read_text()


def test_size_and_show_work_on_a_model_of_the_users_data(env, capsys):
    models = str(env / "m")
    assert main(["train", "t", "--data", str(TICKETS), "--models-dir", models]) == 0
    # 29 validation rows: the guard's point estimates (the default bounds need ~170 rows)
    assert main(["compress", "t", "--activate", "--confidence", "0", "--models-dir", models]) == 0
    assert main(["size", "t", "--models-dir", models]) == 0
    assert "vocabulary" in capsys.readouterr().out
    assert main(["models", "show", "t", "--json", "--models-dir", models]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "t" and report["serving_version"] == 1
    assert report["variants"]["compact"]["guard"]["passed"] is True


def _fitted(ds, extra_step=None) -> Pipeline:
    steps = [("shout", extra_step)] if extra_step is not None else []
    steps += [("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(C=10))]
    return Pipeline(steps).fit(ds.X_train, ds.y_train)


def _val_csv(ds, path: Path) -> Path:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(ds.X_val, ds.y_val.tolist(), strict=True))
    return path


def test_register_an_allow_listed_skops_file(env, capsys):
    ds = load_file(TICKETS)
    sio.dump(_fitted(ds), env / "model.skops")
    val = _val_csv(ds, env / "val.csv")
    models = str(env / "m")
    args = ["register", "mine", str(env / "model.skops"), "--validation", str(val)]
    assert main([*args, "--test", str(TICKETS), "--models-dir", models]) == 0
    out = capsys.readouterr().out
    assert "registered mine v1 (Pipeline from model.skops)" in out
    assert "validation sample 29 rows" in out
    manifest = ModelRegistry(models).manifest("mine")
    assert manifest.metrics["val"]["n"] == 29 and manifest.metrics["test"]["n"] == 288
    assert manifest.extra["reference"]["n"] == 29
    assert main(["compress", "mine", "--models-dir", models]) == 0


def test_an_extra_type_is_refused_then_accepted_with_trust(env, capsys):
    ds = load_file(TICKETS)
    sio.dump(_fitted(ds, Shout()), env / "shout.skops")
    val = _val_csv(ds, env / "val.csv")
    models = env / "m"
    args = ["register", "loud", str(env / "shout.skops"), "--validation", str(val)]
    args += ["--models-dir", str(models)]
    assert main(args) == 1
    err = capsys.readouterr().err
    kind = f"{Shout.__module__}.Shout"
    assert f"untrusted types, outside leanml's allow-list: {kind}" in err
    assert f"--trust {kind}" in err and "trusted_types" in err
    assert _snapshot(models) == []
    assert main([*args, "--trust", kind]) == 0
    assert "--trust applies to this command only" in capsys.readouterr().out
    # serving, compressing... needs the operator's setting: the artifact never says "trust me"
    with pytest.raises(Exception, match="untrusted types"):
        ModelRegistry(models).load("loud")
    assert ModelRegistry(models, trusted_types=[kind]).load("loud").model.predict(["x"])[0]


def test_pickle_and_joblib_files_are_refused_with_the_conversion(env, capsys):
    ds = load_file(TICKETS)
    joblib.dump(_fitted(ds), env / "model.joblib")
    val = _val_csv(ds, env / "val.csv")
    models = env / "m"
    args = ["register", "j", str(env / "model.joblib"), "--validation", str(val)]
    assert main([*args, "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert "pickle and joblib files are never loaded" in err
    assert "s.dump(joblib.load(" in err and "model.skops" in err
    assert _snapshot(models) == []


def test_no_pickle_or_joblib_load_in_the_package():
    import ast

    for path in (REPO / "src" / "leanml").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                called = f"{node.value.id}.{node.attr}"
                assert called not in {"pickle.load", "pickle.loads", "joblib.load"}, path


@pytest.mark.parametrize(
    "content,extra,message",
    [
        ("", [], "holds no rows"),
        ("body,label\nhi,a\n", [], "has no column 'text' (columns found: 'body', 'label')"),
        ("text,label\nhi,a\n,b\n", [], "line 3, column 'text': the text is empty"),
        ("text,label\nhi,a\nho,\n", [], "line 3, column 'label': the label is missing"),
        ("text,label\n" + "x,a\n" * 5 + "y,b\n" * 2, [], "class 'b' has 2 examples"),
        ("text,label\nx,a\n", ["--estimator", "nope"], "'estimator' parameter"),
        ("text,label\nx,a\n", ["--encoding", "nope"], "Unknown encoding 'nope'"),
    ],
)
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    env, capsys, content, extra, message
):
    models = env / "m"
    ModelRegistry(models).register("other", _fitted(load_file(TICKETS)), task="x")
    before = _snapshot(models)
    data = env / "bad.csv"
    data.write_text(content)
    args = ["train", "new", "--data", str(data), *extra, "--models-dir", str(models)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and (str(data) in err or "estimator" in message)
    assert _snapshot(models) == before


@pytest.mark.parametrize(
    "validation,extra,message",
    [
        ("body,label\nhi,billing\n", [], "has no column 'text' (columns found: 'body', 'label')"),
        ("text,label\nhi,billing\nho,\n", [], "line 3, column 'label': the label is missing"),
        ("text,label\nhi,nosuchclass\n", [], "'y_val' parameter of register"),
        ("text,label\nhi,billing\n", ["--test", "missing.csv"], "No such data file"),
        ("text,label\nhi,billing\n", ["--text-column", "body"], "has no column 'body'"),
    ],
)
def test_register_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    env, capsys, validation, extra, message
):
    ds = load_file(TICKETS)
    sio.dump(_fitted(ds), env / "model.skops")
    models = env / "m"
    ModelRegistry(models).register("other", _fitted(ds), task="x")
    before = _snapshot(models)
    val = env / "val.csv"
    val.write_text(validation)
    args = ["register", "mine", str(env / "model.skops"), "--validation", str(val), *extra]
    assert main([*args, "--models-dir", str(models)]) == 2
    assert message in capsys.readouterr().err
    assert _snapshot(models) == before


def test_latin1_data_is_refused_with_the_offset_then_read_with_encoding(env, capsys):
    data = env / "latin.csv"
    data.write_bytes(TICKETS.read_bytes().replace(b"March", b"M\xe4rz"))
    models = str(env / "m")
    assert main(["train", "t", "--data", str(data), "--models-dir", models]) == 2
    assert "is not valid UTF-8: byte offset" in capsys.readouterr().err
    assert (
        main(["train", "t", "--data", str(data), "--encoding", "latin-1", "--models-dir", models])
        == 0
    )


def test_promote_rollback_delete(env, capsys):
    models = str(env / "m")
    for _ in range(3):
        assert main(["train", "t", "--data", str(TICKETS), "--models-dir", models]) == 0
    registry = ModelRegistry(models)
    assert registry.serving_version("t") == 3
    assert main(["models", "promote", "t", "1", "--models-dir", models]) == 0
    assert "now serving v1 (was v3)" in capsys.readouterr().out
    assert registry.load("t").version == 1
    assert main(["models", "delete", "t", "1", "--models-dir", models]) == 2
    assert "must not be the serving version" in capsys.readouterr().err
    assert main(["models", "rollback", "t", "--models-dir", models]) == 0
    assert "rolled back to v3 (was v1)" in capsys.readouterr().out
    assert main(["models", "delete", "t", "1", "--models-dir", models]) == 0
    assert registry.versions("t") == [2, 3]
    assert main(["models", "rollback", "t", "--models-dir", models]) == 0
    assert registry.serving_version("t") == 2
    assert main(["models", "rollback", "t", "--models-dir", models]) == 1
    assert "no earlier version to roll back to" in capsys.readouterr().err
    assert main(["models", "promote", "t", "9", "--models-dir", models]) == 1


def test_honest_exits(env, capsys):
    models = str(env / "m")
    assert main(["compress", "nosuch", "--models-dir", models]) == 1
    out = capsys.readouterr().out
    assert "No model named 'nosuch'" in out  # in the table, printed before exiting 1
    assert main(["compress", "email", "--tolerance", "-1", "--models-dir", models]) == 2
    assert "'tolerance' parameter of leanml compress" in capsys.readouterr().err
    assert main(["serve", str(env / "empty")]) == 2
    err = capsys.readouterr().err
    assert str(env / "empty") in err and "leanml train NAME --data FILE" in err
    assert main(["predict", "x", "--input", str(TICKETS), "--output", "p.xlsx"]) == 2
    assert main(["train", "bad name", "--data", str(TICKETS), "--models-dir", models]) == 2


def test_python_register_api(env, tmp_path):
    import leanml

    ds = load_file(TICKETS)
    manifest = leanml.register(
        "py", _fitted(ds), ds.X_val, ds.y_val, X_test=ds.X_test, y_test=ds.y_test,
        models_dir=tmp_path / "m",
    )  # fmt: skip
    assert manifest.version == 1 and manifest.metrics["test"]["n"] == 58
    with pytest.raises(leanml.LeanMLError, match="'y_val' parameter of register"):
        leanml.register("py", _fitted(ds), ds.X_val, ["zzz"] * 29, models_dir=tmp_path / "m")
    with pytest.raises(leanml.LeanMLError, match="untrusted types"):
        leanml.register("py", _fitted(ds, Shout()), ds.X_val, ds.y_val, models_dir=tmp_path / "m")
    assert ModelRegistry(tmp_path / "m").versions("py") == [1]
    np.testing.assert_array_equal(
        ModelRegistry(tmp_path / "m").load("py").model.predict(ds.X_test[:5]),
        _fitted(ds).predict(ds.X_test[:5]),
    )
