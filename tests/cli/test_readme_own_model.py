"""Every command of the README's "Your own model" section runs, in order, as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serving.conftest import free_port, wait_for

from leanml.cli import main
from leanml.datasets import read_labelled

REPO = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).replace("\\\n", " ").strip().splitlines()


def _env_and_args(command: str) -> tuple[dict[str, str], list[str]]:
    """``VAR=value ... leanml serve  # comment`` -> ({VAR: value}, ["leanml", "serve"])."""
    words = shlex.split(command, comments=True)
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def test_the_readme_section_runs(tmp_path, monkeypatch):
    commands = [_env_and_args(c) for c in _commands()]
    assert [args[:2] for _, args in commands] == [
        ["leanml", "train"], ["leanml", "compress"], ["leanml", "predict"], ["leanml", "serve"],
        ["curl", "-s"], ["curl", "-s"], ["leanml", "feedback"],
    ]  # fmt: skip
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    for var in [v for v in os.environ if v.startswith("LEANML_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEANML_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for _, args in commands[:3]:
        assert main(args[1:]) == 0, args
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 289
    port = free_port()
    env, args = commands[3]
    serve = [sys.executable, "-m", "leanml.cli", *args[1:], "--port", str(port)]
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        serve, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **env}
    )
    try:

        def run(args: list[str]) -> str:
            args = [a.replace("localhost:8000", f"127.0.0.1:{port}") for a in args]
            return subprocess.run(args, capture_output=True, text=True).stdout

        body = wait_for(lambda: run(commands[4][1]), timeout=60)
        assert body, log.read_text()
        prediction = json.loads(body)
        assert prediction["model"] == "tickets" and prediction["variant"] == "compact"
        assert prediction["predictions"][0]["label"] == "billing"
        pid = prediction["predictions"][0]["id"]
        feedback = [a.replace("<the id it answered>", pid) for a in commands[5][1]]
        assert json.loads(run(feedback))["status"] == "joined"
        # the server writes the prediction's text to the store within store_interval_s
        assert wait_for(lambda: main(commands[6][1][1:]) == 0, timeout=30)
        texts, labels = read_labelled(tmp_path / "feedback.csv")
        assert (texts, labels) == (["I was charged twice this month"], ["billing"])
    finally:
        proc.terminate()
        proc.wait(60)
