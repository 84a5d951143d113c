"""The ASGI app: a raw fast path for the hot endpoints in front of a FastAPI app for the rest.

Stack chosen by measurement on this 2-core machine (wrk, 1 thread, 32 connections, a 1.4 kB
JSON body parsed with orjson and a fixed JSON answer, uvicorn 0.54, one worker):

=====================================  ===========
ASGI layer (uvicorn http / loop)       requests/s
=====================================  ===========
raw ASGI callable, httptools / uvloop  25,500
raw ASGI callable, httptools / asyncio 35,600 (*)
raw ASGI callable, h11 / asyncio        9,500
Starlette route, httptools / uvloop    22,000
FastAPI route (Request), httptools     11,200
FastAPI route + pydantic body model    10,300
=====================================  ===========

(*) run-to-run spread on the shared machine is about +-30%; uvloop and asyncio are within it.

A FastAPI route costs ~50 us more per request than a raw ASGI callable: as much as the compact
email model's whole predict. So ``POST /v1/models/{name}/predict`` and ``.../feedback`` are
served by :class:`ServeApp` directly (orjson, hand-written validation in
:mod:`leanml.serving.schemas`), and every other route, the OpenAPI docs (``/docs``,
``/openapi.json``, which also describe the two fast routes) and the error handlers live in the
FastAPI app behind it. :func:`leanml.serving.server.run` starts uvicorn with httptools and uvloop.

Errors are JSON ``{"error", "detail", "field"}`` everywhere: 400 malformed JSON, 401/403 admin
auth, 404 unknown model or prediction id, 413 a bound exceeded (body, inputs, text length,
feedback items), 422 wrong types, 503 not ready; bad input never yields a 500.

Two more measured choices, on ``leanml serve`` itself (email model, compact variant, wrk with
32 connections; server CPU per request, which the shared machine's load does not distort):

* uvicorn writes headers and body with two syscalls; with 100% cache hits py-spy put 52% of the
  loop thread in them. :mod:`leanml.serving._protocol` coalesces them into one write:
  43 -> 36 us of server CPU per cached request (13.5k -> 17k requests/s).
* the hot path skips pydantic and FastAPI's routing: 36 us per cached request in total, against
  ~90 us for the bare FastAPI route above before any model work.
* a request whose every text is cached is answered by :meth:`ServeApp.answer_cached` from inside
  the protocol (:mod:`leanml.serving._protocol`), before uvicorn creates a task: with 100% hits
  py-spy no longer shows uvicorn's ASGI cycle at all; what is left is mostly the socket ``send``
  (26% of the loop thread) and uvloop's own reads. (Figures from a slower machine than the ones
  above: 139 -> 113-134 us of server CPU per cached request, single runs.)
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from leanml._version import __version__
from leanml.config import Settings
from leanml.errors import (
    ConfigError,
    LeanMLError,
    ModelNotFoundError,
    ParameterError,
    ServingError,
)
from leanml.monitor import PROMETHEUS_CONTENT_TYPE, MonitorConfig
from leanml.serving import _http, v2
from leanml.serving._http import Disconnected, dumps, read_body, replay, send_json
from leanml.serving.auth import check_bearer
from leanml.serving.config import ServingConfig
from leanml.serving.metrics import render_service
from leanml.serving.schemas import (
    BadRequest,
    ErrorBody,
    FeedbackRequest,
    PredictRequest,
    PredictResponse,
    VariantRequest,
    check_feedback,
    check_predict,
)
from leanml.serving.service import Service

__all__ = ["ServeApp", "build_api", "create_app"]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


def _route_label(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 3 and parts[1] in ("v1", "v2") and parts[2] == "models":
        parts[3] = "{name}"
    return "/".join(parts[:6])


_FAST = {"predict": "/v1/models/{name}/predict", "feedback": "/v1/models/{name}/feedback"}
_PARSED = "leanml.predict"  # scope key: (texts, return_probabilities, cache keys, arrival)


def _answer(name: str, state: Any, preds: list[dict[str, Any]]) -> bytes:
    out = {"model": name, "version": state.version, "variant": state.variant, "predictions": preds}
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


class ServeApp:
    """ASGI callable: fast predict/feedback, everything else to the FastAPI app."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.api = build_api(service)
        self.limit = service.config.max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        method = scope["method"]
        path: str = scope["path"]
        if method == "POST" and path.startswith("/v1/models/"):
            name, _, action = path[11:].partition("/")
            if action == "predict" or action == "feedback":
                fast = self._predict if action == "predict" else self._feedback
                try:
                    status = await fast(name, scope, receive, send)
                except Disconnected:
                    status = 499
                self._count(_FAST[action], status)
                return
        status_box = [0]

        async def counting_send(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                status_box[0] = msg["status"]
            await send(msg)

        try:
            if method in ("POST", "PUT", "PATCH"):
                try:
                    body = await read_body(scope, receive, self.limit)
                except BadRequest as e:
                    await send_json(counting_send, e.status, e.body())
                    return
                receive = replay(body, receive)
            await self.api(scope, receive, counting_send)
        except Disconnected:
            status_box[0] = 499
        finally:
            self._count(_route_label(path), status_box[0])

    def _count(self, route: str, status: int) -> None:
        counts = self.service.http_counts
        key = (route, status)
        counts[key] = counts.get(key, 0) + 1

    def answer_cached(self, scope: Any, body: bytes) -> bytes | None:
        """The JSON answer of a predict request whose every text is cached, else None.

        Called by :class:`~leanml.serving._protocol.CoalescingHttpToolsProtocol` with the whole
        body, before any ASGI task exists; a hit costs no task, no ASGI messages. On None the
        request goes through the app as usual, reusing the parse kept in ``scope``. Every
        error (bad JSON, unknown model, a bound exceeded) is left to the app to answer.
        """
        t0 = time.perf_counter()
        path: str = scope["path"]
        if not path.startswith("/v1/models/") or len(body) > self.limit:
            return None
        name, _, action = path[11:].partition("/")
        h = self.service.handles.get(name)
        if action != "predict" or h is None:
            return None
        cfg = self.service.config
        try:
            texts, want = check_predict(orjson.loads(body), cfg.max_inputs, cfg.max_text_chars)
        except (orjson.JSONDecodeError, BadRequest):
            return None
        keys = h.cache_keys(texts)
        scope[_PARSED] = (texts, want, keys, t0)
        answered = h.predict_cached(texts, want, t0, keys) if keys is not None else None
        if answered is None:
            return None
        state, preds = answered
        self._count(_FAST["predict"], 200)
        return _answer(name, state, preds)

    async def _predict(self, name: str, scope: Any, receive: Any, send: Any) -> int:
        svc = self.service
        cfg = svc.config
        try:
            h = svc.handles.get(name)
            if h is None:
                if not svc.ready:
                    raise BadRequest(503, None, "the service is starting (models loading)")
                raise BadRequest(404, "name", f"no served model named {name!r}")
            parsed = scope.get(_PARSED)
            if parsed is not None:  # parsed by answer_cached: some text was not cached
                texts, want, keys, t0 = parsed
            else:
                t0 = time.perf_counter()
                body = await read_body(scope, receive, self.limit)
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise BadRequest(400, "body", f"malformed JSON: {exc}") from None
                texts, want = check_predict(data, cfg.max_inputs, cfg.max_text_chars)
                keys = None
            state, preds = await h.predict(texts, want, t0, keys)
        except BadRequest as e:
            await send_json(send, e.status, e.body())
            return e.status
        except LeanMLError as exc:
            await send_json(send, 503, {"error": "unavailable", "detail": str(exc), "field": None})
            return 503
        await _http.send_bytes(send, 200, _answer(name, state, preds))
        return 200

    async def _feedback(self, name: str, scope: Any, receive: Any, send: Any) -> int:
        svc = self.service
        try:
            if name not in svc.handles:
                raise BadRequest(404, "name", f"no served model named {name!r}")
            body = await read_body(scope, receive, self.limit)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(400, "body", f"malformed JSON: {exc}") from None
            items = check_feedback(data, svc.config.max_feedback_items)
            outcomes = await svc.feedback(name, items)
        except BadRequest as e:
            await send_json(send, e.status, e.body())
            return e.status
        except LeanMLError as exc:
            await send_json(send, 503, {"error": "unavailable", "detail": str(exc), "field": None})
            return 503
        failed = [o for o in outcomes if not o.ok]
        accepted = len(outcomes) - len(failed)
        if "items" not in data:
            o = outcomes[0]
            if o.ok:
                await send_json(send, 200, {"model": name, "accepted": 1, **o.to_dict()})
                return 200
            else:
                await send_json(
                    send,
                    404,
                    {
                        "error": "unknown_prediction",
                        "detail": o.reason,
                        "field": "id",
                        "id": o.id,
                        "status": o.status,
                    },
                )
            return 404
        payload = {"model": name, "accepted": accepted, "items": [o.to_dict() for o in outcomes]}
        if failed:
            payload.update(
                error="unknown_prediction",
                field="items",
                detail=f"{len(failed)} of {len(outcomes)} ids cannot be joined; "
                "the others were stored",
            )
        status = 404 if failed else 200
        await send_json(send, status, payload)
        return status


def build_api(service: Service) -> FastAPI:
    """The FastAPI app: documented routes, admin, V2, metrics, health; error handlers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    api = FastAPI(
        title="leanml",
        version=__version__,
        description="Serve, monitor and compress scikit-learn text models.",
        lifespan=lifespan,
    )
    bearer = HTTPBearer(auto_error=False, description="LEANML_ADMIN_TOKEN")
    errors: dict[int | str, dict[str, Any]] = {
        c: {"model": ErrorBody} for c in (400, 404, 413, 422, 503)
    }

    async def admin(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008 - FastAPI idiom
    ) -> None:
        failure = check_bearer(request.headers.get("authorization"), service.admin_token)
        if failure is not None:
            raise BadRequest(failure[0], "authorization", failure[1])

    @api.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if request.url.path.startswith("/v2/"):
            return _json({"error": exc.message, "field": exc.field}, exc.status, headers)
        return _json(exc.body(), exc.status, headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        if any(e.get("type") == "json_invalid" for e in errs):
            return _json(BadRequest(400, "body", "malformed JSON").body(), 400)
        return _json(BadRequest(422, field, f"{field}: {first.get('msg', 'invalid')}").body(), 422)

    @api.exception_handler(StarletteHTTPException)
    async def _http_exc(request: Request, exc: StarletteHTTPException) -> Response:
        return _json(BadRequest(exc.status_code, None, str(exc.detail)).body(), exc.status_code)

    @api.exception_handler(LeanMLError)
    async def _lean(request: Request, exc: LeanMLError) -> Response:
        if isinstance(exc, ModelNotFoundError):
            status, field = 404, "name"
        elif isinstance(exc, ParameterError | ConfigError | TypeError):
            status, field = 422, None
        elif isinstance(exc, ServingError):
            status, field = 503, None
        else:
            status, field = 500, None
        return _json(BadRequest(status, field, str(exc)).body(), status)

    @api.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> Response:
        return _json(
            {"error": "internal", "detail": f"{type(exc).__name__}: {exc}", "field": None}, 500
        )

    @api.get("/health", tags=["health"])
    async def health() -> Response:
        models = {n: {"health": h.health(), **h.info()} for n, h in service.handles.items()}
        body = {
            "status": "ready" if service.ready else "starting",
            "ready": service.ready,
            "pid": os.getpid(),
            "models": models,
        }
        return _json(body, 200 if service.ready else 503)

    @api.get("/v1/models", tags=["models"])
    async def list_models() -> Response:
        return _json({"models": [h.info() for h in service.handles.values()]})

    @api.get("/v1/models/{name}", tags=["models"], responses=errors)
    async def model_info(name: str) -> Response:
        service.handle(name)
        return _json(await asyncio.to_thread(service.model_info, name))

    @api.get("/v1/models/{name}/stats", tags=["models"], responses=errors)
    async def model_stats(name: str) -> Response:
        service.handle(name)
        return _json(await asyncio.to_thread(service.stats, name))

    @api.post(
        "/v1/models/{name}/predict",
        tags=["predict"],
        response_model=PredictResponse,
        responses=errors,
    )
    async def predict(name: str, body: PredictRequest) -> Response:  # served by ServeApp
        """Classify texts. Every prediction carries an id for feedback (served by the fast
        path in front of this app; this route documents it and serves direct API use)."""
        h = service.handle(name)
        texts, want = check_predict(
            body.model_dump(), service.config.max_inputs, service.config.max_text_chars
        )
        state, preds = await h.predict(texts, want, time.perf_counter())
        return _json(
            {
                "model": name,
                "version": state.version,
                "variant": state.variant,
                "predictions": preds,
            }
        )

    @api.post("/v1/models/{name}/feedback", tags=["predict"], responses=errors)
    async def feedback(name: str, body: FeedbackRequest) -> Response:  # served by ServeApp
        """Send the true label of earlier predictions: ``{id, label}`` or ``{items: [...]}``.
        Answered once stored durably; an id that cannot be joined gets 404 with the reason
        (never_seen, expired, evicted)."""
        items = check_feedback(
            body.model_dump(exclude_none=True), service.config.max_feedback_items
        )
        outcomes = await service.feedback(name, items)
        return _json(
            {"model": name, "items": [o.to_dict() for o in outcomes]},
            200 if all(o.ok for o in outcomes) else 404,
        )

    @api.put(
        "/v1/models/{name}/variant", tags=["admin"], dependencies=[Depends(admin)], responses=errors
    )
    async def set_variant(name: str, body: VariantRequest) -> Response:
        """Switch the served variant (persisted; other workers follow within seconds)."""
        service.handle(name)
        return _json(await service.switch_variant(name, body.variant))

    @api.post(
        "/v1/models/{name}/reload", tags=["admin"], dependencies=[Depends(admin)], responses=errors
    )
    async def reload(name: str) -> Response:
        """Reload the latest version (and the active variant) from the registry."""
        service.handle(name)
        return _json(await service.reload(name))

    @api.patch(
        "/v1/monitoring/config", tags=["admin"], dependencies=[Depends(admin)], responses=errors
    )
    async def monitoring_config(request: Request) -> Response:
        """Change monitoring settings (sampling_rate, thresholds, ...) of this process."""
        try:
            changes = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(400, "body", f"malformed JSON: {exc}") from None
        if not isinstance(changes, dict) or not changes:
            raise BadRequest(422, "body", "send a JSON object of MonitorConfig fields to change")
        try:
            return _json({"monitoring": service.configure_monitoring(changes)})
        except (ParameterError, ConfigError, TypeError) as exc:
            msg = str(exc)
            m = re.search(r"'(thresholds\.[^']+)'", msg)
            field = m.group(1) if m else next((k for k in changes if f"'{k}'" in msg), None)
            raise BadRequest(422, field, msg) from None

    @api.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        text = await asyncio.to_thread(render_service, service)
        return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)

    api.include_router(v2.router(service))
    return api


def create_app(
    settings: Settings | None = None,
    config: ServingConfig | None = None,
    monitor_config: MonitorConfig | None = None,
    admin_token: str | None = None,
) -> ServeApp:
    """The ASGI app for ``settings.models_dir`` (models load in the lifespan startup)."""
    settings = settings or Settings.load()
    token = admin_token if admin_token is not None else os.environ.get("LEANML_ADMIN_TOKEN")
    service = Service(settings, config or ServingConfig.load(), monitor_config, admin_token=token)
    return ServeApp(service)
