"""Several processes share one store: merged stats, feedback joined across processes, shutdown."""

from __future__ import annotations

import os
import signal
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from leanml.monitor import MonitorStore

from .conftest import (
    CONFIG,
    admin_headers,
    free_port,
    make_registry,
    running,
    start_server,
    wait_for,
)

# uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM
GRACEFUL = (0, -signal.SIGTERM)


def _store_url(backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'shared.db'}"
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://...)")
    return url


def _predict(url: str, name: str, texts: list[str]) -> tuple[str, list[dict]]:
    with httpx.Client(timeout=30) as c:  # a fresh connection per call
        r = c.post(f"{url}/v1/models/{name}/predict", json={"inputs": texts})
        assert r.status_code == 200, r.text
        return r.headers["x-leanml-worker"], r.json()["predictions"]


def _feedback(url: str, name: str, pid: str, label: str) -> httpx.Response:
    with httpx.Client(timeout=30) as c:
        return c.post(f"{url}/v1/models/{name}/feedback", json={"id": pid, "label": label})


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_servers_share_a_store(backend, tmp_path, intent_models, intent_texts) -> None:  # type: ignore[no-untyped-def]
    name = f"intent_{uuid.uuid4().hex[:8]}"  # fresh rows even in a shared PostgreSQL database
    models = make_registry(tmp_path / "reg", intent_models, name)
    store = _store_url(backend, tmp_path)
    with running(models, store, tmp_path) as a, running(models, store, tmp_path) as b:
        _, pa = _predict(a.url, name, intent_texts[:5])
        _, pb = _predict(b.url, name, intent_texts[5:8])
        # feedback reaching the other process is joined by the process that predicted
        for p in pa[:3]:
            r = _feedback(b.url, name, p["id"], p["label"])
            assert r.status_code == 200 and r.json()["status"] == "joined", r.text
        for p in pb[:2]:
            r = _feedback(a.url, name, p["id"], "reply")
            assert r.status_code == 200 and r.json()["status"] == "joined", r.text
        r = _feedback(a.url, name, pa[0]["id"], pa[0]["label"])
        assert r.status_code == 200 and r.json()["status"] == "duplicate"

        def merged(server):  # type: ignore[no-untyped-def]
            m = httpx.get(f"{server.url}/v1/models/{name}/stats", timeout=30).json()["merged"]
            ok = m["count"] >= 8 and m["joined"] == 5 and m["processes"] == 2
            return m if ok else None

        for server in (a, b):
            m = wait_for(lambda s=server: merged(s))
            assert m is not None, httpx.get(f"{server.url}/v1/models/{name}/stats").text
            assert m["correct"] >= 3  # a's three were labeled with the predicted label
        text = httpx.get(f"{b.url}/metrics").text
        assert f'leanml_merged_predictions_total{{model="{name}"}} 8' in text
        # a variant switch on one process is followed by the others (shared registry)
        r = httpx.put(
            f"{a.url}/v1/models/{name}/variant",
            json={"variant": "compact"},
            headers=admin_headers(),
        )
        assert r.status_code == 200 and r.json()["variant"] == "compact"
        follows = wait_for(
            lambda: (
                _predict(b.url, name, intent_texts[:1])[1]
                and httpx.get(f"{b.url}/v1/models").json()["models"][0]["variant"] == "compact"
            )
        )
        assert follows, "the other process should serve the new variant"
        # once a process has stopped, its pending predictions cannot be joined any more
        assert a.stop() in GRACEFUL
        r = _feedback(b.url, name, pa[4]["id"], "reply")
        assert r.status_code == 404 and r.json()["status"] == "expired", r.text


def test_two_workers_merge_stats_and_join_feedback_across_workers(  # type: ignore[no-untyped-def]
    tmp_path, models_dir, intent_texts
) -> None:
    store = f"sqlite:///{tmp_path / 'workers.db'}"
    with running(models_dir, store, tmp_path, workers=2) as s:
        # each worker imported leanml.app's factory by name: the dashboard is mounted
        page = httpx.get(f"{s.url}/dashboard/", timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        by_worker: dict[str, list[dict]] = defaultdict(list)
        total = 0
        for i in range(300):
            worker, preds = _predict(s.url, "intent", [intent_texts[i % 50] + f" #{i}"])
            by_worker[worker] += preds
            total += 1
            if len(by_worker) == 2 and min(len(v) for v in by_worker.values()) >= 8:
                break
        assert len(by_worker) == 2, "both workers should have answered"
        owner = {p["id"]: w for w, ps in by_worker.items() for p in ps}
        crossed = 0
        for pid, w in owner.items():
            r = _feedback(s.url, "intent", pid, "reply")
            assert r.status_code == 200 and r.json()["status"] == "joined", r.text
            crossed += r.headers["x-leanml-worker"] != w
        assert crossed >= 1, "some feedback should have reached the other worker"

        def merged():  # type: ignore[no-untyped-def]
            m = httpx.get(f"{s.url}/v1/models/intent/stats", timeout=30).json()["merged"]
            return m if (m["count"], m["joined"]) == (total, len(owner)) else None

        m = wait_for(merged)
        assert m is not None and m["processes"] == 2


def test_erase_with_two_workers_reaches_rows_the_other_worker_still_queues(  # type: ignore[no-untyped-def]
    tmp_path, models_dir
) -> None:
    """``POST /v1/monitoring/erase`` answered by one worker erases the predictions the other
    worker still holds in its queue (written to the store seconds later): by id and by age.
    Every prediction is kept in detail and the store is written every 3 s."""
    store = f"sqlite:///{tmp_path / 'erase.db'}"
    config = CONFIG.replace("store_interval_s = 0.2", "store_interval_s = 3.0").replace(
        "sampling_rate = 0.5", "sampling_rate = 1.0"
    )
    with running(models_dir, store, tmp_path, workers=2, config=config) as s:

        def both_workers(tag: str) -> dict[str, list[str]]:
            by_worker: dict[str, list[str]] = defaultdict(list)
            for i in range(300):
                text = f"write to jane.doe{i}@example.com about {tag} {uuid.uuid4().hex}"
                worker, preds = _predict(s.url, "intent", [text])
                by_worker[worker] += [p["id"] for p in preds]
                if len(by_worker) == 2 and min(len(v) for v in by_worker.values()) >= 4:
                    break
            assert len(by_worker) == 2, "both workers should have answered"
            return by_worker

        def erase(body: dict) -> None:
            with httpx.Client(timeout=30) as c:
                r = c.post(f"{s.url}/v1/monitoring/erase", json=body, headers=admin_headers())
            assert r.status_code == 200, r.text

        by_id = both_workers("ids")
        ids = [i for v in by_id.values() for i in v]
        erase({"ids": ids})
        by_age = both_workers("age")
        aged = [i for v in by_age.values() for i in v]
        erase({"older_than": "0s"})
        later = both_workers("after")  # made after both erasures: kept
        kept = [i for v in later.values() for i in v]

        st = MonitorStore(store, create=False)
        try:

            def stored() -> list[dict] | None:  # every prediction's detail row, once written
                rows = [r for r in st.read_table("predictions")]
                have = {r["prediction_id"] for r in rows}
                return rows if have >= set(ids + aged + kept) else None

            rows = wait_for(stored, timeout=30)
            assert rows is not None, "every prediction should be stored in detail"
        finally:
            st.close()
    text = {r["prediction_id"]: (r["input_text"], r["input_hash"]) for r in rows}
    left = [i for i in ids + aged if text[i] != (None, None)]
    assert not left, f"{len(left)} erased predictions still hold a text: {left[:4]}"
    assert all(text[i][0] and text[i][1] for i in kept)
    assert "jane.doe" not in str([text[i] for i in kept])  # stored redacted (the default)


def test_sigterm_loses_no_acknowledged_feedback(tmp_path, models_dir, intent_texts) -> None:  # type: ignore[no-untyped-def]
    store = f"sqlite:///{tmp_path / 'shutdown.db'}"
    server = start_server(models_dir, store, tmp_path)
    acked = []
    try:
        with server.client() as c:
            for i in range(4):
                preds = c.post(
                    "/v1/models/intent/predict",
                    json={"inputs": intent_texts[i * 10 : (i + 1) * 10]},
                ).json()
                items = [{"id": p["id"], "label": p["label"]} for p in preds["predictions"]]
                r = c.post("/v1/models/intent/feedback", json={"items": items})
                assert r.status_code == 200
                acked += [i["id"] for i in r.json()["items"] if i["status"] == "joined"]
    finally:
        assert server.stop(signal.SIGTERM) in GRACEFUL
    assert len(acked) == 40
    st = MonitorStore(store)
    try:
        merged = st.merged(model="intent")
        assert merged["joined"] == 40 and merged["correct"] == 40
        labels = {r["prediction_id"] for r in st.read_table("labels")}
        assert labels == set(acked)
        with st.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT prediction_id, status FROM leanml_feedback")).all()
        assert {r[0] for r in rows} == set(acked) and {r[1] for r in rows} == {"joined"}
    finally:
        st.close()


def _counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_each_worker_serves_its_own_metrics_port(tmp_path, models_dir, intent_texts) -> None:  # type: ignore[no-untyped-def]
    """[serving] worker_metrics_port: every worker scraped on its own port, so the per-worker
    counters add up to every prediction made (issue #21); a bad port is refused."""
    first = free_port()
    config = CONFIG.replace("[serving]\n", f"[serving]\nworker_metrics_port = {first}\n")
    store = f"sqlite:///{tmp_path / 'wm.db'}"
    with running(models_dir, store, tmp_path, workers=2, config=config) as s:
        workers = set()
        for i in range(40):
            worker, _ = _predict(s.url, "intent", [f"{intent_texts[i % 50]} @{i}"])
            workers.add(worker)

        def scraped():  # type: ignore[no-untyped-def]
            # A worker still starting (loading its models) has not opened its port yet, or
            # answers late on a loaded machine: try again. A worker takes the first free port
            # from `first`: one taken meanwhile by another socket shifts the second worker up
            # (seen failing under the full suite), so the ports after `first` are all tried.
            texts = []
            for p in range(first, first + 8):
                try:
                    t = httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=10)
                except httpx.TransportError:
                    continue
                if "leanml_predictions_total" in t.text:
                    texts.append(t)
            got = sum(_counter(t.text, "leanml_predictions_total") for t in texts)
            return texts if len(texts) == 2 and got == 40 else None

        texts = wait_for(scraped, timeout=60)
        assert texts is not None and all(t.status_code == 200 for t in texts)
        if len(workers) == 2:  # both answered predictions: both counters are non-zero
            assert all(_counter(t.text, "leanml_predictions_total") > 0 for t in texts)
        assert httpx.get(f"http://127.0.0.1:{first}/other", timeout=10).status_code == 404
    bad = CONFIG.replace("[serving]\n", "[serving]\nworker_metrics_port = 70000\n")
    with pytest.raises(RuntimeError, match="worker_metrics_port"):
        start_server(models_dir, store, tmp_path, config=bad)
