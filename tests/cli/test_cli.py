"""The CLI end to end, through ``leanml.cli.main`` and a real subprocess for the script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import leanml
from leanml.cli import main


@pytest.fixture()
def isolated_env(monkeypatch, tmp_path):
    for var in ("LEANML_CONFIG", "LEANML_MODELS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LEANML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LEANML_ALLOW_DOWNLOAD", "0")
    return tmp_path


def test_errors_exit_non_zero_with_a_message(isolated_env, capsys):
    assert main(["train", "weather", "--models-dir", str(isolated_env / "m")]) == 2
    assert "'task' parameter of load_dataset" in capsys.readouterr().err
    assert main(["models", "show", "nope", "--models-dir", str(isolated_env / "m")]) == 1
    assert "No model named 'nope'" in capsys.readouterr().err
    assert main(["models", "switch", "x", "tiny", "--models-dir", str(isolated_env)]) == 2


def test_bad_setting_is_reported(monkeypatch, capsys):
    monkeypatch.setenv("LEANML_MONITOR_SAMPLING_RATE", "2")
    assert main(["version"]) == 2
    assert "sampling_rate" in capsys.readouterr().err


def test_train_list_show_switch(isolated_env, capsys, monkeypatch):
    models = str(isolated_env / "m")
    monkeypatch.delenv("LEANML_DATA_DIR", raising=False)  # offline: bundled intents
    assert main(["train", "intent", "--estimator", "complementnb", "--models-dir", models]) == 0
    out = capsys.readouterr().out
    assert "registered intent v1 (complementnb, email-intents)" in out
    assert "CLINC150 unavailable" in out
    assert main(["models", "list", "--models-dir", models]) == 0
    assert "intent" in capsys.readouterr().out
    assert main(["models", "show", "intent", "--json", "--models-dir", models]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["variants"]["original"]["artifact_bytes"] > 0
    assert main(["models", "switch", "intent", "compact", "--models-dir", models]) == 0
    assert "cannot serve; serving the original" in capsys.readouterr().out


def test_demo_runs_three_models_and_writes_json(isolated_env, data_dir, monkeypatch):
    """The main job, end to end, through the installed console script."""
    out = isolated_env / "demo.json"
    env = {
        "LEANML_DATA_DIR": str(data_dir),
        "LEANML_CACHE_DIR": str(isolated_env / "cache"),
        "PATH": "/usr/bin:/bin",
        # the leanml under test, not whichever one is installed
        "PYTHONPATH": str(Path(leanml.__file__).resolve().parents[1]),
    }
    cmd = [
        sys.executable, "-m", "leanml.cli", "demo", "--requests", "50",
        "--models-dir", str(isolated_env / "models"), "--json", str(out),
        "--store", f"sqlite:///{isolated_env / 'monitor.db'}",
        "--report-dir", str(isolated_env / "report"),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["models"]
    assert set(results) == {"email", "intent", "sentiment"}
    for key in ("accuracy", "artifact_bytes", "p50_ms", "p95_ms", "p99_ms",
                "predictions_per_s", "dataset"):  # fmt: skip
        assert all(key in r for r in results.values())
    assert results["email"]["accuracy"] >= 0.95
    assert results["intent"]["dataset"] == "clinc150" and results["intent"]["accuracy"] >= 0.88
    assert results["sentiment"]["accuracy"] >= 0.70
    for r in results.values():
        # compressed behind the guard, registered, and serving
        compact = r["variants"]["compact"]
        assert r["served_variant"] == "compact" and r["compression"]["guard_passed"]
        assert compact["artifact_bytes"] * 10 <= r["artifact_bytes"]
        assert compact["accuracy"] >= r["accuracy"] - 0.01
        # monitoring: labels joined by id, every missing one accounted for
        monitoring = r["monitoring"]
        assert monitoring["ground_truth"]["joined"] + monitoring["labels_missing"] <= 50
        assert monitoring["joined_accuracy"] is not None
        # the simulated day: its drift detected, the report's charts drawn from it
        day = r["day"]
        assert day["predictions"] > 10_000 and day["drift"]["detection_s"] is not None
    assert results["email"]["day"]["alerts_resolved"] >= 1
    assert (isolated_env / "report" / "email-throughput.json").is_file()
    assert "leanml demo" in done.stdout
    report = isolated_env / "report" / "report.html"
    assert report.is_file() and "Model health" in report.read_text()
    # a second run reuses the registered models and their compact variants
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    second = json.loads(out.read_text())["models"]
    assert {r["model"] for r in second.values()} == {"reused"}
    assert all(r["compression"] is None for r in second.values())


def test_serve_runs_the_full_app_with_the_switches_as_overrides(
    isolated_env, monkeypatch, tiny_pipeline
):
    import leanml.app
    from leanml.registry import ModelRegistry

    calls = []
    monkeypatch.setattr(leanml.app, "run", lambda **kw: calls.append(kw))
    models = str(isolated_env / "m")
    ModelRegistry(models).register("tiny", tiny_pipeline, task="tiny")
    args = ["serve", models, "--port", "8123", "--workers", "2", "--no-cache", "--no-batching"]
    assert main([*args, "--variant", "compact"]) == 0
    assert main(["serve", models]) == 0
    (switched, default) = calls
    assert switched["port"] == 8123 and switched["workers"] == 2
    assert switched["models_dir"] == models
    assert switched["serving"] == {
        "cache_max_entries": 0,
        "max_batch_size": 1,
        "variant": "compact",
    }
    assert default["serving"] == {} and default["port"] == 8000
