"""The live dashboard app: page, data endpoint, admin switch, providers, and leanml serve."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from leanml.cli import main
from leanml.dashboard.web import MonitorProvider, dashboard_app, model_entry
from leanml.monitor import DRIFT_SCORES, MonitorConfig, MonitorStore, monitored

from .helpers import assert_valid_png, start_server, stop

HERE = Path(__file__).resolve().parent
EVIL = "<script>alert(1)</script>"


class FakeProvider:
    def __init__(self) -> None:
        self.switched: list[tuple[str, str]] = []

    def snapshot(self):
        return {
            "models": {
                EVIL: {
                    "health": "degraded",
                    "version": "3",
                    "variant": "compact",
                    "variants": ["original", "compact"],
                    "counts": {"predictions": 1200},
                    "throughput": {"per_s": 20, "per_min": 1200},
                    "uptime_s": 600,
                    "latency": {"p50": 0.001, "p95": 0.002, "p99": float("nan")},
                    "accuracy": {"realized": {"accuracy": 0.9, "n": 300}, "estimated": 0.88},
                    "alerts": {
                        "active": [
                            {
                                "rule": "class_drift",
                                "level": "warning",
                                "value": 0.12,
                                "reason": EVIL,
                            }
                        ]
                    },
                    "cache": {"hits": 30, "misses": 70, "entries": 50},
                    "batching": {"batch_sizes": {"1": 10, "4": 5}, "queue_wait_p99_s": 0.0004},
                }
            },
            "resources": {"rss_bytes": 200 * 2**20, "cpu_percent": 12.5},
        }

    def switch_variant(self, name, variant):
        if name != EVIL:
            raise KeyError(name)
        if variant not in ("original", "compact"):
            raise ValueError("bad variant")
        self.switched.append((name, variant))
        return {"variant": variant}


class ASGIClient:
    """Synchronous calls into an ASGI app through httpx's ASGI transport (no server)."""

    def __init__(self, app) -> None:
        self.app = app

    def __enter__(self) -> ASGIClient:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)


def client(provider, token="s3cret") -> ASGIClient:
    app = Starlette(routes=[Mount("/dashboard", app=dashboard_app(provider, admin_token=token))])
    return ASGIClient(app)


def test_page_is_static_offline_and_locked_down():
    with client(FakeProvider()) as c:
        r = c.get("/dashboard/")
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert 'src="/dashboard/dashboard.js"' in r.text and "http" not in r.text.split("<body")[1]
        assert EVIL not in r.text  # the page carries no data; the script fills it in
        js = c.get("/dashboard/dashboard.js")
        assert js.status_code == 200 and "textContent" in js.text and "innerHTML" not in js.text
        assert c.get("/dashboard/dashboard.css").status_code == 200
        assert c.get("/dashboard", follow_redirects=False).status_code in (200, 307)


def test_data_endpoint_flattens_stats_and_keeps_a_series():
    with client(FakeProvider()) as c:
        d = c.get("/dashboard/data.json").json()
        m = d["models"][0]
        assert m["name"] == EVIL and m["health"] == "degraded" and m["variant"] == "compact"
        assert m["p99"] is None and m["p50"] == 0.001  # NaN becomes null, JSON stays valid
        assert m["realized"] == 0.9 and m["realized_n"] == 300
        assert m["cache_hit_rate"] == pytest.approx(0.3) and m["batch_mean"] == pytest.approx(2.0)
        assert m["rps"] == pytest.approx(20.0)
        assert d["alerts"] == [
            {
                "model": EVIL,
                "rule": "class_drift",
                "level": "warning",
                "value": 0.12,
                "reason": EVIL,
            }
        ]
        assert d["admin"] is True and d["resources"]["cpu_percent"] == 12.5
        assert d["series"][EVIL]["t"] and d["series"][EVIL]["p50"] == [0.001]


def test_admin_switch_needs_the_bearer_token():
    p = FakeProvider()
    with client(p) as c:
        body = {"model": EVIL, "variant": "original"}
        assert c.post("/dashboard/variant", json=body).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert c.post("/dashboard/variant", json=body, headers=bad).status_code == 403
        good = {"Authorization": "Bearer s3cret"}
        r = c.post("/dashboard/variant", json=body, headers=good)
        assert r.status_code == 200 and r.json()["variant"] == "original"
        assert p.switched == [(EVIL, "original")]
        unknown = {"model": "nope", "variant": "compact"}
        assert c.post("/dashboard/variant", json=unknown, headers=good).status_code == 404
        wrong = {"model": EVIL, "variant": "tiny"}
        assert c.post("/dashboard/variant", json=wrong, headers=good).status_code == 422
        assert c.post("/dashboard/variant", content=b"{", headers=good).status_code == 422
    with client(FakeProvider(), token=None) as c:  # admin disabled: nobody may switch
        r = c.post("/dashboard/variant", json=body, headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and c.get("/dashboard/data.json").json()["admin"] is False


def test_every_error_answer_is_json():
    """The dashboard's own 404s and 405s, and the switch's refusals, are JSON errors (#20)."""
    with client(FakeProvider()) as c:
        for method, path, status in (
            ("GET", "/dashboard/nope", 404),
            ("GET", "/dashboard/%2e%2e/config.py", 404),
            ("GET", "/dashboard/static/x.js", 404),
            ("GET", "/dashboard/variant", 405),
            ("DELETE", "/dashboard/data.json", 405),
            ("POST", "/dashboard/", 405),
            ("POST", "/dashboard/variant", 401),
        ):
            r = c.request(method, path, json={"model": EVIL, "variant": "original"})
            assert r.status_code == status, (method, path, r.text)
            assert r.headers["content-type"] == "application/json", (path, r.text)
            body = r.json()
            assert body["error"] and body["detail"] is not None and "field" in body, body
            if status == 405:
                assert "GET" in r.headers["allow"] or "POST" in r.headers["allow"]
        r = c.post("/dashboard/variant", content=b"{", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 422 and r.json()["field"] == "body"


def test_async_switch_callbacks_are_awaited():
    class AsyncProvider(FakeProvider):
        def switch_variant(self, name, variant):
            async def run():
                await asyncio.sleep(0)
                return {"variant": variant, "async": True}

            return run()

    with client(AsyncProvider()) as c:
        r = c.post(
            "/dashboard/variant",
            json={"model": EVIL, "variant": "compact"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 200 and r.json()["async"] is True


def test_model_entry_reads_leanml_serve_stats_shape():
    serve_stats = {
        "model": "email",
        "version": 2,
        "variant": "compact",
        "health": "healthy",
        "cache": {"hits": 5, "misses": 5, "hit_rate": 0.5, "entries": 5},
        "batching": {
            "size_buckets": [[1, 4], [2, 2], [4, 0]],
            "size_counts": [4, 2, 0, 1],
            "mean_batch_size": 1.6,
            "wait_counts": [9, 1],
            "wait_buckets": [1e-5, 1e-4],
        },
        "merged": {"count": 42},
        "local": {
            "throughput": {"per_s": 1, "per_min": 60},
            "uptime_s": 120,
            "drops": {"record_buffer": 2},
            "error_rate": 0.0,
        },
        "latency": {"p50": 0.001, "p95": 0.002, "p99": 0.003},
        "accuracy": {
            "realized": 0.8,
            "realized_lower": 0.49,
            "realized_upper": 0.94,
            "realized_joined": 10,
            "estimated": 0.7,
            "estimated_lower": 0.65,
            "estimated_upper": 0.75,
            "estimated_n": 300,
            "estimated_method": "isotonic",
        },
        "alerts": [{"rule": "latency_p99", "level": "critical", "value": 2.0, "reason": "slow"}],
        "active_variant": "compact",
        "drift": {"class_psi": 0.2, "oov_rate": 0.3, "oov_delta": 0.05, "confidence_ks_p": 0.01},
    }
    m = model_entry("email", serve_stats)
    assert m["predictions"] == 42 and m["realized"] == 0.8 and m["realized_n"] == 10
    # side by side, each with its 95% interval and n
    assert (m["realized_lower"], m["realized_upper"]) == (0.49, 0.94)
    assert (m["estimated_lower"], m["estimated_upper"], m["estimated_n"]) == (0.65, 0.75, 300)
    assert m["estimated_method"] == "isotonic"
    assert m["reasons"] == ["latency_p99: critical - slow"] and m["dropped"] == 2
    assert m["batch_mean"] == 1.6 and m["queue_wait_p99"] == 1e-4 and m["cache_hit_rate"] == 0.5
    assert m["rps"] == pytest.approx(1.0)
    # one entry per drift score (monitor's DRIFT_SCORES), None where the stats have none
    assert {k: m[k] for k in DRIFT_SCORES} == {
        "class_psi": 0.2,
        "class_chi2": None,
        "confidence_ks": None,
        "input_length_ks": None,
        "oov_delta": 0.05,
    }
    assert "oov_rate" not in m and "confidence_ks_p" not in m
    assert m["drift_intervals"] == {}  # none in these stats


def test_model_entry_carries_the_drift_intervals_and_samples():
    stats = {
        "drift": {
            "n": 400, "confidence_n": 380, "class_psi": 0.2, "confidence_ks": 0.15,
            "intervals": {"class_psi": [0.12, 0.3], "confidence_ks": [0.1, 0.2]},
        }
    }  # fmt: skip
    m = model_entry("email", stats)
    assert m["drift_intervals"] == {"class_psi": [0.12, 0.3], "confidence_ks": [0.1, 0.2]}
    assert (m["drift_n"], m["confidence_n"]) == (400, 380)
    assert m["drift_needed"] == {}


def test_model_entry_says_what_a_class_psi_without_interval_needs():
    why = {"reason": "n too small", "n": 200, "needed": 750}
    stats = {
        "drift": {"n": 200, "class_psi": 0.7, "intervals": {}, "no_interval": {"class_psi": why}}
    }
    m = model_entry("intent", stats)
    assert m["drift_intervals"] == {} and m["drift_needed"] == {"class_psi": 750}


def test_monitor_provider_over_real_monitors_and_store(tmp_path, tiny_pipeline, tiny_texts):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = MonitorStore(url)
    cfg = MonitorConfig(window_s=1.0)
    t = [time.time() - 30]
    est = monitored(tiny_pipeline, "spam", config=cfg, store=store, clock=lambda: t[0], start=False)
    X, _ = tiny_texts
    for _ in range(5):
        est.predict(X[:10])
        t[0] += 1.0
        est.monitor.flush()
    provider = MonitorProvider({"spam": est.monitor}, store=store)
    snap = provider.snapshot()
    assert snap["models"]["spam"]["counts"]["predictions"] == 50
    hist = provider.history(time.time() - 60)["spam"]
    assert len(hist) == 5 and all(p["rps"] == 10.0 for p in hist)
    with ASGIClient(dashboard_app(provider)) as c:
        d = c.get("/data.json").json()
        assert d["models"][0]["predictions"] == 50
        assert len(d["series"]["spam"]["t"]) == 6  # 5 stored windows + the live point
    with pytest.raises(KeyError):
        provider.switch_variant("nope", "compact")
    est.monitor.close()
    store.close()


def test_dashboard_inside_leanml_serve(tmp_path):
    proc, base = start_server("serve_server.py", tmp_path, "--token", "tok")
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            texts = ["schedule a meeting tomorrow", "delete this email", "forward to anna"]
            ids = []
            for i in range(30):  # repeats hit the cache
                r = c.post("/v1/models/intent/predict", json={"inputs": [texts[i % 3]]})
                ids.append(r.json()["predictions"][0]["id"])
            assert (
                c.post(
                    "/v1/models/intent/feedback", json={"id": ids[0], "label": "schedule_meeting"}
                ).status_code
                == 200
            )
            deadline = time.monotonic() + 30  # the store is written by the monitor's flusher
            while True:
                (m,) = c.get("/dashboard/data.json").json()["models"]
                if m["predictions"] == 30 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert m["name"] == "intent" and m["health"] == "healthy"
            assert m["predictions"] == 30 and m["variant"] == "compact"
            assert m["cache_hit_rate"] == pytest.approx(27 / 30)
            assert m["batch_mean"] is not None and set(m["variants"]) == {"original", "compact"}
            body = {"model": "intent", "variant": "original"}
            assert c.post("/dashboard/variant", json=body).status_code == 401
            r = c.post("/dashboard/variant", json=body, headers={"Authorization": "Bearer tok"})
            assert r.status_code == 200, r.text
            assert c.get("/v1/models/intent").json()["active_variant"] == "original"
            assert c.get("/dashboard/").headers["content-security-policy"]
        # the report over leanml serve's own store, with its live cache and batch figures
        out = tmp_path / "report"
        argv = ["report", "--store", f"sqlite:///{tmp_path / 'serve-store.db'}", "--out", str(out)]
        argv += ["--models-dir", str(tmp_path / "models"), "--server", base, "--since", "1h"]
        assert main(argv) == 0
        for chart in ("intent-cache", "intent-batches", "intent-latency"):
            assert_valid_png((out / f"{chart}.png").read_bytes())
        doc = (out / "report.html").read_text(encoding="utf-8")
        assert "Prediction cache hit rate" in doc and "No cache figures" not in doc
    finally:
        stop(proc)


class _ServeShapedProvider:
    """A provider answering leanml serve's /stats shape: active alerts as a list, merged figures."""

    def snapshot(self):  # type: ignore[no-untyped-def]
        alert = {"rule": "error_rate", "level": "warning", "value": 0.02, "reason": "2% > 1%"}
        stats = {
            "model": "intent",
            "alerts": [alert],
            "merged": {"count": 4500, "processes": 6},
            "local": {"counts": {"predictions": 700}},
        }
        return {"models": {"intent": stats}}

    def switch_variant(self, name, variant):  # type: ignore[no-untyped-def]
        raise KeyError(name)


def test_data_json_with_serve_shaped_active_alerts_and_merged_processes():
    """Regression (#21): with an active alert, /data.json of a leanml serve host answered 500
    (its alerts are a list there); the entry shows the merged count and process count."""
    with ASGIClient(dashboard_app(_ServeShapedProvider())) as c:
        r = c.get("/data.json")
        assert r.status_code == 200, r.text
        d = r.json()
    assert d["alerts"] == [
        {"model": "intent", "rule": "error_rate", "level": "warning", "value": 0.02,
         "reason": "2% > 1%"}
    ]  # fmt: skip
    assert (d["models"][0]["predictions"], d["models"][0]["processes"]) == (4500, 6)


def test_model_entry_says_whether_monitoring_is_paused():
    assert model_entry("email", {"paused": True})["paused"] is True
    assert model_entry("email", {"paused": False})["paused"] is False
    assert model_entry("email", {})["paused"] is False  # stats from before the pause existed
