"""Real servers for the serving tests: ``leanml serve`` in a subprocess on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from leanml.datasets import load_email_intents
from leanml.registry import ModelRegistry
from leanml.training import train_model

ADMIN_TOKEN = "s3cret-token"

CONFIG = """
[serving]
max_body_bytes = 65536
max_inputs = 16
max_text_chars = 2000
max_feedback_items = 20
poll_interval_s = 0.05
feedback_timeout_s = 15
heartbeat_s = 0.5
registry_watch_s = 0.5
stats_flush_s = 0

[monitor]
flush_interval_s = 0.05
store_interval_s = 0.2
sampling_rate = 0.5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    store: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_server(
    models: Path,
    store: str,
    tmp: Path,
    *,
    workers: int = 1,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    config: str = CONFIG,
) -> Server:
    port = free_port()
    cfg = tmp / f"serve-{port}.toml"
    cfg.write_text(config)
    log = tmp / f"serve-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "leanml.cli",
        "serve",
        str(models),
        "--port",
        str(port),
        "--store",
        store,
        "--config",
        str(cfg),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        *(extra or []),
    ]
    full_env = {**os.environ, "LEANML_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=full_env)
    server = Server(proc, port, log, store)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running(*args: object, **kw: object) -> Iterator[Server]:
    server = start_server(*args, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def intent_models() -> tuple[Any, Any]:
    """Two intent models: logistic regression and ComplementNB (trained once per session)."""
    ds = load_email_intents()
    return train_model("intent", "logreg", dataset=ds, heldout_folds=0), train_model(
        "intent", "complementnb", dataset=ds, heldout_folds=0
    )


def make_registry(root: Path, models: tuple[Any, Any], name: str = "intent") -> Path:
    """A registry with ``name``: the logistic regression as original and, as its "compact"
    variant, the ComplementNB pipeline (a different model, so a switch is observable)."""
    reg = ModelRegistry(root)
    lr, nb = models
    reg.register(
        name, lr.pipeline, task="intent", metrics=lr.metrics, extra={"reference": lr.reference}
    )
    reg.register(
        name,
        nb.pipeline,
        task="intent",
        variant="compact",
        metrics=nb.metrics,
        extra={"reference": nb.reference, "guard": {"passed": True, "reason": "test"}},
    )
    reg.set_active_variant(name, "original")
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, intent_models) -> Path:  # type: ignore[no-untyped-def]
    return make_registry(tmp_path_factory.mktemp("registry"), intent_models)


@pytest.fixture(scope="session")
def intent_texts() -> list[str]:
    return [str(t) for t in list(load_email_intents().X_test)[:60]]


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    with running(models_dir, f"sqlite:///{tmp / 'monitor.db'}", tmp) as s:
        yield s


@contextlib.contextmanager
def fresh_postgres(tag: str) -> Iterator[str]:
    """The URL of a new database on the server of ``LEANML_TEST_POSTGRES_URL`` (skips the test
    when it is unset), dropped afterwards."""
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set (this test needs a PostgreSQL server)")
    db = f"leanml_{tag}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{db}"'))
    try:
        yield make_url(url).set(database=db).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(fn, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``fn`` until it returns a truthy value (behaviour, not timing, is asserted)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


# ---------------------------------------------------------------------------- raw sockets
#: CONFIG with the connection bounds short enough to observe: 8 kB of headers, 1 s to send
#: them, 1.5 s to send a body, 60 connections.
LIMITS = CONFIG.replace(
    "[serving]\n",
    "[serving]\nmax_header_bytes = 8192\nheader_timeout_s = 1.0\nbody_timeout_s = 1.5\n"
    "max_connections = 60\nmax_drain_bytes = 8388608\n",
    1,
)


@pytest.fixture(scope="module")
def limited(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with :data:`LIMITS` (one per test module)."""
    tmp = tmp_path_factory.mktemp("limited")
    with running(models_dir, f"sqlite:///{tmp / 'monitor.db'}", tmp, config=LIMITS) as s:
        yield s


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    """A raw TCP connection to ``server`` (reads time out after ``timeout`` s)."""
    s = socket.create_connection(("127.0.0.1", server.port))
    s.settimeout(timeout)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket timeout: the test fails)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out
