"""The same request gets the same answer from the raw fast path and the FastAPI routes.

One service, two doors: :class:`ServeApp` (the fast path for predict and feedback) and its
FastAPI app (``app.api``, the documented routes), both called in-process over ASGI. Ids and
the ``cached`` flag are normalised; everything else (status, every key, every message) must match.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from leanml.config import ServingConfig, Settings
from leanml.monitor import MonitorConfig
from leanml.serving import ServeApp, create_app
from leanml.serving.answers import feedback_answer
from leanml.serving.service import FeedbackOutcome

from .conftest import make_registry

P = "/v1/models/intent/predict"
F = "/v1/models/intent/feedback"
JSON = {"content-type": "application/json"}

#: (path, request kwargs); "{0}", "{1}" in a feedback body stand for fresh prediction ids.
CASES: list[tuple[str, dict[str, Any]]] = [
    (P, {"json": {"inputs": ["book a meeting with Ann"]}}),
    (P, {"json": {"inputs": "a single text"}}),
    (P, {"json": {"inputs": ["forward this"], "return_probabilities": True}}),
    (P, {"json": {"inputs": ["x"], "return_probabilities": "yes"}}),
    (P, {"json": {"inputs": []}}),
    (P, {"json": {"inputs": [1]}}),
    (P, {"json": {"inputs": ["a"] * 17}}),
    (P, {"json": {"inputs": ["a" * 2001]}}),
    (P, {"json": {}}),
    (P, {"json": [1]}),
    (P, {"content": b"{bad", "headers": JSON}),
    (P, {"content": b'{"inputs": ["plain text type"]}', "headers": {"content-type": "text/plain"}}),
    (P, {"content": b"x" * 70_000, "headers": JSON}),
    ("/v1/models/nope/predict", {"json": {"inputs": ["hi"]}}),
    (F, {"json": {"id": "{0}", "label": "reply"}}),
    (F, {"json": {"id": "deadbeef-0", "label": "reply"}}),
    (F, {"json": {"items": [{"id": "{1}", "label": "reply"}]}}),
    (F, {"json": {"items": [{"id": "{2}", "label": "reply"}, {"id": "deadbeef-1", "label": "x"}]}}),
    (F, {"json": {"items": []}}),
    (F, {"json": {"items": [{"id": "a", "label": "b"}] * 21}}),
    (F, {"json": {"id": "abc"}}),
    (F, {"json": {"id": 5, "label": "abc"}}),
    (F, {"json": {"id": "abc", "label": True}}),
    (F, {"json": "x"}),
    (F, {"content": b"{bad", "headers": JSON}),
    (F, {"content": b"x" * 70_000, "headers": JSON}),
    ("/v1/models/nope/feedback", {"json": {"id": "abc", "label": "x"}}),
    # 27..30: feedback must declare JSON (a browser sends these cross-site without a preflight)
    (F, {"content": b'{"id": "a-1-0", "label": "x"}', "headers": {"content-type": "text/plain"}}),
    (F, {"content": b'{"id": "a-1-0", "label": "x"}'}),
    (
        F,
        {
            "content": b"id=a&label=x",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        F,
        {
            "content": b'{"id": "a-1-0", "label": "x"}',
            "headers": {"content-type": "application/json; charset=utf-8"},
        },
    ),
]


def _fill(value: Any, ids: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[int(value[1:-1])]
    return value


def _normalise(body: Any) -> Any:
    """Prediction ids and the cache flag differ between two predictions of the same text."""
    if isinstance(body, dict):
        return {k: "<id>" if k == "id" else _normalise(v) for k, v in body.items() if k != "cached"}
    if isinstance(body, list):
        return [_normalise(v) for v in body]
    return body


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, intent_models: Any) -> ServeApp:
    tmp = tmp_path_factory.mktemp("answers")
    settings = Settings.load().replace(
        models_dir=str(make_registry(tmp / "reg", intent_models)),
        store_url=f"sqlite:///{tmp / 'monitor.db'}",
    )
    config = ServingConfig(
        max_body_bytes=65536, max_inputs=16, max_text_chars=2000, max_feedback_items=20
    )
    return create_app(settings, config, MonitorConfig(flush_interval_s=0.05))


async def _ask_both(app: ServeApp) -> list[tuple[Any, Any, Any]]:
    """Each case sent to the fast path and to the FastAPI app: (case, fast, api)."""
    doors: dict[str, Callable[..., Any]] = {"fast": app, "api": app.api}
    clients = {
        k: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://test")
        for k, a in doors.items()
    }
    answers: dict[str, list[tuple[int, Any]]] = {}
    for door, client in clients.items():
        r = await client.post(P, json={"inputs": [f"fresh text {door} {i}" for i in range(3)]})
        ids = [p["id"] for p in r.json()["predictions"]]
        answers[door] = []
        for path, kw in CASES:
            kw = {**kw, "json": _fill(kw["json"], ids)} if "json" in kw else kw
            res = await client.post(path, **kw)
            answers[door].append((res.status_code, _normalise(res.json())))
        await client.aclose()
    return list(zip(CASES, answers["fast"], answers["api"], strict=True))


def test_fast_path_and_fastapi_routes_answer_alike(app: ServeApp) -> None:
    async def run() -> list[tuple[Any, Any, Any]]:
        await app.service.start()
        try:
            return await _ask_both(app)
        finally:
            await app.service.stop()

    results = asyncio.run(run())
    for case, fast, api in results:
        assert fast == api, f"{case}: fast path {fast} != FastAPI route {api}"
    statuses = [fast[0] for _, fast, _ in results]
    # the table covers every answer the two doors share
    assert {200, 400, 404, 413, 415, 422} <= set(statuses)
    by_case = {i: fast for i, (_, fast, _) in enumerate(results)}
    assert by_case[14] == (
        200,
        {"model": "intent", "accepted": 1, "id": "<id>", "status": "joined"},
    )
    assert by_case[15][0] == 404 and by_case[15][1]["status"] == "never_seen"
    assert by_case[17][1]["accepted"] == 1 and by_case[17][1]["field"] == "items"
    assert by_case[11][0] == 200  # a predict body is JSON whatever the content type
    for i in (27, 28, 29):
        status, body = by_case[i]
        assert status == 415 and body["field"] == "Content-Type", by_case[i]
        assert body["error"] == "unsupported_media_type" and "application/json" in body["detail"]
    assert by_case[30][0] == 404  # JSON with a charset is JSON: the id is unknown


def test_feedback_answer_shapes() -> None:
    ok, gone = FeedbackOutcome("a-1", "joined"), FeedbackOutcome("b-2", "expired", "too old")
    assert feedback_answer("m", False, [ok]) == (
        200,
        {"model": "m", "accepted": 1, "id": "a-1", "status": "joined"},
    )
    status, body = feedback_answer("m", False, [gone])
    assert status == 404
    assert body == {
        "error": "unknown_prediction",
        "detail": "too old",
        "field": "id",
        "id": "b-2",
        "status": "expired",
    }
    status, body = feedback_answer("m", True, [ok, gone])
    assert status == 404 and body["accepted"] == 1 and body["field"] == "items"
    assert [i["status"] for i in body["items"]] == ["joined", "expired"]
    assert feedback_answer("m", True, [ok]) == (
        200,
        {"model": "m", "accepted": 1, "items": [{"id": "a-1", "status": "joined"}]},
    )


def test_openapi_documents_the_bodies_the_routes_read_themselves(app: ServeApp) -> None:
    spec = app.api.openapi()
    schemas = spec["components"]["schemas"]
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    feedback = spec["paths"]["/v1/models/{name}/feedback"]["post"]
    ref = predict["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/PredictRequest"
    assert "inputs" in schemas["PredictRequest"]["properties"]
    fb = feedback["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[fb.rsplit("/", 1)[1]]["properties"]["items"]  # FeedbackRequest
    assert "FeedbackItem" in schemas  # its nested model resolves too
    assert "404" in feedback["responses"] and "FeedbackResponse" in schemas


def test_feedback_token_and_cors(tmp_path: Any, intent_models: Any) -> None:
    settings = Settings.load().replace(
        models_dir=str(make_registry(tmp_path / "reg", intent_models)),
        store_url=f"sqlite:///{tmp_path / 'monitor.db'}",
    )
    config = ServingConfig(
        feedback_token="s3cret", cors_allow_origins=("https://app.example",), warmup=0
    )
    app = create_app(settings, config, MonitorConfig(flush_interval_s=0.05))

    async def run() -> dict[str, Any]:
        await app.service.start()
        out: dict[str, Any] = {}
        try:
            for door, asgi in (("fast", app), ("api", app.api)):
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=asgi), base_url="http://test"
                ) as c:
                    r = await c.post(P, json={"inputs": [f"hello {door}", f"book {door}"]})
                    ids = [p["id"] for p in r.json()["predictions"]]
                    body = {"id": ids[0], "label": "reply"}
                    out[door] = [
                        await c.post(F, json=body),
                        await c.post(F, json=body, headers={"authorization": "Bearer nope"}),
                        await c.post(F, json=body, headers={"x-feedback-token": "s3cret"}),
                        await c.post(
                            F,
                            json={"id": ids[1], "label": "reply"},
                            headers={"authorization": "Bearer s3cret"},
                        ),
                    ]
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as c:
                origin = {"origin": "https://app.example"}
                out["preflight"] = await c.options(
                    F,
                    headers={
                        **origin,
                        "access-control-request-method": "POST",
                        "access-control-request-headers": "content-type,x-feedback-token",
                    },
                )
                out["cors"] = await c.post(P, json={"inputs": ["hello"]}, headers=origin)
                out["other"] = await c.post(
                    P, json={"inputs": ["hello"]}, headers={"origin": "https://evil.example"}
                )
        finally:
            await app.service.stop()
        return out

    out = asyncio.run(run())
    for door in ("fast", "api"):
        missing, wrong, by_header, by_bearer = out[door]
        assert missing.status_code == 401 and missing.json()["field"] == "Authorization"
        assert wrong.status_code == 403
        assert by_header.status_code == 200 and by_header.json()["status"] == "joined"
        assert by_bearer.status_code == 200 and by_bearer.json()["status"] == "joined"
    assert out["preflight"].status_code == 200
    assert out["preflight"].headers["access-control-allow-origin"] == "https://app.example"
    assert "x-feedback-token" in out["preflight"].headers["access-control-allow-headers"].lower()
    assert out["cors"].headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in out["other"].headers


def test_cors_is_off_by_default(app: ServeApp) -> None:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as c:
            return await c.options(
                F,
                headers={"origin": "https://x.example", "access-control-request-method": "POST"},
            )

    r = asyncio.run(run())
    assert "access-control-allow-origin" not in r.headers
    assert not app.cors
