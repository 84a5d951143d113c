"""The request bodies and error answers of the OpenAPI document: every rule the server enforces.

The hot paths validate by hand (:func:`~leanml.serving.schemas.check_predict`,
:func:`~leanml.serving.schemas.check_feedback`, the V2 checks in :mod:`leanml.serving.v2`),
for speed. :func:`request_schemas` states the same rules as JSON Schema, with the limits of
the running server's :class:`~leanml.config.ServingConfig` (``max_inputs``, ``max_text_chars``,
``max_feedback_items``) and its monitor's alert rules, so ``/openapi.json`` is the contract
the server keeps: a body that breaks a stated rule gets a 4xx JSON answer naming the field.
``tests/serving/test_openapi.py`` derives one violating body per stated constraint from this
document and sends each to a real server, so a rule dropped from the schema (or from the
server) fails it.

Rules JSON Schema cannot state are in the descriptions: the body size limit
(``max_body_bytes``, 413), the product of a V2 tensor's ``shape`` equal to its number of
texts, a threshold's ``critical`` at least as severe as its ``warning``.

Two bodies are checked against their schema itself, with :func:`validate` (a small validator
for the subset of JSON Schema used here): ``PATCH /v1/monitoring/config`` and
``POST /v1/monitoring/erase``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from leanml._validation import DURATION_PATTERN
from leanml.config import ServingConfig
from leanml.monitor import MonitorConfig
from leanml.serving.schemas import BadRequest

__all__ = [
    "CHANGEABLE_MONITORING",
    "ERROR_STATUSES",
    "LIMIT",
    "MAX_ERASE_IDS",
    "document",
    "request_schemas",
    "resolve",
    "validate",
]

#: Most prediction ids in one erase request.
MAX_ERASE_IDS = 10_000

#: Monitor settings ``PATCH /v1/monitoring/config`` changes at run time (and ``thresholds``):
#: every :class:`~leanml.config.MonitorConfig` field but ``alert_rules`` (levels change through
#: ``thresholds``), ``relative_accuracy`` (sketches of another accuracy do not merge) and
#: ``pending_max_entries`` (it sizes the ground-truth ring built at start).
CHANGEABLE_MONITORING = (
    "sampling_rate",
    "sample_below_confidence",
    "store_inputs",
    "flush_interval_s",
    "flush_on_record",
    "flush_hold_s",
    "flush_batch_size",
    "buffer_size",
    "batch_buffer_size",
    "ground_truth_buffer_size",
    "detail_buffer_size",
    "window_s",
    "windows_kept",
    "stats_window_s",
    "store_interval_s",
    "pending_max_age_s",
    "metrics_window_n",
    "metrics_window_s",
    "recent_window_n",
    "calibration_tolerance",
    "alert_interval_s",
    "max_events",
    "retention_max_age_s",
    "retention_max_rows",
    "retention_interval_s",
    "retention_reclaim",
    "resource_interval_s",
    "resource_history",
    "gc_idle_collect",
    "gc_idle_s",
    "max_oov_per_flush",
    "max_labels",
    "overhead_budget",
)

#: Run-time bounds of the monitor's sizes and periods: a size allocates (rings of
#: ``recent_window_n``, ``metrics_window_n``) and a period drives a thread, so neither is
#: left unbounded for a request, even an admin's.
_SIZE = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
_PERIOD = {"type": "number", "minimum": 0.01, "maximum": 31_536_000}
_SHARE = {"type": "number", "minimum": 0, "maximum": 1}

#: Error statuses each kind of route documents (and may answer).
ERROR_STATUSES: dict[str, tuple[int, ...]] = {
    "predict": (400, 404, 413, 422, 503),
    "feedback": (400, 401, 403, 404, 413, 415, 422, 503),
    "model": (404, 503),
    "admin": (400, 401, 403, 404, 413, 422, 503),
    "admin_state": (400, 401, 403, 404, 409, 413, 422, 503),  # 409: a state it cannot change
    "v2": (400, 404, 413, 422, 503),
    "health": (503,),
}


#: Marks a ``maxItems``/``maxLength`` that is a size limit of the server: beyond it the answer
#: is 413 (any other broken rule: 422).
LIMIT = "x-leanml-limit"


def _text(cfg: ServingConfig) -> dict[str, Any]:
    return {"type": "string", "maxLength": cfg.max_text_chars, LIMIT: True}


def _many(cfg_max: int, items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": cfg_max, "items": items, LIMIT: True}


def _monitoring_patch(monitor: MonitorConfig) -> dict[str, Any]:
    sizes = {f: _SIZE for f in CHANGEABLE_MONITORING if f.endswith(("_size", "_n", "_kept"))}
    sizes.update({f: _SIZE for f in ("max_events", "resource_history", "max_oov_per_flush")})
    sizes["max_labels"] = _SIZE
    periods = {f: _PERIOD for f in CHANGEABLE_MONITORING if f.endswith("_s")}
    level = {"type": ["number", "null"]}
    rules = {
        r.name: {
            "anyOf": [
                {"type": "number"},
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {"warning": level, "critical": level},
                },
            ]
        }
        for r in monitor.alert_rules
    }
    props: dict[str, Any] = {
        **sizes,
        **periods,
        "sampling_rate": _SHARE,
        "sample_below_confidence": {**_SHARE, "type": ["number", "null"]},
        "store_inputs": {"enum": ["text", "redacted", "hash", "none"]},
        "calibration_tolerance": _SHARE,
        "overhead_budget": _SHARE,
        "retention_max_age_s": {**_PERIOD, "type": ["number", "null"]},
        "flush_hold_s": {"type": ["number", "null"], "minimum": 0.00001, "maximum": 60},
        "retention_max_rows": {"type": ["integer", "null"], "minimum": 0, "maximum": 10**12},
        "retention_reclaim": {"enum": ["full", "plain", "none"]},
        "gc_idle_collect": {"type": "boolean"},
        "flush_on_record": {"type": "boolean"},
        "thresholds": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": rules,
            "description": "New warning/critical levels per alert rule (a number sets the "
            "warning level); critical must stay at least as severe as warning (422).",
        },
    }
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {k: props[k] for k in (*CHANGEABLE_MONITORING, "thresholds")},
        "description": "Monitor settings of this process to change; the others stay.",
        "example": {"sampling_rate": 0.1},
    }


def request_schemas(cfg: ServingConfig, monitor: MonitorConfig) -> dict[str, dict[str, Any]]:
    """The JSON Schemas of every request body, by component name, with ``cfg``'s limits."""
    text = _text(cfg)
    pid = {"type": "string", "minLength": 1, "maxLength": 64}
    label = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer"}]}
    item = {
        "type": "object",
        "required": ["id", "label"],
        "properties": {"id": pid, "label": label},
    }
    items = _many(cfg.max_feedback_items, {"$ref": "#/components/schemas/FeedbackItem"})
    v2_text = _many(cfg.max_inputs, text)
    return {
        "PredictRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "inputs": {
                    "description": f"Texts to classify: 1 to {cfg.max_inputs}, each at most "
                    f"{cfg.max_text_chars} characters (413 beyond); one text may be sent as "
                    f"a string. The whole body is at most {cfg.max_body_bytes} bytes (413).",
                    "anyOf": [
                        text,
                        _many(cfg.max_inputs, text),
                    ],
                },
                "return_probabilities": {"type": "boolean", "default": False},
            },
            "example": {"inputs": ["please reply by friday"], "return_probabilities": True},
        },
        "FeedbackItem": item,
        "FeedbackRequest": {
            "type": "object",
            "description": "One label ``{id, label}`` or several ``{items: [{id, label}]}`` "
            "(then ``items`` alone is read).",
            "properties": {"items": items},
            "anyOf": [
                {**item, "not": {"required": ["items"]}},
                {"type": "object", "required": ["items"]},
            ],
            "example": {"id": "0123456789abcdef", "label": "reply"},
        },
        "MonitoringConfigPatch": _monitoring_patch(monitor),
        "EraseRequest": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "description": "Erase stored input texts and hashes by prediction id and/or age.",
            "properties": {
                "ids": _many(MAX_ERASE_IDS, pid),
                "older_than": {
                    "type": "string",
                    "pattern": DURATION_PATTERN,
                    "description": "Predictions made longer ago than this: 30d, 12h, 90m...",
                },
            },
            "example": {"older_than": "30d"},
        },
        "InferenceInputTensor": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "description": "One tensor of UTF-8 texts: ``data`` (``[n]`` strings or ``[n, 1]`` "
            "rows), or the binary tensor data extension (``parameters.binary_data_size``). "
            f"The product of ``shape`` is the number of texts, at most {cfg.max_inputs}.",
            "properties": {
                "name": {"type": "string"},
                "datatype": {"enum": ["BYTES"]},
                "shape": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {"type": "integer", "minimum": 0},
                },
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                },
                "data": {
                    "anyOf": [
                        v2_text,
                        _many(cfg.max_inputs, v2_text),
                    ]
                },
            },
            "anyOf": [
                {"required": ["data"]},
                {
                    "required": ["parameters"],
                    "properties": {"parameters": {"required": ["binary_data_size"]}},
                },
            ],
        },
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean"}},
                },
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {"$ref": "#/components/schemas/InferenceInputTensor"},
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"enum": ["label", "confidence", "id", "probabilities"]},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data": {"type": "boolean"}},
                            },
                        },
                    },
                },
            },
            "example": {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]
            },
        },
    }


# ------------------------------------------------------------------------------ validation
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v == v,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _types(schema: dict[str, Any]) -> Iterable[str]:
    t = schema.get("type")
    return () if t is None else ([t] if isinstance(t, str) else t)


class _Mismatch(BadRequest):
    """A value of the wrong JSON type (an anyOf branch that fits worse than another's error)."""


def validate(schema: dict[str, Any], value: Any, field: str = "body") -> None:
    """Raise :class:`BadRequest` naming the first field of ``value`` that breaks ``schema``
    (type, enum, bounds, lengths, pattern, items, properties, anyOf): 413 past a size limit
    (``maxItems``/``maxLength`` marked :data:`LIMIT`), else 422. Of an ``anyOf`` whose branches
    all fail, the error reported is the one of the branch that fits ``value`` best (its type,
    then the deepest error, then one that is not a type mismatch)."""

    def bad(why: str, status: int = 422) -> BadRequest:
        return BadRequest(status, field, f"'{field}' {why}")

    big = 413 if schema.get(LIMIT) else 422
    types = list(_types(schema))
    if types and not any(_TYPES[t](value) for t in types):
        got = type(value).__name__
        raise _Mismatch(422, field, f"'{field}' must be {' or '.join(types)}, got {got}")
    if "enum" in schema and value not in schema["enum"]:
        raise bad(f"must be one of {', '.join(map(str, schema['enum']))}")
    if "anyOf" in schema:
        errors: list[tuple[tuple[bool, int, bool], BadRequest]] = []
        for branch in schema["anyOf"]:
            try:
                validate(branch, value, field)
                break
            except BadRequest as e:
                typed = any(_TYPES[t](value) for t in _types(branch))
                errors.append(((typed, len(e.field or ""), not isinstance(e, _Mismatch)), e))
        else:
            best = max(errors, key=lambda x: x[0])[0]
            raise next(e for k, e in errors if k == best)
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            raise bad(f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise bad(f"must be <= {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise bad(f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise bad(f"must have at most {schema['maxLength']} characters", big)
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise bad(f"must match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise bad(f"must hold at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise bad(f"must hold at most {schema['maxItems']} items", big)
        if "items" in schema:
            for i, v in enumerate(value):
                validate(schema["items"], v, f"{field}[{i}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            raise bad(f"must name at least {schema['minProperties']} field(s)")
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise BadRequest(422, _join(field, key), f"'{_join(field, key)}' is required")
        for key, v in value.items():
            if key in props:
                validate(props[key], v, _join(field, key))
            elif schema.get("additionalProperties") is False:
                raise BadRequest(422, _join(field, key), f"unknown field '{_join(field, key)}'")


def resolve(schema: Any, components: dict[str, Any]) -> Any:
    """``schema`` with every ``#/components/schemas/...`` reference replaced by its target."""
    if isinstance(schema, list):
        return [resolve(s, components) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return resolve(components[ref.rsplit("/", 1)[1]], components)
    return {k: resolve(v, components) for k, v in schema.items()}


def _join(field: str, key: str) -> str:
    return key if field == "body" else f"{field}.{key}"


# ------------------------------------------------------------------------------ the document
def document(
    openapi: dict[str, Any],
    schemas: dict[str, dict[str, Any]],
    bodies: dict[tuple[str, str], str],
    errors: dict[tuple[str, str], str],
) -> dict[str, Any]:
    """``openapi`` with ``schemas`` as components, each ``(method, path)`` of ``bodies`` given
    that JSON request body, and each of ``errors`` its kind's error answers
    (:data:`ERROR_STATUSES`; V2 routes the ``V2Error`` body, the others ``ErrorBody``)."""
    comps = openapi.setdefault("components", {}).setdefault("schemas", {})
    comps.update(schemas)
    comps["V2Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}},
    }
    paths = openapi.get("paths", {})
    for (method, path), name in bodies.items():
        op = paths[path][method]
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    for (method, path), kind in errors.items():
        op = paths[path][method]
        responses = op.setdefault("responses", {})
        responses.pop("422", None)  # FastAPI's HTTPValidationError: never this server's shape
        body = "V2Error" if path.startswith("/v2/") else "ErrorBody"
        for status in ERROR_STATUSES[kind]:
            responses[str(status)] = {
                "description": _PHRASES[status],
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                },
            }
    for name in ("HTTPValidationError", "ValidationError"):
        if not _refers(openapi, name):
            comps.pop(name, None)
    return openapi


def _refers(openapi: dict[str, Any], name: str) -> bool:
    return f"#/components/schemas/{name}" in repr(openapi.get("paths", {}))


_PHRASES = {
    400: "Malformed JSON or header.",
    401: "Missing credential.",
    403: "Wrong credential.",
    404: "Unknown model, version or prediction id.",
    409: "The server's configuration does not allow it.",
    413: "A bound exceeded (body bytes, texts, characters, items).",
    415: "Not sent as application/json.",
    422: "A field breaks a rule of the request schema.",
    503: "Not ready, or the store is unavailable (Retry-After).",
}
