"""Request/response shapes: pydantic models of the answers, plain checks for the hot path.

The request bodies' JSON Schemas (with the server's limits) are in :mod:`leanml.serving.openapi`.

The hot endpoints (predict, feedback, V2 infer) validate with :func:`check_predict` /
:func:`check_feedback` instead of pydantic (measured: FastAPI + pydantic body parsing costs
~50 us per request here, more than the compact model's predict). Every failure raises
:class:`BadRequest` with the HTTP status and the offending field, so no input ever yields a 500.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BadRequest",
    "ErrorBody",
    "FeedbackResponse",
    "FeedbackStatus",
    "Prediction",
    "PredictResponse",
    "MonitoringRequest",
    "ShadowRequest",
    "VariantRequest",
    "check_feedback",
    "check_predict",
]


class BadRequest(Exception):
    """An invalid request: ``status`` (400/404/413/422), ``field`` and a message."""

    def __init__(self, status: int, field: str | None, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.code = code or {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            409: "conflict",
            413: "payload_too_large",
            422: "invalid",
            503: "unavailable",
        }.get(status, "error")

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message, "field": self.field}


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    detail: str = Field(description="What went wrong.")
    field: str | None = Field(None, description="The offending request field, if any.")


class Prediction(BaseModel):
    id: str = Field(description="Prediction id; send it back with the true label as feedback.")
    label: Any
    confidence: float
    probabilities: dict[str, float] | None = None
    cached: bool | None = Field(None, description="True when answered from the cache.")


class PredictResponse(BaseModel):
    model: str
    version: int
    variant: Literal["original", "compact"]
    predictions: list[Prediction]


class FeedbackStatus(BaseModel):
    id: str
    status: str = Field(
        description="joined, duplicate or stored; never_seen, expired or evicted (404)."
    )
    reason: str | None = None


class FeedbackResponse(BaseModel):
    """``{id, label}`` is answered with ``id``/``status``/``reason`` at the top level,
    ``{items}`` with ``items``; a 404 adds ``error``, ``detail`` and ``field``."""

    model: str
    accepted: int = Field(description="How many labels were stored.")
    id: str | None = None
    status: str | None = None
    reason: str | None = None
    items: list[FeedbackStatus] | None = None


class VariantRequest(BaseModel):
    variant: Literal["original", "compact"]


class ShadowRequest(BaseModel):
    shadow: Literal["on", "off"]


class MonitoringRequest(BaseModel):
    monitoring: Literal["on", "off"]


def check_predict(data: Any, max_inputs: int, max_chars: int) -> tuple[list[str], bool]:
    if not isinstance(data, dict):
        raise BadRequest(422, "body", "the body must be a JSON object with an 'inputs' list")
    inputs = data.get("inputs")
    if inputs is None:
        raise BadRequest(422, "inputs", "the 'inputs' field is required (a list of texts)")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise BadRequest(422, "inputs", f"'inputs' must be a list of strings, got {_t(inputs)}")
    if not inputs:
        raise BadRequest(422, "inputs", "'inputs' must hold at least one text")
    if len(inputs) > max_inputs:
        raise BadRequest(
            413, "inputs", f"'inputs' holds {len(inputs)} texts; at most {max_inputs} per request"
        )
    for i, text in enumerate(inputs):
        if type(text) is not str:
            raise BadRequest(422, f"inputs[{i}]", f"inputs[{i}] must be a string, got {_t(text)}")
        if len(text) > max_chars:
            raise BadRequest(
                413,
                f"inputs[{i}]",
                f"inputs[{i}] has {len(text)} characters; at most {max_chars}",
            )
    want = data.get("return_probabilities", False)
    if not isinstance(want, bool):
        raise BadRequest(
            422, "return_probabilities", f"'return_probabilities' must be a bool, got {_t(want)}"
        )
    return inputs, want


def check_feedback(data: Any, max_items: int) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        raise BadRequest(422, "body", "the body must be a JSON object: {id, label} or {items}")
    if "items" in data:
        items = data["items"]
        if not isinstance(items, list) or not items:
            raise BadRequest(422, "items", "'items' must be a non-empty list of {id, label}")
        if len(items) > max_items:
            raise BadRequest(
                413, "items", f"'items' holds {len(items)} entries; at most {max_items}"
            )
        return [_item(it, f"items[{i}].") for i, it in enumerate(items)]
    return [_item(data, "")]


def _item(it: Any, where: str) -> tuple[str, str]:
    if not isinstance(it, dict):
        raise BadRequest(422, where.rstrip(".") or "body", "each item must be {id, label}")
    pid, label = it.get("id"), it.get("label")
    if pid is None:
        raise BadRequest(422, f"{where}id", f"'{where}id' is required")
    if type(pid) is not str or not pid or len(pid) > 64:
        raise BadRequest(422, f"{where}id", f"'{where}id' must be a prediction id string")
    if label is None:
        raise BadRequest(422, f"{where}label", f"'{where}label' is required")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise BadRequest(422, f"{where}label", f"'{where}label' must be a string, got {_t(label)}")
    label = str(label)
    if not label or len(label) > 200:
        raise BadRequest(422, f"{where}label", f"'{where}label' must be 1-200 characters")
    return pid, label


def _t(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a bool"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
