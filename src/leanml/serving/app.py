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
FastAPI app behind it (:mod:`leanml.serving.api`). Both answer predict and feedback through
:mod:`leanml.serving.answers`, so a request gets the same answer from either.
:func:`leanml.serving.server.run` starts uvicorn with httptools and uvloop.

``HEAD`` is answered wherever ``GET`` is, as ``GET`` without the body (the FastAPI routes
only declare ``GET``; a 405's ``Allow`` names both). Errors are JSON ``{"error", "detail",
"field"}`` everywhere: 400 malformed JSON, 401/403 admin
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

import logging
import time
from typing import Any

import orjson
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from leanml.config import ServingConfig, Settings
from leanml.monitor import MonitorConfig
from leanml.serving import _http, answers
from leanml.serving._access import AccessLog
from leanml.serving._http import Disconnected, drain, header, read_body, replay, send_json
from leanml.serving.api import ADMIN_ROUTES, build_api
from leanml.serving.auth import check_bearer
from leanml.serving.schemas import BadRequest, check_predict
from leanml.serving.service import Service

_log = logging.getLogger("leanml.serving")

__all__ = ["UNMATCHED", "ServeApp", "create_app"]


#: The ``route`` label (and access-log route) of a request that matches no route: unknown
#: paths all share it, so the label's values are bounded by the routes the app has.
UNMATCHED = "<unmatched>"


_INTERNAL = {"error": "internal", "detail": "internal error (logged by the server)", "field": None}


def _is_admin(method: str, path: str) -> bool:
    """Whether ``method path`` is an admin route (:data:`leanml.serving.api.ADMIN_ROUTES`)."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1:3] == ["v1", "models"]:
        parts[3] = "{name}"
    return (method, "/".join(parts)) in ADMIN_ROUTES


_FAST = {"predict": "/v1/models/{name}/predict", "feedback": "/v1/models/{name}/feedback"}
_PARSED = "leanml.predict"  # scope key: (texts, return_probabilities, cache keys, arrival)


class ServeApp:
    """ASGI callable: fast predict/feedback, everything else to the FastAPI app.

    CORS is off unless ``[serving] cors_allow_origins`` lists origins: then Starlette's
    ``CORSMiddleware`` wraps every route (preflights answered; ``Content-Type``,
    ``Authorization`` and ``X-Feedback-Token`` allowed) and a request carrying an ``Origin``
    skips the protocol's cached-answer shortcut, which would not add the CORS headers.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self.api = build_api(service)
        self.limit = service.config.max_body_bytes
        self.access = AccessLog(service.config, service.handles)
        origins = list(service.config.cors_allow_origins)
        self.cors = bool(origins)
        self._entry: Any = self._dispatch
        if origins:
            self._entry = CORSMiddleware(
                self._dispatch,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "OPTIONS"],
                allow_headers=["Content-Type", "Authorization", "X-Feedback-Token"],
            )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        method = scope["method"]
        path: str = scope["path"]
        started = time.perf_counter()
        if method == "POST" and path.startswith("/v1/models/"):
            name, _, action = path[11:].partition("/")
            if action == "predict" or action == "feedback":
                fast = self._predict if action == "predict" else self._feedback
                ids: list[str] = []
                try:
                    status = await fast(name, scope, receive, send, ids)
                except Disconnected:
                    status = 499
                self._count(_FAST[action], status)
                if self.access.wants(status):
                    self.access.write(method, _FAST[action], status, started, name, ids)
                return
        status_box = [0]

        async def counting_send(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                status_box[0] = msg["status"]
            await send(msg)

        if method == "HEAD":  # HTTP: HEAD wherever GET is; uvicorn drops the body it sends
            scope = {**scope, "method": "GET"}
        try:
            await self._to_api(scope, receive, counting_send)
        except Disconnected:
            status_box[0] = 499
        except Exception:  # answered 500 by the API's handler (or here): keep the connection
            _log.exception("%s %s failed", method, self._route_of(scope))
            if status_box[0] == 0:
                await send_json(counting_send, 500, _INTERNAL)
        finally:
            route = self._route_of(scope)  # a route template, never the raw path
            self._count(route, status_box[0])
            if self.access.wants(status_box[0]):
                model = scope.get("path_params", {}).get("name")
                self.access.write(method, route, status_box[0], started, model)

    def _route_of(self, scope: Any) -> str:
        """The template of the route ``scope`` matched (fully, or by path only: a 405), else
        :data:`UNMATCHED`. The router records it in ``scope``; a request answered before the
        router (admin auth, a body too large) is matched here against the app's routes."""
        path = getattr(scope.get("route"), "path", None)
        if path:
            return str(path)
        partial = None
        for r in self.api.router.routes:
            match, _ = r.matches(scope)
            if match is Match.FULL:
                return str(getattr(r, "path", UNMATCHED))
            if match is Match.PARTIAL and partial is None:
                partial = str(getattr(r, "path", UNMATCHED))
        return partial or UNMATCHED

    async def _to_api(self, scope: Any, receive: Any, send: Any) -> None:
        """The FastAPI app's answer; admin auth is checked before any body is read, and bodies
        are read (bounded) here."""
        method, path = scope["method"], scope["path"]
        if _is_admin(method, path):
            failure = check_bearer(
                (header(scope, b"authorization") or b"").decode("latin-1") or None,
                self.service.admin_token,
            )
            if failure is not None:
                error = BadRequest(failure[0], "authorization", failure[1])
                await self._error(scope, receive, send, error)
                return
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                body = await read_body(scope, receive, self.limit)
            except BadRequest as e:
                await self._error(scope, receive, send, e)
                return
            receive = replay(body, receive)
        await self.api(scope, receive, send)

    async def _error(self, scope: Any, receive: Any, send: Any, e: BadRequest) -> int:
        """Send ``e``'s JSON answer. A body the request still carries is read and discarded
        first, up to ``max_drain_bytes`` (beyond it the connection closes), so a client that
        sends its whole body before reading gets the answer instead of a reset."""
        extra: list[tuple[bytes, bytes]] = []
        if e.status == 401:
            extra.append((b"www-authenticate", b"Bearer"))
        elif e.status == 503:
            extra.append((b"retry-after", b"1"))
        if not await drain(scope, receive, self.service.config.max_drain_bytes):
            extra.append((b"connection", b"close"))
        await send_json(send, e.status, e.body(), extra=extra)
        return e.status

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
        if self.cors and any(k.lower() == b"origin" for k, _ in scope["headers"]):
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
        if self.access.wants(200):
            ids = [p["id"] for p in preds]
            self.access.write("POST", _FAST["predict"], 200, t0, name, ids)
        return answers.predict_answer(name, state, preds)

    async def _predict(self, name: str, scope: Any, receive: Any, send: Any, ids: list[str]) -> int:
        try:
            body = await answers.predict(
                self.service,
                name,
                lambda: read_body(scope, receive, self.limit),
                scope.get(_PARSED),  # parsed by answer_cached: some text was not cached
            )
        except BadRequest as e:
            return await self._error(scope, receive, send, e)
        await _http.send_bytes(send, 200, body)
        if self.access.enabled:  # the ids, for the access log (only when it is on)
            ids.extend(p["id"] for p in orjson.loads(body)["predictions"])
        return 200

    async def _feedback(
        self, name: str, scope: Any, receive: Any, send: Any, ids: list[str]
    ) -> int:
        try:
            status, payload = await answers.feedback(
                self.service, name, lambda: read_body(scope, receive, self.limit), scope["headers"]
            )
        except BadRequest as e:
            return await self._error(scope, receive, send, e)
        await send_json(send, status, payload)
        if self.access.enabled:
            items = payload.get("items") or [payload]
            ids.extend(str(i["id"]) for i in items if isinstance(i, dict) and "id" in i)
        return status


def create_app(
    settings: Settings | None = None,
    config: ServingConfig | None = None,
    monitor_config: MonitorConfig | None = None,
    admin_token: str | None = None,
) -> ServeApp:
    """The ASGI app for ``settings.models_dir`` (models load in the lifespan startup); the
    sections and the admin token come from ``settings`` unless given here."""
    service = Service(settings or Settings.load(), config, monitor_config, admin_token=admin_token)
    return ServeApp(service)
