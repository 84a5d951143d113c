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

REPO = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).replace("\\\n", " ").strip().splitlines()


def test_the_readme_section_runs(tmp_path, monkeypatch):
    commands = _commands()
    assert [c.split()[:2] for c in commands] == [
        ["leanml", "train"], ["leanml", "compress"], ["leanml", "predict"], ["leanml", "serve"],
        ["curl", "-s"],
    ]  # fmt: skip
    for var in [v for v in os.environ if v.startswith("LEANML_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEANML_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for command in commands[:3]:
        assert main(shlex.split(command)[1:]) == 0, command
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 289
    port = free_port()
    serve = [sys.executable, "-m", "leanml.cli", *shlex.split(commands[3])[1:], "--port", str(port)]
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(serve, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        curl = shlex.split(commands[4].replace("localhost:8000", f"127.0.0.1:{port}"))
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")

        def answer() -> str:
            return subprocess.run(curl, capture_output=True, text=True).stdout

        body = wait_for(answer, timeout=60)
        assert body, log.read_text()
        prediction = json.loads(body)
        assert prediction["model"] == "tickets" and prediction["variant"] == "compact"
        assert prediction["predictions"][0]["label"] == "billing"
    finally:
        proc.terminate()
        proc.wait(60)
