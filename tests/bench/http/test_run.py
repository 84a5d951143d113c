"""run_bench (leanml bench http) against a real leanml serve on loopback (small, bounded loads)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leanml.bench.http import BenchConfig, run_bench
from leanml.cli import main
from leanml.registry import ModelRegistry


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline) -> Iterator[tuple[str, int]]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("bench")
    ModelRegistry(tmp / "models").register("tiny", tiny_pipeline, task="spam")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leanml.cli",
            "serve",
            str(tmp / "models"),
            "--port",
            str(port),
            "--store",
            f"sqlite:///{tmp / 'm.db'}",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


TEXTS = ["buy cheap pills now", "meeting notes attached", "win money fast", "lunch at noon"]


def test_closed_loop_python_client(served) -> None:  # type: ignore[no-untyped-def]
    url, pid = served
    r = run_bench(
        BenchConfig(
            url=url,
            model="tiny",
            concurrency=4,
            duration_s=1.0,
            warmup_s=0.2,
            client="python",
            texts=TEXTS,
            duplicates=0.5,
        )
    )
    assert r["client"] == "python" and r["requests"] > 0 and r["rps"] > 0
    assert r["errors"] == {"non_2xx": 0, "socket": 0}
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert r["server_pid"] == pid and r["server_cpu_s"] >= 0 and r["server_rss_mb_max"] > 0
    assert r["client_cpu_cores"] >= 0
    stats = httpx.get(f"{url}/v1/models/tiny/stats").json()
    assert stats["cache"]["hits"] > 0  # the duplicate fraction hit the cache


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_closed_loop_wrk(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    r = run_bench(
        BenchConfig(
            url=url,
            model="tiny",
            concurrency=4,
            duration_s=1.0,
            warmup_s=0,
            client="wrk",
            texts=TEXTS,
        )
    )
    assert r["client"] == "wrk" and r["requests"] > 0
    assert r["errors"]["non_2xx"] == 0 and r["latency_ms"]["p99"] > 0


def test_open_loop_step_pattern_reports_each_step(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    r = run_bench(
        BenchConfig(
            url=url,
            model="tiny",
            mode="open",
            rate=20,
            rate_to=60,
            pattern="step",
            steps=2,
            duration_s=1.0,
            warmup_s=0,
            texts=TEXTS,
        )
    )
    assert r["mode"] == "open" and r["client"] == "python"
    assert [s["target_rps"] for s in r["steps"]] == [20.0, 60.0]
    assert r["steps"][0]["rps"] < r["steps"][1]["rps"]
    assert r["errors"]["non_2xx"] == 0


def test_cli_bench_http_writes_json(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(t) + "\n" for t in TEXTS))
    out = tmp_path / "r.json"
    code = main(
        [
            "bench",
            "http",
            url,
            "--model",
            "tiny",
            "--mode",
            "open",
            "--rate",
            "30",
            "--pattern",
            "ramp",
            "--rate-to",
            "60",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--texts",
            str(texts),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert {"rps", "latency_ms", "errors", "server_cpu_cores", "client_cpu_cores"} <= set(data)
