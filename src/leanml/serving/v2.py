"""The Open Inference Protocol (KServe V2) REST endpoints, so existing V2 clients work unchanged.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``,
``.../ready`` and ``POST .../infer``. A model takes one BYTES input tensor (any name, shape
``[n]`` or ``[n, 1]``) of UTF-8 texts and answers the outputs ``label`` (BYTES), ``confidence``
(FP32), ``id`` (BYTES, the prediction ids for feedback) and, when asked for,
``probabilities`` (FP32 ``[n, classes]``). Tensors travel as JSON or with the binary tensor data
extension (``Inference-Header-Content-Length``), which is what ``tritonclient.http`` sends by
default. Predictions go through the same cache, batcher and monitor as ``/v1``.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from leanml._version import __version__
from leanml.serving._http import dumps
from leanml.serving.openapi import request_schemas, resolve, validate
from leanml.serving.schemas import BadRequest

__all__ = ["decode_bytes_tensor", "encode_bytes_tensor", "router"]

_HEADER = "inference-header-content-length"


def decode_bytes_tensor(raw: bytes) -> list[str]:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        if i + 4 > n:
            raise BadRequest(400, "inputs", "truncated BYTES tensor")
        (size,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + size > n:
            raise BadRequest(400, "inputs", "truncated BYTES tensor element")
        try:
            out.append(raw[i : i + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(422, "inputs", "BYTES elements must be UTF-8 text") from None
        i += size
    return out


def encode_bytes_tensor(values: list[str]) -> bytes:
    parts = []
    for v in values:
        b = str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def router(service: Any) -> APIRouter:
    """The ``/v2`` routes over ``service`` (its ``handles``, ``ready`` and ``config``)."""
    r = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
    _add_server_routes(r, service)
    _add_model_routes(r, service)
    _add_infer_routes(r, service)
    return r


def _err(status: int, message: str, field: str | None = None) -> Response:
    """The Open Inference Protocol's ``{"error"}``, with the offending ``field`` added."""
    return Response(
        dumps({"error": message, "field": field}), status_code=status, media_type="application/json"
    )


def _resolve(service: Any, name: str, version: str | None) -> Any:
    """The handle serving ``name`` (at ``version`` when given), else BadRequest 404."""
    h = service.handles.get(name)
    if h is None or h.state is None:
        raise BadRequest(404, "model_name", f"unknown model {name!r}")
    if version not in (None, "", str(h.state.version)):
        raise BadRequest(
            404,
            "model_version",
            f"model {name!r} serves version {h.state.version}, not {version}",
        )
    return h


def _metadata(h: Any) -> dict[str, Any]:
    st = h.state
    return {
        "name": h.name,
        "versions": [str(st.version)],
        "platform": "sklearn",
        "parameters": {"variant": st.variant},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "confidence", "datatype": "FP32", "shape": [-1]},
            {"name": "id", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(st.classes)]},
        ],
    }


def _add_server_routes(r: APIRouter, service: Any) -> None:
    """``GET /v2``, ``/v2/health/live`` and ``/v2/health/ready``."""

    @r.get("")
    async def server_metadata() -> Response:
        return Response(
            dumps({"name": "leanml", "version": __version__, "extensions": []}),
            media_type="application/json",
        )

    @r.get("/health/live")
    async def live() -> Response:
        return _ok({"live": True})

    @r.get("/health/ready")
    async def ready() -> Response:
        return _ok({"ready": bool(service.ready)}, 200 if service.ready else 503)


def _add_model_routes(r: APIRouter, service: Any) -> None:
    """Model metadata and readiness, with or without ``/versions/{version}``."""

    @r.get("/models/{name}")
    async def model_metadata(name: str) -> Response:
        try:
            return Response(
                dumps(_metadata(_resolve(service, name, None))), media_type="application/json"
            )
        except BadRequest as e:
            return _err(e.status, e.message, e.field)

    @r.get("/models/{name}/versions/{version}")
    async def model_version_metadata(name: str, version: str) -> Response:
        try:
            return Response(
                dumps(_metadata(_resolve(service, name, version))), media_type="application/json"
            )
        except BadRequest as e:
            return _err(e.status, e.message, e.field)

    @r.get("/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return _model_ready(service, name, None)

    @r.get("/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str) -> Response:
        return _model_ready(service, name, version)


def _ok(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")


def _model_ready(service: Any, name: str, version: str | None) -> Response:
    """``{"name", "ready"}``: 200 when ready, 400 while not; 404 ``{"error"}`` when unknown."""
    try:
        _resolve(service, name, version)
    except BadRequest as e:
        return _err(e.status, e.message, e.field)
    ready = bool(service.ready)
    return _ok({"name": name, "ready": ready}, 200 if ready else 400)


#: The inference answer: JSON, or with binary outputs the binary tensor data extension.
_INFER_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}


def _add_infer_routes(r: APIRouter, service: Any) -> None:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: the body is checked against the
    ``InferenceRequest`` schema of the OpenAPI document (:mod:`leanml.serving.openapi`)."""
    schemas = request_schemas(service.config, service.monitor_config)
    schema = resolve(schemas["InferenceRequest"], schemas)

    @r.post("/models/{name}/infer", responses=_INFER_ANSWER)
    async def infer(name: str, request: Request) -> Response:
        return await _infer(service, schema, name, None, request)

    @r.post("/models/{name}/versions/{version}/infer", responses=_INFER_ANSWER)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await _infer(service, schema, name, version, request)


async def _infer(
    service: Any, schema: dict[str, Any], name: str, version: str | None, request: Request
) -> Response:
    t0 = time.perf_counter()
    try:
        h = _resolve(service, name, version)
        req, binary = _read_request(await request.body(), request.headers.get(_HEADER))
        validate(schema, req)
        texts = _texts(req, binary, service.config.max_inputs, service.config.max_text_chars)
        wanted, binary_out = _outputs(req)
        state, preds = await h.predict(texts, "probabilities" in wanted, t0)
    except BadRequest as e:
        return _err(e.status, e.message, e.field)
    outputs, blobs = _encode_outputs(_output_values(state, preds, wanted), wanted, binary_out)
    body: dict[str, Any] = {
        "model_name": name,
        "model_version": str(state.version),
        "outputs": outputs,
        "parameters": {"variant": state.variant},
    }
    if "id" in req and isinstance(req["id"], str):
        body["id"] = req["id"]
    head_bytes = dumps(body)
    if blobs:
        return Response(
            head_bytes + b"".join(blobs),
            media_type="application/octet-stream",
            headers={_HEADER: str(len(head_bytes))},
        )
    return Response(head_bytes, media_type="application/json")


def _read_request(raw: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """(the JSON inference request, the binary tensor data after it)."""
    if header_length is not None:
        try:
            k = int(header_length)
        except ValueError:
            raise BadRequest(400, _HEADER, f"invalid {_HEADER} header") from None
        head, binary = raw[:k], raw[k:]
    else:
        head, binary = raw, b""
    try:
        return orjson.loads(head), binary
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, "body", f"malformed JSON: {exc}") from None


def _output_values(
    state: Any, preds: list[dict[str, Any]], wanted: list[str]
) -> dict[str, tuple[str, list[int], Any]]:
    """Per output name: (datatype, shape, values)."""
    n = len(preds)
    values: dict[str, tuple[str, list[int], Any]] = {
        "label": ("BYTES", [n], [str(p["label"]) for p in preds]),
        "confidence": ("FP32", [n], [p["confidence"] for p in preds]),
        "id": ("BYTES", [n], [p["id"] for p in preds]),
    }
    if "probabilities" in wanted:
        k = len(state.classes)
        rows = [[p["probabilities"][c] for c in state.classes] for p in preds]
        values["probabilities"] = ("FP32", [n, k], rows)
    return values


def _encode_outputs(
    values: dict[str, tuple[str, list[int], Any]],
    wanted: list[str],
    binary_out: dict[str, bool],
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The output tensors of the answer, as JSON data or binary blobs (in ``wanted`` order)."""
    outputs = []
    blobs: list[bytes] = []
    for out_name in wanted:
        dtype, shape, data = values[out_name]
        entry: dict[str, Any] = {"name": out_name, "datatype": dtype, "shape": shape}
        if binary_out.get(out_name):
            blob = (
                encode_bytes_tensor(data)
                if dtype == "BYTES"
                else np.asarray(data, dtype="<f4").tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = (
                np.asarray(data, dtype=np.float32).ravel().tolist() if dtype == "FP32" else data
            )
        outputs.append(entry)
    return outputs, blobs


def _texts(req: Any, binary: bytes, max_inputs: int, max_chars: int) -> list[str]:
    if not isinstance(req, dict):
        raise BadRequest(422, "body", "the inference request must be a JSON object")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(422, "inputs", "send exactly one input tensor (BYTES texts)")
    t = inputs[0]
    if t.get("datatype") != "BYTES":
        raise BadRequest(
            422, "inputs[0].datatype", f"the input tensor must be BYTES, got {t.get('datatype')!r}"
        )
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise BadRequest(
                400,
                "inputs[0].parameters.binary_data_size",
                "binary_data_size does not match the binary payload",
            )
        texts = decode_bytes_tensor(binary[:size])
    else:
        data = t.get("data")
        if not isinstance(data, list):
            raise BadRequest(422, "inputs[0].data", "'data' must be a list of strings")
        texts = _flatten(data)
    if not texts:
        raise BadRequest(422, "inputs[0].data", "the input tensor is empty")
    shape = t.get("shape")
    if shape is not None and (
        not isinstance(shape, list)
        or not all(type(d) is int and d >= 0 for d in shape)
        or math.prod(shape) != len(texts)
    ):
        raise BadRequest(
            422, "inputs[0].shape", f"shape {shape!r} does not hold the {len(texts)} texts sent"
        )
    if len(texts) > max_inputs:
        raise BadRequest(413, "inputs[0].data", f"{len(texts)} texts; at most {max_inputs}")
    shape = t.get("shape")
    if not isinstance(shape, list) or math.prod(shape) != len(texts):
        raise BadRequest(
            422, "inputs[0].shape", f"the shape {shape} does not hold the {len(texts)} texts sent"
        )
    for i, x in enumerate(texts):
        if len(x) > max_chars:
            raise BadRequest(413, f"inputs[0].data[{i}]", f"text {i} exceeds {max_chars} chars")
    return texts


def _flatten(data: list[Any]) -> list[str]:
    """The texts of a ``[n]`` or ``[n, 1]`` BYTES tensor's JSON data; 422 for anything else
    (mixed rows, nested lists, numbers, null, booleans)."""
    nested = bool(data) and isinstance(data[0], list)
    flat: list[Any] = []
    for i, row in enumerate(data):
        if isinstance(row, list) != nested:
            raise BadRequest(
                422, f"inputs[0].data[{i}]", "rows of 'data' must all be strings or all be lists"
            )
        if nested and not row:
            raise BadRequest(422, f"inputs[0].data[{i}]", "a row of 'data' is empty")
        flat.extend(row if nested else (row,))
    for i, x in enumerate(flat):
        if type(x) is not str:
            raise BadRequest(422, "inputs[0].data", f"element {i} of 'data' is not a string")
    return flat


def _outputs(req: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    known = ("label", "confidence", "id", "probabilities")
    params = req.get("parameters") or {}
    all_binary = bool(isinstance(params, dict) and params.get("binary_data_output"))
    outs = req.get("outputs")
    if not outs:
        names = ["label", "confidence", "id"]
        return names, dict.fromkeys(names, all_binary)
    if not isinstance(outs, list):
        raise BadRequest(422, "outputs", "'outputs' must be a list")
    names, binary = [], {}
    for i, o in enumerate(outs):
        nm = o.get("name") if isinstance(o, dict) else None
        if nm not in known:
            raise BadRequest(
                422, f"outputs[{i}].name", f"unknown output {nm!r}; known: {', '.join(known)}"
            )
        p = o.get("parameters") or {}
        names.append(nm)
        binary[nm] = bool(p.get("binary_data", all_binary)) if isinstance(p, dict) else False
    return names, binary
