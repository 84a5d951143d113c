"""A PostgreSQL outage under ``leanml serve`` (issue #20, point 4).

The test creates its own database on the server of ``LEANML_TEST_POSTGRES_URL``, serves with
it as the store, then makes it unreachable (``ALLOW_CONNECTIONS false`` and every backend on it
terminated). During the outage predictions give no 5xx, feedback answers a JSON 503 with
``Retry-After`` naming no infrastructure, ``/metrics`` answers 200 with ``leanml_store_up 0``;
the database comes back and the same process recovers; every label acknowledged (200) is in
the store's feedback log afterwards.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .conftest import fresh_postgres, running, wait_for

NAME = "intent"
P = f"/v1/models/{NAME}/predict"
F = f"/v1/models/{NAME}/feedback"
OUTAGE_S = 8.0


@pytest.fixture
def outage_db() -> Iterator[tuple[str, sa.engine.Engine, str]]:
    """(store URL of a fresh database, admin engine on the server, database name); dropped
    afterwards (skips without ``LEANML_TEST_POSTGRES_URL``)."""
    with fresh_postgres("outage") as store_url:
        url = os.environ["LEANML_TEST_POSTGRES_URL"]
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        db = str(make_url(store_url).database)
        try:
            yield store_url, admin, db
        finally:  # connections allowed again before the database is dropped
            with admin.connect() as c:
                c.execute(sa.text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))
            admin.dispose()


def _down(admin: sa.engine.Engine, db: str) -> None:
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false'))
        c.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": db},
        )


def _up(admin: sa.engine.Engine, db: str) -> None:
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))


def _store_up(c: httpx.Client) -> str | None:
    r = c.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    for line in r.text.splitlines():
        if line.startswith("leanml_store_up"):
            return line.split()[-1]
    return None


@pytest.mark.slow
def test_postgres_outage(
    outage_db: tuple[str, sa.engine.Engine, str], models_dir: Path, tmp_path: Path
) -> None:
    store_url, admin, db = outage_db
    host = make_url(store_url).host or "localhost"
    secrets = (db, host, str(make_url(store_url).port or 5432), "postgres", "psycopg", "sqlalchemy")
    acked: set[str] = set()  # ids whose label was acknowledged (200)
    codes: dict[str, Counter[int]] = {"predict": Counter(), "feedback": Counter()}
    workers: set[str] = set()  # the process that answered: one, never restarted
    with running(models_dir, store_url, tmp_path) as srv, srv.client() as c:

        def predict(texts: list[str]) -> list[str]:
            r = c.post(P, json={"inputs": texts})
            codes["predict"][r.status_code] += 1
            workers.add(r.headers["x-leanml-worker"])
            assert r.status_code == 200, r.text
            return [p["id"] for p in r.json()["predictions"]]

        def label(pid: str) -> httpx.Response:
            r = c.post(F, json={"id": pid, "label": "reply"})
            codes["feedback"][r.status_code] += 1
            if r.status_code == 200:
                acked.add(pid)
            return r

        # before: labels acknowledged with the store up
        ids = predict([f"before the outage {i}" for i in range(8)])
        for pid in ids[:4]:
            assert label(pid).status_code == 200
        assert _store_up(c) == "1"

        _down(admin, db)
        during: list[httpx.Response] = []
        waiting = ids[4:]  # labels sent during the outage (503: the client retries later)
        end = time.monotonic() + OUTAGE_S
        i = 0
        while time.monotonic() < end:
            i += 1
            new = predict([f"during the outage {i}", "please reply to this email"])
            waiting.append(new[0])
            during.append(label(waiting[i % len(waiting)]))
            m = c.get("/metrics")
            assert m.status_code == 200
            s = c.get(f"/v1/models/{NAME}/stats")
            assert s.status_code == 200, s.text[:300]
            time.sleep(0.05)
        assert wait_for(lambda: _store_up(c) == "0", timeout=10), "leanml_store_up never 0"
        refused = [r for r in during if r.status_code != 200]
        assert refused, "every label was acknowledged during the outage"
        for r in refused:
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"] == "unavailable"
            assert not [s for s in secrets if s.lower() in r.text.lower()], r.text

        _up(admin, db)  # back, without a restart
        assert wait_for(lambda: _store_up(c) == "1", timeout=30), "the store never came back"

        def retried() -> bool:  # the client retries what was refused
            return all(label(pid).status_code == 200 for pid in waiting if pid not in acked)

        assert wait_for(retried, timeout=30), codes
        after = predict([f"after the outage {i}" for i in range(4)])
        for pid in after:
            assert label(pid).status_code == 200
    assert len(workers) == 1, workers
    # every acknowledged label is in the durable log
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        stored = {r[0] for r in conn.execute(sa.text("SELECT prediction_id FROM leanml_feedback"))}
    engine.dispose()
    lost = acked - stored
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged labels lost"
    log = srv.log.read_text(errors="replace")
    # failed writes are logged at a bounded rate (5 per message a minute, one with its
    # traceback), not one per write
    assert log.count("Traceback") <= 30, f"{log.count('Traceback')} tracebacks logged"
    print(
        json.dumps(
            {
                "outage_s": OUTAGE_S,
                "predict": dict(codes["predict"]),
                "feedback": dict(codes["feedback"]),
                "acknowledged": len(acked),
                "lost": len(lost),
                "log_bytes": len(log),
                "tracebacks": log.count("Traceback"),
            }
        )
    )
