"""predict, feedback, stats, /metrics, admin auth, cache and variant switch on a real server."""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .conftest import ADMIN_TOKEN, Server, admin_headers, running, wait_for


def predict(c, texts, **kw):  # type: ignore[no-untyped-def]
    r = c.post("/v1/models/intent/predict", json={"inputs": texts, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def metrics(c) -> dict[tuple[str, tuple], float]:  # type: ignore[no-untyped-def]
    r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(m: dict, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab), v in m.items()
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items())
    )


def test_predict_returns_ids_labels_and_probabilities(server: Server, intent_texts) -> None:
    with server.client() as c:
        models = c.get("/v1/models").json()["models"]
        classes = models[0]["classes"]
        body = predict(c, intent_texts[:5], return_probabilities=True)
    assert body["model"] == "intent" and body["version"] == 1
    assert body["variant"] in ("original", "compact")
    preds = body["predictions"]
    assert len(preds) == 5
    assert len({p["id"] for p in preds}) == 5
    for p in preds:
        assert p["label"] in classes
        assert 0.0 <= p["confidence"] <= 1.0
        assert set(p["probabilities"]) == set(classes)
        assert math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-6)
        assert math.isclose(max(p["probabilities"].values()), p["confidence"], rel_tol=1e-9)


def test_model_info_and_health(server: Server) -> None:
    with server.client() as c:
        info = c.get("/v1/models/intent").json()
        health = c.get("/health").json()
        docs = c.get("/openapi.json").json()
    assert info["versions"] == [1]
    assert set(info["variants"]) == {"original", "compact"}
    assert info["active_variant"] in ("original", "compact")
    assert info["guard"]["passed"] is True
    assert health["ready"] is True and health["models"]["intent"]["health"] == "healthy"
    assert "/v1/models/{name}/predict" in docs["paths"]
    assert "/v2/models/{name}/infer" in docs["paths"]


def test_feedback_is_joined_and_counted_in_stats(server: Server, intent_texts) -> None:
    with server.client() as c:
        preds = predict(c, intent_texts[10:14])["predictions"]
        before = c.get("/v1/models/intent/stats").json()["merged"]["joined"]
        r = c.post("/v1/models/intent/feedback", json={"id": preds[0]["id"], "label": "reply"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "joined"
        again = c.post("/v1/models/intent/feedback", json={"id": preds[0]["id"], "label": "reply"})
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        items = [{"id": p["id"], "label": p["label"]} for p in preds[1:]]
        r = c.post("/v1/models/intent/feedback", json={"items": items})
        assert r.status_code == 200, r.text
        assert [i["status"] for i in r.json()["items"]] == ["joined"] * 3
        # the same id twice in one request: the join re-checks, the second is a duplicate
        twice, unlabeled = predict(c, intent_texts[14:16])["predictions"]
        item = {"id": twice["id"], "label": twice["label"]}
        r = c.post("/v1/models/intent/feedback", json={"items": [item, item]})
        assert [i["status"] for i in r.json()["items"]] == ["joined", "duplicate"]

        def pending() -> float:  # the server's id space is the join table: it counts what waits
            lines = c.get("/metrics").text.splitlines()
            got = [ln for ln in lines if ln.startswith('leanml_pending_joins{model="intent"')]
            assert len(got) == 1, got
            return float(got[0].rsplit(" ", 1)[1])

        waiting = pending()
        assert waiting >= 1  # at least `unlabeled`
        r = c.post("/v1/models/intent/feedback", json={"id": unlabeled["id"], "label": "reply"})
        assert r.json()["status"] == "joined"
        assert pending() == waiting - 1
        stats = wait_for(
            lambda: (
                (s := c.get("/v1/models/intent/stats").json())["merged"]["joined"] >= before + 6
                and s
            )
        )
    assert stats["merged"]["joined"] == before + 6
    assert stats["accuracy"]["realized"] is not None
    assert stats["accuracy"]["estimated"] is not None
    assert stats["health"] in ("healthy", "degraded", "unhealthy")
    assert stats["throughput"] is not None and "p99" in stats["latency"]
    assert set(stats["cache"]) >= {"hits", "misses", "evictions", "entries"}
    assert stats["batching"]["items"] >= 4
    assert isinstance(stats["alerts"], list)


def test_feedback_for_unknown_ids_gets_404_with_reason(server: Server, intent_texts) -> None:
    with server.client() as c:
        pid = predict(c, intent_texts[:1])["predictions"][0]["id"]
        prefix, counter, tag = pid.split("-")
        future = f"{prefix}-{int(counter, 16) + 10_000:x}-{tag}"  # a forged id: wrong tag
        flipped = f"{prefix}-{counter}-{tag[:-1]}{'0' if tag[-1] != '0' else '1'}"  # altered tag
        bad_ids = (future, flipped, f"{prefix}-{counter}-{'0' * 16}", "ffffffff-1-" + tag)
        for bad in (*bad_ids, "not-an-id", "x"):
            r = c.post("/v1/models/intent/feedback", json={"id": bad, "label": "reply"})
            assert r.status_code == 404, (bad, r.text)
            body = r.json()
            assert body["status"] == "never_seen" and body["field"] == "id" and body["detail"]
        r = c.post(
            "/v1/models/intent/feedback",
            json={"items": [{"id": pid, "label": "reply"}, {"id": future, "label": "x"}]},
        )
        # nothing public names the id prefix (nor, of course, the secret behind the tags)
        for page in ("/health", "/v1/models/intent", "/v1/models", "/metrics"):
            assert prefix not in c.get(page).text, page
    assert r.status_code == 404
    assert [i["status"] for i in r.json()["items"]] == ["joined", "never_seen"]
    assert r.json()["accepted"] == 1


def test_metrics_parse_and_count(server: Server, intent_texts) -> None:
    with server.client() as c:
        m0 = metrics(c)
        predict(c, intent_texts[20:23])
        m1 = wait_for(
            lambda: (
                (m := metrics(c))
                and total(m, "leanml_predictions_total")
                >= total(m0, "leanml_predictions_total") + 3
                and m
            )
        )
    assert total(m1, "leanml_predictions_total") >= total(m0, "leanml_predictions_total") + 3
    for name in (
        "leanml_cache_hits_total",
        "leanml_cache_misses_total",
        "leanml_cache_evictions_total",
        "leanml_batch_size_count",
        "leanml_batch_queue_wait_seconds_count",
        "leanml_prediction_latency_seconds_count",
        "leanml_merged_predictions_total",
        "leanml_http_responses_total",
    ):
        assert any(n == name for n, _ in m1), name
    assert total(m1, "leanml_batch_size_count", model="intent") >= 1


def test_cache_hits_are_monitored_predictions_with_their_own_ids(server: Server) -> None:
    text = "please archive the thread about the quarterly budget (cache test)"
    with server.client() as c:
        m0 = metrics(c)
        first = predict(c, [text])["predictions"][0]
        second = predict(c, [text])["predictions"][0]
        assert "cached" not in first and second["cached"] is True
        assert second["id"] != first["id"]
        assert (second["label"], second["confidence"]) == (first["label"], first["confidence"])
        r = c.post("/v1/models/intent/feedback", json={"id": second["id"], "label": "archive"})
        assert r.status_code == 200 and r.json()["status"] == "joined"
        m1 = wait_for(
            lambda: (
                (m := metrics(c))
                and total(m, "leanml_predictions_total")
                >= total(m0, "leanml_predictions_total") + 2
                and m
            )
        )
    assert total(m1, "leanml_cache_hits_total") >= total(m0, "leanml_cache_hits_total") + 1
    assert total(m1, "leanml_cached_predictions_total") >= 1


def test_admin_auth(server: Server) -> None:
    with server.client() as c:
        for method, path, body in (
            ("PUT", "/v1/models/intent/variant", {"variant": "original"}),
            ("POST", "/v1/models/intent/reload", None),
            ("PATCH", "/v1/monitoring/config", {"sampling_rate": 0.5}),
        ):
            r = c.request(method, path, json=body)
            assert r.status_code == 401 and r.json()["field"] == "authorization"
            assert r.headers["www-authenticate"] == "Bearer"
            r = c.request(method, path, json=body, headers={"Authorization": "Basic abc"})
            assert r.status_code == 401
            r = c.request(method, path, json=body, headers=admin_headers("wrong"))
            assert r.status_code == 403 and "wrong" in r.json()["detail"]
            r = c.request(method, path, json=body, headers=admin_headers(ADMIN_TOKEN + "x"))
            assert r.status_code == 403
            r = c.request(method, path, json=body, headers=admin_headers())
            assert r.status_code == 200, r.text


def test_monitoring_config_validation(server: Server) -> None:
    with server.client() as c:
        r = c.patch("/v1/monitoring/config", json={"sampling_rate": 0.25}, headers=admin_headers())
        assert r.status_code == 200 and r.json()["monitoring"]["sampling_rate"] == 0.25
        r = c.patch("/v1/monitoring/config", json={"no_such_knob": 1}, headers=admin_headers())
        assert r.status_code == 422 and r.json()["field"] == "no_such_knob"
        r = c.patch("/v1/monitoring/config", json={"sampling_rate": 7}, headers=admin_headers())
        assert r.status_code == 422 and r.json()["field"] == "sampling_rate"
        rule = c.get("/v1/models/intent/stats").json()["local"]["alerts"]["levels"]
        name = sorted(rule)[0]
        r = c.patch(
            "/v1/monitoring/config", json={"thresholds": {"no_rule": 1}}, headers=admin_headers()
        )
        assert r.status_code == 422 and r.json()["field"] == "thresholds.no_rule"
        r = c.patch(
            "/v1/monitoring/config",
            json={"thresholds": {name: {"color": 1}}},
            headers=admin_headers(),
        )
        assert r.status_code == 422 and r.json()["field"] == f"thresholds.{name}.color"
        r = c.patch("/v1/monitoring/config", content=b"{", headers=admin_headers())
        assert r.status_code == 400
        r = c.patch("/v1/monitoring/config", json={"sampling_rate": 0.5}, headers=admin_headers())
        assert r.status_code == 200


def test_variant_switch_invalidates_cache_and_keeps_feedback(server: Server) -> None:
    text = "schedule a meeting with the design team next tuesday (switch test)"
    with server.client() as c:
        r = c.put(
            "/v1/models/intent/variant", json={"variant": "original"}, headers=admin_headers()
        )
        assert r.status_code == 200 and r.json()["variant"] == "original"
        a = predict(c, [text], return_probabilities=True)
        assert predict(c, [text])["predictions"][0]["cached"] is True
        r = c.put("/v1/models/intent/variant", json={"variant": "compact"}, headers=admin_headers())
        assert r.status_code == 200 and r.json()["variant"] == "compact"
        b = predict(c, [text], return_probabilities=True)
        assert b["variant"] == "compact"
        assert "cached" not in b["predictions"][0]
        assert b["predictions"][0]["probabilities"] != a["predictions"][0]["probabilities"]
        # feedback for a prediction made before the switch still joins (its monitor is kept)
        r = c.post(
            "/v1/models/intent/feedback",
            json={"id": a["predictions"][0]["id"], "label": "schedule_meeting"},
        )
        assert r.status_code == 200 and r.json()["status"] == "joined"
        assert c.get("/v1/models/intent").json()["active_variant"] == "compact"
        r = c.put("/v1/models/intent/variant", json={"variant": "tiny"}, headers=admin_headers())
        assert r.status_code == 422 and r.json()["field"] == "variant"
        r = c.post("/v1/models/intent/reload", headers=admin_headers())
        assert r.status_code == 200 and r.json()["variant"] == "compact"
        assert "cached" not in predict(c, [text])["predictions"][0]
        r = c.put(
            "/v1/models/intent/variant", json={"variant": "original"}, headers=admin_headers()
        )
        assert r.status_code == 200


def test_switching_back_keeps_the_variants_counts(server: Server) -> None:
    """original -> compact -> original within one window: the original's monitor counts on
    (a second monitor for it overwrote the window's stored row with its own, smaller count)."""
    from leanml.monitor import MonitorStore

    store = MonitorStore(server.store, create=False)

    def count() -> int:
        return int(store.merged(model="intent", variant="original")["count"])

    try:
        with server.client() as c:
            for variant in ("original", "compact", "original"):
                r = c.put("/v1/models/intent/variant", json={"variant": variant},
                          headers=admin_headers())  # fmt: skip
                assert r.status_code == 200
                if variant == "original":
                    before = count()
                    predict(c, [f"count me {variant} {before} {i}" for i in range(8)])
                    after = wait_for(lambda b=before: count() >= b + 8 and count(), timeout=10)
                    assert after and after >= before + 8, (before, after)
    finally:
        store.close()


def test_route_label_is_bounded(server: Server) -> None:
    """Unknown paths, traversal and 405s never mint a ``route`` label of their own: the values
    are the app's route templates plus one ``<unmatched>``."""
    with server.client() as c:
        templates = set(c.get("/openapi.json").json()["paths"]) | {"/openapi.json", "/docs"}
        for i in range(40):
            c.get(f"/nope/{i}/x")
            c.get(f"/v1/models/intent/stats/extra/{i}")
            c.post(f"/v1/unknown-{i}", json={})
            c.get(f"/v2/models/m{i}/versions/{i}/infer/more")
        c.get("/v1/models/../../etc/passwd")
        assert c.delete("/v1/models/intent/predict").status_code == 405
        assert c.put("/v1/models/intent/reload").status_code in (401, 405)
        assert c.post("/v1/models/intent/variant", json={}).status_code in (401, 405)
        m = metrics(c)
    routes = {dict(lab)["route"] for n, lab in m if n == "leanml_http_responses_total"}
    unknown = routes - templates - {"<unmatched>"}
    assert not unknown, unknown
    assert "<unmatched>" in routes
    assert "/v1/models/{name}/predict" in routes  # the 405 kept its template
    matched = {dict(lab)["status"] for n, lab in m if dict(lab).get("route") == "<unmatched>"}
    assert matched == {"404"}


def test_admin_erase_by_id_and_age(server: Server) -> None:
    from leanml.monitor import MonitorStore

    texts = [f"write to jane.doe{i}@example.com about invoice {i}" for i in range(16)]
    store = MonitorStore(server.store, create=False)
    try:
        with server.client() as c:
            ids = [p["id"] for p in predict(c, texts)["predictions"]]
            url = "/v1/monitoring/erase"
            r = c.post(url, json={"ids": ids})
            assert r.status_code == 401 and r.json()["field"] == "authorization"
            for body, field in (
                ({}, "body"),
                ({"ids": []}, "ids"),
                ({"ids": [7]}, "ids[0]"),
                ({"older_than": "soon"}, "older_than"),
                ({"ids": ids, "model": "intent"}, "model"),
            ):
                r = c.post(url, json=body, headers=admin_headers())
                assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
            count = store.merged(model="intent")["count"]
            r = c.post(url, json={"ids": ids}, headers=admin_headers())  # flushes first
            assert r.status_code == 200, r.text
            rows = [x for x in store.read_table("predictions") if x["prediction_id"] in ids]
            assert rows, "sampling_rate 0.5 kept none of 16 predictions"
            assert r.json()["erased"] == len(rows) and r.json()["ids"] == len(ids)
            assert not any(x["input_text"] or x["input_hash"] for x in rows)
            assert all(x["label"] and x["confidence"] for x in rows)  # the rest stays
            r = c.post(url, json={"ids": ids}, headers=admin_headers())
            assert r.json()["erased"] == 0
            r = c.post(url, json={"older_than": "1d"}, headers=admin_headers())
            assert r.status_code == 200 and r.json()["erased"] == 0  # nothing that old
            assert store.merged(model="intent")["count"] >= count  # counts stay
    finally:
        store.close()


def test_the_admin_api_pauses_and_resumes_monitoring_in_the_process(
    models_dir: Path, tmp_path: Path, intent_texts: list[str]
) -> None:
    """Paused, predictions are served with ids (feedback still joins) but not recorded: they
    count as unmonitored in the model info, stats and /metrics; resumed, recording goes on."""
    with running(models_dir, f"sqlite:///{tmp_path / 'm.db'}", tmp_path) as s, s.client() as c:
        url = "/v1/models/intent/monitoring"
        assert c.put(url, json={"monitoring": "off"}).status_code == 401
        r = c.put(url, json={"monitoring": "paused"}, headers=admin_headers())
        assert r.status_code == 422 and "monitoring" in r.text

        def local() -> dict:
            return dict(c.get("/v1/models/intent/stats").json()["local"])

        predict(c, intent_texts[:5])
        assert wait_for(lambda: local()["counts"]["predictions"] == 5)
        r = c.put(url, json={"monitoring": "off"}, headers=admin_headers())
        assert r.status_code == 200, r.text
        assert r.json()["monitoring"] == {"state": "paused", "unmonitored": 0}
        paused = predict(c, [f"{t} paused" for t in intent_texts[5:12]])["predictions"]
        item = {"id": paused[0]["id"], "label": paused[0]["label"]}
        assert c.post("/v1/models/intent/feedback", json=item).json()["status"] == "joined"
        stats = c.get("/v1/models/intent/stats").json()
        assert stats["monitoring"] == {"state": "paused", "unmonitored": 7}
        assert stats["local"]["paused"]
        m = metrics(c)
        assert total(m, "leanml_monitoring_paused", model="intent") == 1
        assert total(m, "leanml_unmonitored_predictions_total", model="intent") == 7
        r = c.put(url, json={"monitoring": "on"}, headers=admin_headers())
        assert r.status_code == 200 and r.json()["monitoring"]["state"] == "on"
        predict(c, [f"{t} resumed" for t in intent_texts[12:15]])
        assert wait_for(lambda: local()["counts"]["predictions"] == 8)  # 5 + 3: none paused
        assert not local()["paused"]
        assert total(metrics(c), "leanml_monitoring_paused", model="intent") == 0


def test_pausing_monitoring_a_server_runs_without_is_a_409(
    models_dir: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'm.db'}"
    with running(models_dir, store, tmp_path, extra=["--no-monitoring"]) as s, s.client() as c:
        r = c.put(
            "/v1/models/intent/monitoring", json={"monitoring": "off"}, headers=admin_headers()
        )
        assert r.status_code == 409 and r.json()["field"] == "monitoring", r.text
        assert c.get("/v1/models/intent").json()["monitoring"]["state"] == "off"
