"""Issue #20's defects 1-5, each with the request that showed it.

In process (``httpx.ASGITransport``): model info never loads a model, the store outage, the
failed-write log rate, error bodies. Against ``leanml serve`` (raw sockets where the HTTP layer
is the subject): header size and read timeouts, the connection cap, V2 bad rows on a kept-alive
connection, 405 ``Allow``, JSON everywhere, admin auth before the body, 413 drained,
``promtool check metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from leanml.config import ServingConfig, Settings
from leanml.monitor import MonitorConfig
from leanml.registry import ModelRegistry
from leanml.serving import ServeApp, create_app

from .conftest import (
    Server,
    admin_headers,
    make_registry,
)
from .conftest import connect as _connect
from .conftest import read_all as _read_all

P = "/v1/models/intent/predict"
F = "/v1/models/intent/feedback"
#: what an outage's exception names: never in an answer
SECRET_HOST = "db-internal.example"
OUTAGE = OperationalError(
    "SELECT 1",
    {},
    Exception(f'connection to server at "{SECRET_HOST}" (10.9.8.7), port 5433 failed'),
)


# ---------------------------------------------------------------------------- in process
@pytest.fixture
def app(tmp_path: Path, intent_models: Any) -> ServeApp:
    settings = Settings.load().replace(
        models_dir=str(make_registry(tmp_path / "reg", intent_models)),
        store_url=f"sqlite:///{tmp_path / 'monitor.db'}",
    )
    config = ServingConfig(max_body_bytes=65536, feedback_timeout_s=0.2, poll_interval_s=0.05)
    return create_app(settings, config, MonitorConfig(flush_interval_s=0.05))


def _run(app: ServeApp, body: Any) -> Any:
    """Start the service, run ``body(client)``, stop the service."""

    async def main() -> Any:
        await app.service.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        try:
            return await body(client)
        finally:
            await client.aclose()
            await app.service.stop()

    return asyncio.run(main())


def test_model_info_never_loads_a_model(app: ServeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 1: GET /v1/models/{name} (no token) loaded every variant to build its report."""
    loads: list[str] = []
    real = ModelRegistry._load_exact

    def counting(self: ModelRegistry, *args: Any, **kw: Any) -> Any:
        loads.append(args[0])
        return real(self, *args, **kw)

    monkeypatch.setattr(ModelRegistry, "_load_exact", counting)

    async def six_at_once(client: httpx.AsyncClient) -> list[httpx.Response]:
        loads.clear()  # the startup load is the one load
        return await asyncio.gather(*(client.get("/v1/models/intent") for _ in range(6)))

    answers = _run(app, six_at_once)
    assert loads == []
    for r in answers:
        info = r.json()
        assert r.status_code == 200
        assert set(info["variants"]) == {"original", "compact"}
        served = info["variants"][info["variant"]]
        assert served["load_seconds"] >= 0 and served["memory_bytes"] > 0
        assert info["variants"]["compact"]["artifact_bytes"] > 0
        assert info["guard"]["passed"] is True


def test_store_outage_serves_local_figures_and_names_no_infrastructure(
    app: ServeApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 4: /metrics and /stats answered 500, feedback 503 bodies named the database,
    the log had one traceback per failed write."""

    async def outage(client: httpx.AsyncClient) -> tuple[Any, ...]:
        ids = [
            p["id"]
            for p in (await client.post(P, json={"inputs": ["a", "b"]})).json()["predictions"]
        ]
        store, fb = app.service.store, app.service.feedback_log
        assert store is not None and fb is not None

        def down(*args: Any, **kw: Any) -> Any:
            raise OUTAGE

        monkeypatch.setattr(store, "merged", down)
        monkeypatch.setattr(fb, "_commit", down)
        metrics = await client.get("/metrics")
        stats = await client.get("/v1/models/intent/stats")
        feedback = [await client.post(F, json={"id": ids[0], "label": "reply"}) for _ in range(40)]
        monkeypatch.undo()  # the store is back: no restart needed
        back = await client.post(F, json={"id": ids[1], "label": "reply"})
        metrics_back = await client.get("/metrics")
        return metrics, stats, feedback, back, metrics_back

    with caplog.at_level(logging.WARNING, logger="leanml"):
        metrics, stats, feedback, back, metrics_back = _run(app, outage)
    assert metrics.status_code == 200
    assert "leanml_store_up 0" in metrics.text.replace("{}", "")
    assert "leanml_predictions_total" in metrics.text  # local figures still there
    assert stats.status_code == 200
    assert stats.json()["store_up"] is False and stats.json()["serving"]["predictions"] == 2
    for r in feedback:
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"] == "unavailable"
        assert SECRET_HOST not in r.text and "5433" not in r.text
    assert back.status_code == 200 and back.json()["status"] == "joined"
    assert "leanml_store_up 1" in metrics_back.text.replace("{}", "")
    failed = [r for r in caplog.records if r.getMessage().startswith("feedback write failed")]
    assert 1 <= len(failed) <= 5  # 40 failed writes, a bounded number of log records


def test_stats_show_no_store_url_or_host_pid(app: ServeApp) -> None:
    async def ask(client: httpx.AsyncClient) -> httpx.Response:
        await client.post(P, json={"inputs": ["hello"]})
        return await client.get("/v1/models/intent/stats")

    r = _run(app, ask)
    assert r.status_code == 200
    assert socket.gethostname() not in r.text and "sqlite" not in r.text
    assert r.json()["store_up"] is True and r.json()["merged"]["processes"] >= 0


# ---------------------------------------------------------------------------- served


def _json_error(raw: bytes, status: int) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), raw[:200]
    assert b"content-type: application/json" in head.lower()
    assert body.startswith(b'{"error":')


def test_header_size_limit(limited: Server) -> None:
    """Defect 2: a never-ending header grew memory; now 431 past max_header_bytes."""
    with _connect(limited) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: ")
        for _ in range(2):  # 8.4 kB of a header that never ends, in two reads
            s.sendall(b"a" * 4200)
            time.sleep(0.05)
        _json_error(_read_all(s), 431)
    with _connect(limited) as s:  # many headers in one read
        s.sendall(b"GET /health HTTP/1.1\r\n" + b"X-A: bbbbbbbbbbbbbbbbbbbb\r\n" * 600 + b"\r\n")
        _json_error(_read_all(s), 431)


def test_header_and_body_read_timeouts(limited: Server) -> None:
    """Defect 2: half-sent requests stayed open, an incomplete body got no answer."""
    with _connect(limited) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        _json_error(_read_all(s), 408)
    with _connect(limited) as s:
        s.sendall(f'POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"in'.encode())
        _json_error(_read_all(s), 408)
    with _connect(limited) as s:  # a connection that never sends anything is closed
        assert _read_all(s) == b""


def test_connection_cap_answers_json_503(limited: Server) -> None:
    """Past max_connections a request gets a JSON 503 with Retry-After; the half-sent
    connections holding the slots are closed by the header timeout, then requests pass."""
    idle = [_connect(limited) for _ in range(60)]
    try:
        for s in idle:
            s.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(0.3)
        r = httpx.get(f"{limited.url}/v1/models", timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "unavailable"
    finally:
        for s in idle:
            s.close()
    assert httpx.get(f"{limited.url}/v1/models", timeout=10).status_code == 200


@pytest.mark.parametrize("second", [5, None, True, ["b"]])
def test_v2_bad_rows_are_4xx_and_keep_the_connection(server: Server, second: Any) -> None:
    """Defect 3: [["a"], 5] (or null, true) answered 500 and closed the connection."""
    body = {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": [["a"], second]}]}
    if second == ["b"]:  # a well-formed [2, 1] tensor, for contrast
        body["inputs"][0]["data"] = ["a", ["b"]]
    with server.client() as c:
        r = c.post("/v2/models/intent/infer", json=body)
        assert r.status_code == 422, r.text
        assert "error" in r.json() and r.headers.get("connection") != "close"
        assert c.get("/v2/health/live").status_code == 200  # same connection, still open


def test_405_carries_allow(server: Server) -> None:
    with server.client() as c:
        for method, path, allow in (
            ("GET", P, "POST"),
            ("DELETE", "/v1/models/intent", "GET, HEAD"),
            ("POST", "/metrics", "GET, HEAD"),
            ("HEAD", P, "POST"),
            ("GET", "/v2/models/intent/infer", "POST"),
        ):
            r = c.request(method, path)
            assert r.status_code == 405 and r.headers["allow"] == allow, (method, path)
            if method != "HEAD":
                assert r.json()["error"] in ("method_not_allowed", "Method Not Allowed")  # V2


def test_head_answers_like_get_without_a_body(server: Server) -> None:
    """HTTP requires HEAD wherever GET is: same status and headers, no body (#20)."""
    with server.client() as c:
        for path in (
            "/health",
            "/metrics",
            "/v1/models",
            "/v1/models/intent",
            "/v1/models/intent/stats",
            "/v2/health/ready",
            "/v2/models/intent",
            "/openapi.json",
            "/v1/models/nope",
        ):
            get, head = c.get(path), c.head(path)
            assert head.status_code == get.status_code, (path, head.status_code)
            assert head.content == b"", path
            assert head.headers["content-type"] == get.headers["content-type"], path
            if path in ("/v1/models", "/openapi.json"):  # a fixed body: the same length
                assert head.headers["content-length"] == get.headers["content-length"], path
        assert c.get("/health").status_code == 200  # the connection is still usable


def test_v2_health_and_readiness_have_json_bodies(server: Server) -> None:
    with server.client() as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2/models/intent/ready").json() == {"name": "intent", "ready": True}
        assert c.get("/v2/models/intent/versions/1/ready").json()["ready"] is True
        for path in ("/v2/models/nope/ready", "/v2/models/intent/versions/9/ready"):
            r = c.get(path)
            assert r.status_code == 404 and "error" in r.json()


def test_errors_are_json_everywhere(limited: Server) -> None:
    """Unparsable requests (uvicorn's own 400) and unknown routes answer JSON."""
    for raw in (b"\x00\x01 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"):
        with _connect(limited) as s:
            s.sendall(raw)
            _json_error(_read_all(s), 400)
    with httpx.Client(base_url=limited.url) as c:
        for path in ("/nope", "/v1/models/nope", "/v2/models/nope", "/v1/models/nope/stats"):
            r = c.get(path)
            assert r.status_code == 404 and r.headers["content-type"] == "application/json"


def test_admin_token_is_checked_before_the_body(server: Server) -> None:
    with server.client() as c:
        for method, path in (
            ("PUT", "/v1/models/intent/variant"),
            ("PATCH", "/v1/monitoring/config"),
            ("POST", "/v1/models/intent/reload"),
        ):
            assert c.request(method, path, content=b"{bad").status_code == 401
            r = c.request(method, path, content=b"{bad", headers=admin_headers("wrong"))
            assert r.status_code == 403
            big = b"x" * 70_000  # past max_body_bytes: still auth first
            assert c.request(method, path, content=big).status_code == 401
        r = c.put("/v1/models/intent/variant", content=b"{bad", headers=admin_headers())
        assert r.status_code in (400, 422) and r.json()["field"] == "body"  # past the token


def test_413_is_drained_for_clients_that_send_the_whole_body(limited: Server) -> None:
    """Defect 5: a 5 MB body got 'connection reset' instead of its 413 (urllib-like client:
    no Expect, Connection: close, the whole body sent before reading)."""
    size = 5_000_000
    with _connect(limited, timeout=30) as s:
        head = f"POST {P} HTTP/1.1\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode() + b"x" * 65536)
        time.sleep(0.3)  # the server has answered by now
        s.sendall(b"x" * (size - 65536))  # without the drain: reset by peer
        _json_error(_read_all(s), 413)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus)")
def test_metrics_pass_promtool(server: Server) -> None:
    with server.client() as c:
        c.post(P, json={"inputs": ["lint me", "and me"]})
        c.get("/v1/models/intent/stats")  # flushes the monitor to the store
        text = c.get("/metrics").text
    assert "leanml_prediction_latency_window_seconds_count" in text
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
