"""A server follows promotions and rollbacks; a server whose models all failed is not ready."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from leanml.registry import ModelRegistry

from .conftest import CONFIG, free_port, running, wait_for


@pytest.mark.slow  # a real server and two registry watches: about 25 s on the 2-core machine
def test_a_running_server_follows_promote_and_rollback(tmp_path, tiny_pipeline):
    from leanml.cli import main

    models = tmp_path / "m"
    registry = ModelRegistry(models)
    for _ in range(2):
        registry.register("tiny", tiny_pipeline, task="t")
    store = f"sqlite:///{tmp_path / 'monitor.db'}"
    with running(models, store, tmp_path) as server, server.client() as client:

        def served() -> int:
            body = client.post("/v1/models/tiny/predict", json={"inputs": ["cheap pills"]})
            return int(body.json()["version"])

        assert served() == 2
        assert main(["models", "promote", "tiny", "1", "--models-dir", str(models)]) == 0
        assert wait_for(lambda: served() == 1)
        assert main(["models", "rollback", "tiny", "--models-dir", str(models)]) == 0
        assert wait_for(lambda: served() == 2)


def test_a_server_whose_models_all_failed_is_not_ready(tmp_path, tiny_pipeline):
    models = tmp_path / "m"
    ModelRegistry(models).register("tiny", tiny_pipeline, task="t")
    payload = models / "tiny" / "1" / "original" / "model.skops"
    payload.write_bytes(payload.read_bytes() + b"tampered")
    port = free_port()
    cfg = tmp_path / "serve.toml"
    cfg.write_text(CONFIG)
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "leanml.cli", "serve", str(models), "--port", str(port)]
    cmd += ["--store", f"sqlite:///{tmp_path / 'monitor.db'}", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=os.environ)
    try:
        assert wait_for(lambda: "not ready" in log.read_text(), timeout=60), log.read_text()
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _status(url + "/health") is not None, timeout=30)
        assert _status(url + "/health") == 503
        assert _status(url + "/v2/health/ready") == 503
        assert "sha256" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(60)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
