"""The answers to ``POST /v1/models/{name}/predict`` and ``.../feedback``, written once.

Both the raw ASGI fast path (:class:`~leanml.serving.app.ServeApp`) and the documented FastAPI
routes (:mod:`leanml.serving.api`) answer these two requests through the functions below, so
the same request gets the same status and the same JSON body from either (the test
``tests/serving/test_answers.py`` sends the same requests to both and compares):

* predict: ``{"model", "version", "variant", "predictions": [{"id", "label", "confidence",
  ["probabilities"], ["cached"]}]}``;
* feedback ``{"id", "label"}``: ``{"model", "accepted": 1, "id", "status", ["reason"]}``; an id
  that cannot be joined gets 404 ``{"error": "unknown_prediction", "detail", "field": "id",
  "id", "status"}``;
* feedback ``{"items": [...]}``: ``{"model", "accepted", "items": [{"id", "status",
  ["reason"]}]}``, 404 with ``"error"``, ``"detail"``, ``"field": "items"`` added when some id
  cannot be joined (the others are stored);
* every failure raises :class:`~leanml.serving.schemas.BadRequest` (``{"error", "detail",
  "field"}``): 400 malformed JSON, 401/403 a missing or wrong feedback credential (only when
  ``[serving] feedback_token`` is set, see :mod:`leanml.serving.auth`), 404 unknown model,
  413 a bound exceeded, 415 feedback not sent as ``Content-Type: application/json`` (``"field":
  "Content-Type"``: a browser sends ``text/plain`` or a form type cross-site without a
  preflight, so only JSON feedback is taken), 422 wrong types, 503 not ready or unavailable.
  A predict body is parsed as JSON whatever its ``Content-Type``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from leanml.errors import LeanMLError
from leanml.serving.auth import FEEDBACK_TOKEN_HEADER, check_feedback_token
from leanml.serving.handle import ModelHandle
from leanml.serving.schemas import BadRequest, check_feedback, check_predict
from leanml.serving.service import FeedbackOutcome, Service

__all__ = [
    "ReadBody",
    "Parsed",
    "feedback",
    "check_feedback_request",
    "feedback_answer",
    "parse_json",
    "predict",
    "predict_answer",
    "served",
]

#: A predict body already parsed by the protocol's cache probe: (texts, return_probabilities,
#: cache keys, arrival time from ``time.perf_counter``).
Parsed = tuple[list[str], bool, list[bytes] | None, float]

#: Reads the whole request body (raises BadRequest 413 past the body limit).
ReadBody = Callable[[], Awaitable[bytes]]


def served(service: Service, name: str) -> ModelHandle:
    """The handle serving ``name``; 503 while the models load, else 404 when there is none."""
    h = service.handles.get(name)
    if h is not None:
        return h
    if not service.ready:
        raise BadRequest(503, None, "the service is starting (models loading)")
    raise BadRequest(
        404,
        "name",
        f"no served model named {name!r} (served: {', '.join(service.handles) or 'none'})",
    )


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "body", f"malformed JSON: {exc}") from None


def predict_answer(name: str, state: Any, preds: list[dict[str, Any]]) -> bytes:
    """The 200 body of a predict request (also written by the protocol for a cache hit)."""
    out = {"model": name, "version": state.version, "variant": state.variant, "predictions": preds}
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


async def predict(
    service: Service, name: str, read: ReadBody, parsed: Parsed | None = None
) -> bytes:
    """The 200 body for a predict request on ``name``; ``parsed`` skips reading the body."""
    h = served(service, name)
    if parsed is None:
        t0 = time.perf_counter()
        cfg = service.config
        texts, want = check_predict(parse_json(await read()), cfg.max_inputs, cfg.max_text_chars)
        keys = None
    else:
        texts, want, keys, t0 = parsed
    try:
        state, preds = await h.predict(texts, want, t0, keys)
    except LeanMLError as exc:
        raise BadRequest(503, None, str(exc)) from exc
    return predict_answer(name, state, preds)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def check_feedback_request(service: Service, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """415 unless the body is declared JSON; 401/403 without the configured credential."""
    headers = list(headers)
    ctype = _header(headers, b"content-type")
    media = (ctype or "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise BadRequest(
            415,
            "Content-Type",
            "feedback must be sent with the header 'Content-Type: application/json', "
            f"got {ctype!r}",
            "unsupported_media_type",
        )
    denied = check_feedback_token(
        _header(headers, b"authorization"),
        _header(headers, FEEDBACK_TOKEN_HEADER.encode()),
        service.config.feedback_token,
    )
    if denied is not None:
        raise BadRequest(denied[0], "Authorization", denied[1])


async def feedback(
    service: Service, name: str, read: ReadBody, headers: Iterable[tuple[bytes, bytes]] = ()
) -> tuple[int, dict[str, Any]]:
    """(status, JSON payload) for a feedback request on ``name`` with these raw headers."""
    check_feedback_request(service, headers)
    served(service, name)
    data = parse_json(await read())
    items = check_feedback(data, service.config.max_feedback_items)
    try:
        outcomes = await service.feedback(name, items)
    except LeanMLError as exc:
        raise BadRequest(503, None, str(exc)) from exc
    return feedback_answer(name, "items" in data, outcomes)


def feedback_answer(
    name: str, batch: bool, outcomes: Sequence[FeedbackOutcome]
) -> tuple[int, dict[str, Any]]:
    """(status, payload) for the outcomes of one feedback request (see module docstring)."""
    failed = sum(not o.ok for o in outcomes)
    if not batch:
        o = outcomes[0]
        if o.ok:
            return 200, {"model": name, "accepted": 1, **o.to_dict()}
        return 404, {
            "error": "unknown_prediction",
            "detail": o.reason,
            "field": "id",
            "id": o.id,
            "status": o.status,
        }
    payload: dict[str, Any] = {
        "model": name,
        "accepted": len(outcomes) - failed,
        "items": [o.to_dict() for o in outcomes],
    }
    if not failed:
        return 200, payload
    payload.update(
        error="unknown_prediction",
        field="items",
        detail=f"{failed} of {len(outcomes)} ids cannot be joined; the others were stored",
    )
    return 404, payload
