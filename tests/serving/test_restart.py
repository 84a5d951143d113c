"""kill -9 under concurrent feedback: no acknowledged label is lost, and a restarted server's
stats equal the durable ground-truth log (issue #14)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from .conftest import start_server, wait_for

FEEDBACK = "/v1/models/intent/feedback"


def _log(store: str) -> tuple[set[str], int, int]:
    """(ids joined in the log, joined rows that hold their prediction, of those correct)."""
    engine = sa.create_engine(store)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT prediction_id, label, predicted FROM leanml_feedback "
                    "WHERE status = 'joined'"
                )
            ).all()
    finally:
        engine.dispose()
    scored = [r for r in rows if r[2] is not None]
    return {r[0] for r in rows}, len(scored), sum(r[1] == r[2] for r in scored)


def _predict_many(url: str, texts: list[str], n_requests: int) -> list[dict]:
    preds: list[dict] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(n_requests):
            batch = [f"{texts[(i * 4 + k) % len(texts)]} #{i}.{k}" for k in range(4)]
            r = c.post("/v1/models/intent/predict", json={"inputs": batch})
            assert r.status_code == 200, r.text
            preds += r.json()["predictions"]
    return preds


def _send(url: str, items: list[dict], acked: set[str], lock: threading.Lock) -> None:
    """Feedback in batches of 5 until the server dies; records what was acknowledged."""
    with httpx.Client(base_url=url, timeout=10) as c:
        for lo in range(0, len(items), 5):
            try:
                r = c.post(FEEDBACK, json={"items": items[lo : lo + 5]})
            except httpx.HTTPError:
                return  # killed
            if r.status_code == 200:
                with lock:
                    acked.update(i["id"] for i in r.json()["items"] if i["status"] == "joined")


def _feedback_then_kill(server, preds: list[dict], kill_after: int | None) -> set[str]:  # type: ignore[no-untyped-def]
    """Four threads send feedback; kill -9 once ``kill_after`` labels are acknowledged (None:
    right after the last acknowledgement, before the monitor's next store write)."""
    # half the labels say the prediction was right, half name another class
    items = [
        {"id": p["id"], "label": p["label"] if k % 2 else f"not-{p['label']}"}
        for k, p in enumerate(preds)
    ]
    acked: set[str] = set()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_send, args=(server.url, items[k::4], acked, lock))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    if kill_after is not None:
        deadline = time.monotonic() + 60
        while len(acked) < kill_after and time.monotonic() < deadline:
            time.sleep(0.002)
    else:
        for t in threads:
            t.join()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for t in threads:
        t.join()
    return acked


def _stats(url: str) -> dict:
    with httpx.Client(base_url=url, timeout=30) as c:
        return c.get("/v1/models/intent/stats").json()


@pytest.mark.slow
def test_kill9_under_concurrent_feedback_stats_equal_the_log(
    tmp_path: Path, models_dir: Path, intent_texts: list[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'crash.db'}"
    acked: set[str] = set()
    for moment in (20, 150, None):  # early, in the middle, after the last acknowledgement
        server = start_server(models_dir, store, tmp_path)
        preds = _predict_many(server.url, intent_texts, 60)  # 240 predictions
        got = _feedback_then_kill(server, preds, moment)
        assert got, f"no label acknowledged before the kill at {moment}"
        acked |= got
        in_log, joined, correct = _log(store)
        assert acked <= in_log, f"acknowledged labels missing from the log: {acked - in_log}"
        # the restarted server's stats equal the log
        server = start_server(models_dir, store, tmp_path)
        try:
            stats = wait_for(lambda url=server.url: (s := _stats(url))["local"] is not None and s)
            merged = stats["merged"]
            assert (merged["joined"], merged["correct"]) == (joined, correct)
            assert merged["ground_truth_source"] == "log"
            assert stats["accuracy"]["realized_joined"] == joined
            restored = stats["local"]["ground_truth"]["restored"]
            assert restored == joined  # every joined label of the served variant
            realized = stats["local"]["accuracy"]["realized"]
            assert realized["n"] == min(joined, 1000)
            if joined <= 1000:
                assert realized["accuracy"] == pytest.approx(correct / joined)
        finally:
            server.stop(signal.SIGKILL)
