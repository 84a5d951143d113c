"""Bring your own model and data, through the CLI entry point: train, register, compress,
predict, versions, and every refusal leaving the registry unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from leanml.cli import main
from leanml.datasets import load_file
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


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet", "folder"])
def test_each_kind_of_file_trains_compresses_predicts_and_trains_again(env, capsys, kind):
    data = _as(kind, env)
    models = env / "m"
    assert main(["train", "tickets", "--data", str(data), "--models-dir", str(models)]) == 0
    assert "registered tickets v1 (logreg, tickets)" in capsys.readouterr().out
    stored = ModelRegistry(models).validation_sample("tickets")
    assert stored is not None and len(stored[0]) == 29
    out = env / "c.json"
    assert main(["compress", "tickets", "--json", str(out), "--models-dir", str(models)]) == 0
    row = json.loads(out.read_text())["models"][0]
    assert row["task"] == "tickets" and row["accuracy_original"] > 0.8
    preds = env / "preds.csv"
    args = ["predict", "tickets", "--input", str(TICKETS), "--output", str(preds)]
    assert main([*args, "--batch-size", "50", "--models-dir", str(models)]) == 0
    lines = preds.read_text().splitlines()
    assert lines[0] == "text,label,confidence,id" and len(lines) == 289
    assert main(["monitor", "stats", "--store", f"sqlite:///{env / 'monitor.db'}"]) == 0
    assert "tickets" in capsys.readouterr().out
    assert main(["train", "tickets", "--data", str(data), "--models-dir", str(models)]) == 0
    assert ModelRegistry(models).versions("tickets") == [1, 2]
    assert ModelRegistry(models).serving_version("tickets") == 2


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
