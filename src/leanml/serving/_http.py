"""Raw ASGI helpers shared by the fast path and the V2 endpoints (JSON encoding, bodies)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from leanml.serving.schemas import BadRequest

__all__ = ["drain", "dumps", "header", "read_body", "replay", "send_bytes", "send_json"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DONE = "leanml.body_done"  # scope key: the request body has been read to its end
_STARTED = "leanml.body_started"  # scope key: some of the body has been asked for
_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
JSON = b"application/json"
WORKER = str(os.getpid()).encode()


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=_OPTS)


class Disconnected(Exception):
    """The client went away before sending its whole body."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    cl = header(scope, b"content-length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise BadRequest(400, "content-length", "invalid Content-Length header") from None
        if n > limit:
            raise BadRequest(413, "body", f"the body has {n} bytes; at most {limit}")
    chunks: list[bytes] = []
    total = 0
    while True:
        msg = await receive()
        scope[_STARTED] = True
        if msg["type"] != "http.request":
            raise Disconnected
        chunk = msg.get("body", b"")
        total += len(chunk)
        more = msg.get("more_body", False)
        if not more:
            scope[_DONE] = True
        if total > limit:
            raise BadRequest(413, "body", f"the body exceeds {limit} bytes")
        if not more:
            return chunk if not chunks else b"".join([*chunks, chunk])
        chunks.append(chunk)


async def drain(scope: Scope, receive: Receive, budget: int) -> bool:
    """Read and discard what is left of the request's body, at most ``budget`` bytes: whether
    it was read to its end (else the connection must close after the answer). A client waiting
    for ``100 Continue`` has sent nothing: its body is not asked for."""
    if scope.get(_DONE):
        return True
    length = header(scope, b"content-length")
    if length is None and header(scope, b"transfer-encoding") is None:
        return True  # no body
    if length is not None and length.strip() == b"0":
        return True
    if (header(scope, b"expect") or b"").lower() == b"100-continue" and not scope.get(_STARTED):
        return False
    if length is not None and length.strip().isdigit() and int(length) > budget:
        return False
    seen = 0
    while seen <= budget:
        msg = await receive()
        if msg["type"] != "http.request":
            return False
        seen += len(msg.get("body", b""))
        if not msg.get("more_body", False):
            scope[_DONE] = True
            return seen <= budget
    return False


def replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def inner() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return inner


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-leanml-worker", WORKER),
    ]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, **kw: Any) -> None:
    await send_bytes(send, status, dumps(payload), **kw)
