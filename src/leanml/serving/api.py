"""The FastAPI app behind the fast path: documented routes, admin, V2, /metrics, /health.

:func:`build_api` assembles it from one function per route group. ``POST .../predict`` and
``.../feedback`` are normally answered by :class:`~leanml.serving.app.ServeApp` before they reach
this app; the routes here document them (OpenAPI) and serve direct use of the app, through the
same :mod:`leanml.serving.answers` functions, so both give the same answers. Errors are JSON
``{"error", "detail", "field"}`` (the V2 routes keep the Open Inference Protocol's
``{"error"}``, with ``"field"`` added). The OpenAPI document's request bodies and error answers
come from :mod:`leanml.serving.openapi`: the rules the server enforces, with its limits.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from leanml._validation import parse_duration
from leanml._version import __version__
from leanml.errors import ConfigError, LeanMLError, ModelNotFoundError, ParameterError, ServingError
from leanml.monitor import PROMETHEUS_CONTENT_TYPE
from leanml.serving import answers, openapi, v2
from leanml.serving._http import dumps, read_body
from leanml.serving._worker_metrics import WorkerMetrics
from leanml.serving.auth import check_bearer
from leanml.serving.metrics import render_service
from leanml.serving.schemas import (
    BadRequest,
    ErrorBody,
    FeedbackResponse,
    MonitoringRequest,
    PredictResponse,
    ShadowRequest,
    VariantRequest,
)
from leanml.serving.service import Service

__all__ = ["ADMIN_ROUTES", "build_api"]

#: (method, route) of every admin endpoint: the token is checked before any body is read.
ADMIN_ROUTES = frozenset(
    {
        ("PUT", "/v1/models/{name}/variant"),
        ("PUT", "/v1/models/{name}/shadow"),
        ("PUT", "/v1/models/{name}/monitoring"),
        ("POST", "/v1/models/{name}/reload"),
        ("PATCH", "/v1/monitoring/config"),
        ("POST", "/v1/monitoring/erase"),
    }
)

#: The JSON request body (a component of :func:`leanml.serving.openapi.request_schemas`) of
#: each route that reads its body itself.
_BODIES = {
    ("post", "/v1/models/{name}/predict"): "PredictRequest",
    ("post", "/v1/models/{name}/feedback"): "FeedbackRequest",
    ("patch", "/v1/monitoring/config"): "MonitoringConfigPatch",
    ("post", "/v1/monitoring/erase"): "EraseRequest",
    ("post", "/v2/models/{name}/infer"): "InferenceRequest",
    ("post", "/v2/models/{name}/versions/{version}/infer"): "InferenceRequest",
}

#: The kind of error answers (:data:`leanml.serving.openapi.ERROR_STATUSES`) of each route.
_ERRORS = {
    ("get", "/health"): "health",
    ("get", "/v1/models/{name}"): "model",
    ("get", "/v1/models/{name}/stats"): "model",
    ("post", "/v1/models/{name}/predict"): "predict",
    ("post", "/v1/models/{name}/feedback"): "feedback",
    **{(m.lower(), p): "admin" for m, p in ADMIN_ROUTES},
    ("put", "/v1/models/{name}/shadow"): "admin_state",
    ("put", "/v1/models/{name}/monitoring"): "admin_state",
    ("get", "/v2/health/ready"): "health",
    ("get", "/v2/models/{name}"): "model",
    ("get", "/v2/models/{name}/versions/{version}"): "model",
    ("get", "/v2/models/{name}/ready"): "v2",
    ("get", "/v2/models/{name}/versions/{version}/ready"): "v2",
    ("post", "/v2/models/{name}/infer"): "v2",
    ("post", "/v2/models/{name}/versions/{version}/infer"): "v2",
}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


def build_api(service: Service) -> FastAPI:
    """The FastAPI app: documented routes, admin, V2, metrics, health; error handlers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        cfg = service.config
        extra = None
        try:
            if cfg.worker_metrics_port:
                extra = await asyncio.to_thread(
                    WorkerMetrics,
                    lambda: render_service(service),
                    cfg.worker_metrics_host,
                    cfg.worker_metrics_port,
                )
            yield
        finally:
            if extra is not None:
                await asyncio.to_thread(extra.close)
            await service.stop()

    api = FastAPI(
        title="leanml",
        version=__version__,
        description="Serve, monitor and compress scikit-learn text models.",
        lifespan=lifespan,
    )
    _add_error_handlers(api)
    _add_health_routes(api, service)
    _add_model_routes(api, service)
    _add_predict_routes(api, service)
    _add_admin_routes(api, service)
    api.include_router(v2.router(service))
    _document(api, service)
    return api


def _add_error_handlers(api: FastAPI) -> None:
    """Every error as ``{"error", "detail", "field"}`` (V2 paths: ``{"error", "field"}``)."""

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
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        body = BadRequest(exc.status_code, None, str(exc.detail), code).body()
        if request.url.path.startswith("/v2/"):
            body.pop("detail")
            body["error"] = str(exc.detail)
        headers = dict(exc.headers or {})
        if "Allow" in headers:  # 405: HEAD is answered wherever GET is (ServeApp)
            allowed = {m.strip() for m in headers["Allow"].split(",") if m.strip()}
            if "GET" in allowed:
                allowed.add("HEAD")
            headers["Allow"] = ", ".join(sorted(allowed))
        return _json(body, exc.status_code, headers)

    @api.exception_handler(LeanMLError)
    async def _lean(request: Request, exc: LeanMLError) -> Response:
        headers = None
        if isinstance(exc, ModelNotFoundError):
            status, field, detail = 404, "name", str(exc)
        elif isinstance(exc, ParameterError | ConfigError | TypeError):
            status, field, detail = 422, None, str(exc)
        elif isinstance(exc, ServingError):  # its text may name the store: not for clients
            status, field, detail = 503, None, "the service is unavailable; retry shortly"
            headers = {"Retry-After": "1"}
        else:
            status, field, detail = 500, None, "internal error (logged by the server)"
        return _json(BadRequest(status, field, detail).body(), status, headers)

    @api.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> Response:
        # never the exception's text: it may name files, hosts or the store
        return _json(
            {"error": "internal", "detail": "internal error (logged by the server)", "field": None},
            500,
        )


def _add_health_routes(api: FastAPI, service: Service) -> None:
    """``GET /health`` (per-model health, 503 while loading) and ``GET /metrics``."""

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

    @api.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        text = await asyncio.to_thread(render_service, service)
        return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)


def _add_model_routes(api: FastAPI, service: Service) -> None:
    """``GET /v1/models``, ``/v1/models/{name}`` and ``/v1/models/{name}/stats``."""

    @api.get("/v1/models", tags=["models"])
    async def list_models() -> Response:
        return _json({"models": [h.info() for h in service.handles.values()]})

    @api.get("/v1/models/{name}", tags=["models"])
    async def model_info(name: str) -> Response:
        service.handle(name)
        return _json(await asyncio.to_thread(service.model_info, name))

    @api.get("/v1/models/{name}/stats", tags=["models"])
    async def model_stats(name: str) -> Response:
        service.handle(name)
        return _json(await asyncio.to_thread(service.stats, name))


def _add_predict_routes(api: FastAPI, service: Service) -> None:
    """``POST /v1/models/{name}/predict`` and ``.../feedback`` (see :mod:`.answers`)."""
    limit = service.config.max_body_bytes

    def reader(request: Request) -> Callable[[], Awaitable[bytes]]:
        return lambda: read_body(request.scope, request.receive, limit)

    @api.post(
        "/v1/models/{name}/predict",
        tags=["predict"],
        response_model=PredictResponse,
    )
    async def predict(name: str, request: Request) -> Response:
        """Classify texts. Every prediction carries an id for feedback (served by the fast
        path in front of this app; this route documents it and serves direct API use)."""
        body = await answers.predict(service, name, reader(request))
        return Response(body, media_type="application/json")

    @api.post(
        "/v1/models/{name}/feedback",
        tags=["predict"],
        response_model=FeedbackResponse,
    )
    async def feedback(name: str, request: Request) -> Response:
        """Send the true label of earlier predictions: ``{id, label}`` or ``{items: [...]}``.
        Send it as ``Content-Type: application/json`` (415 otherwise) and, when the server has
        a feedback token, with ``Authorization: Bearer <token>`` or ``X-Feedback-Token``.
        Answered once stored durably; an id that cannot be joined gets 404 with the reason
        (never_seen, expired, evicted)."""
        status, payload = await answers.feedback(
            service, name, reader(request), request.scope["headers"]
        )
        return _json(payload, status)


def _switched(info: dict[str, Any] | None, field: str, off: str) -> Response:
    """The model's info after pausing or resuming something in it; None: this server runs
    without it (409 naming ``field``, ``off`` saying why)."""
    if info is None:
        raise BadRequest(409, field, off)
    return _json(info)


def _add_admin_routes(api: FastAPI, service: Service) -> None:
    """Variant switch, reload and monitoring config, behind ``Authorization: Bearer``."""
    bearer = HTTPBearer(auto_error=False, description="LEANML_ADMIN_TOKEN")

    async def admin(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008 - FastAPI idiom
    ) -> None:
        failure = check_bearer(request.headers.get("authorization"), service.admin_token)
        if failure is not None:
            raise BadRequest(failure[0], "authorization", failure[1])

    guarded: dict[str, Any] = {"tags": ["admin"], "dependencies": [Depends(admin)]}
    schemas = openapi.request_schemas(service.config, service.monitor_config)

    @api.put("/v1/models/{name}/variant", **guarded)
    async def set_variant(name: str, body: VariantRequest) -> Response:
        """Switch the served variant (persisted; other workers follow within seconds)."""
        service.handle(name)
        return _json(await service.switch_variant(name, body.variant))

    @api.put("/v1/models/{name}/shadow", **guarded)
    async def set_shadow(name: str, body: ShadowRequest) -> Response:
        """Pause (``off``) or resume (``on``) the model's shadow check in this process: paused,
        nothing is sampled or re-scored and the original is released; a fallback decided by
        another process is still followed."""
        info = service.set_shadow(name, body.shadow == "on")
        off = 'the shadow check is off in this server\'s configuration ([serving] shadow = "off")'
        return _switched(info, "shadow", off)

    @api.put("/v1/models/{name}/monitoring", **guarded)
    async def set_monitoring(name: str, body: MonitoringRequest) -> Response:
        """Pause (``off``) or resume (``on``) the monitoring of the model in this process:
        paused, its predictions are not recorded (counted as ``unmonitored``) and the
        throughput rule leaves the paused time out; ids are still issued and labels still
        join."""
        info = service.set_monitoring(name, body.monitoring == "on")
        off = (
            "monitoring is off in this server's configuration "
            "(--no-monitoring or [serving] monitoring = false)"
        )
        return _switched(info, "monitoring", off)

    @api.post("/v1/models/{name}/reload", **guarded)
    async def reload(name: str) -> Response:
        """Reload the latest version (and the active variant) from the registry."""
        service.handle(name)
        return _json(await service.reload(name))

    @api.patch("/v1/monitoring/config", **guarded)
    async def monitoring_config(request: Request) -> Response:
        """Change monitoring settings (sampling_rate, thresholds, ...) of this process."""
        changes = answers.parse_json(await request.body())
        openapi.validate(schemas["MonitoringConfigPatch"], changes)
        try:
            return _json({"monitoring": service.configure_monitoring(changes)})
        except (ParameterError, ConfigError, TypeError) as exc:
            msg = str(exc)
            m = re.search(r"'(thresholds\.[^']+)'", msg)
            field = m.group(1) if m else next((k for k in changes if f"'{k}'" in msg), None)
            raise BadRequest(422, field, msg) from None

    @api.post("/v1/monitoring/erase", **guarded)
    async def erase(request: Request) -> Response:
        """Erase the stored input texts and hashes of predictions, by id (``ids``) and/or by
        age (``older_than``: ``30d``, ``12h``...). Counts, windows and the rest of each detail
        row stay. Answers ``{"erased": rows erased, "ids": ids sent, "before": cutoff}``."""
        body = answers.parse_json(await request.body())
        openapi.validate(schemas["EraseRequest"], body)
        age = body.get("older_than")
        older_than_s = parse_duration(age, "older_than", "erase") if age is not None else None
        return _json(await service.erase_details(list(body.get("ids", ())), older_than_s))


def _document(api: FastAPI, service: Service) -> None:
    """Add the request bodies the routes read themselves and every route's error answers to
    the app's OpenAPI document (:func:`leanml.serving.openapi.document`)."""
    generate = api.openapi
    schemas = openapi.request_schemas(service.config, service.monitor_config)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()

    def build() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = openapi.document(generate(), schemas, _BODIES, _ERRORS)
        return api.openapi_schema

    api.openapi = build  # type: ignore[method-assign]  # FastAPI's "extending OpenAPI" idiom
