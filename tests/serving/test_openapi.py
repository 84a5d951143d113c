"""The OpenAPI document states every rule the server enforces, and the server keeps each one.

For each request body the document describes, a valid body is mutated once per constraint the
*document* states (type, enum, required, bounds, lengths, pattern, item counts, unknown fields,
empty objects), each mutation checked invalid by an independent validator (``jsonschema``), then
sent to a real server on loopback: each must get a 4xx JSON answer naming the field (413 where
the constraint is a size limit, else 422). Loosening the server fails the sends; dropping a rule
from the document fails :func:`test_the_known_rules_are_stated` (the rules issue #20 named).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from leanml.config import MonitorConfig
from leanml.serving.openapi import CHANGEABLE_MONITORING, LIMIT, resolve

from .conftest import Server, admin_headers

#: conftest's [serving] max_body_bytes
MAX_BODY_BYTES = 65536
#: Wrong values tried in turn until one breaks the schema.
_WRONG: list[Any] = [{"x": 1}, [], "s", 1.5, 7, True, None]


@dataclasses.dataclass
class Violation:
    body: Any
    fields: set[str]  # the answer's field must be one of these (or inside one)
    rule: str
    status: int


def _at(body: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(body)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def _without(body: Any, path: list[Any], key: str) -> Any:
    out = copy.deepcopy(body)
    node = out
    for p in path:
        node = node[p]
    del node[key]
    return out


def _name(path: list[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "body"


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _is(value: Any, t: str) -> bool:
    return jsonschema.Draft202012Validator({"type": t}).is_valid(value)


def violations(root: dict[str, Any], base: Any) -> Iterator[Violation]:
    """One invalid body per constraint of ``root`` (resolved) that ``base`` (valid) reaches."""
    check = jsonschema.Draft202012Validator(root)
    assert check.is_valid(base), list(check.iter_errors(base))

    def invalid(body: Any) -> bool:
        return not check.is_valid(body)

    def walk(s: dict[str, Any], v: Any, path: list[Any], alt: set[str]) -> Iterator[Violation]:
        here = _name(path)
        big = 413 if s.get(LIMIT) else 422

        def candidates(values: list[Any], rule: str, status: int = 422) -> Iterator[Violation]:
            for w in values:
                body = _at(base, path, w)
                if invalid(body):
                    yield Violation(body, {here}, f"{here}: {rule}", status)
                    return
            raise AssertionError(f"no value breaks {rule} at {here}")

        if "type" in s:
            wrong = [w for w in _WRONG if not any(_is(w, t) for t in _types(s))]
            yield from candidates(wrong, f"type {s['type']}")
        if "enum" in s:
            yield from candidates(["not-one-of-them", 12345], "enum")
        if "minimum" in s:
            d = 1 if "integer" in _types(s) else 0.001
            yield from candidates([s["minimum"] - d], f"minimum {s['minimum']}")
        if "maximum" in s:
            d = 1 if "integer" in _types(s) else 0.5
            yield from candidates([s["maximum"] + d], f"maximum {s['maximum']}")
        if isinstance(v, str):
            if s.get("minLength", 0) > 0:
                yield from candidates(["x" * (s["minLength"] - 1)], "minLength")
            if "maxLength" in s:
                yield from candidates(["x" * (s["maxLength"] + 1)], "maxLength", big)
            if "pattern" in s:
                yield from candidates(["!not it!"], "pattern")
        if isinstance(v, list):
            if s.get("minItems", 0) > 0:
                yield from candidates([v[: s["minItems"] - 1]], "minItems")
            if "maxItems" in s and v:
                yield from candidates(
                    [(v * (s["maxItems"] + 1))[: s["maxItems"] + 1]], "maxItems", big
                )
            if "items" in s and v:
                yield from walk(s["items"], v[0], [*path, 0], set())
        if isinstance(v, dict):
            for key in s.get("required", ()):
                if key in v:
                    body = _without(base, path, key)
                    if invalid(body):
                        names = {_name([*path, k]) for k in alt or {key}}
                        yield Violation(body, names, f"{here}: required {key}", 422)
            if s.get("minProperties", 0) > 0:
                yield from candidates([{}], "minProperties")
            if s.get("additionalProperties") is False:
                body = _at(base, [*path, "unexpected_field"], 1)
                assert invalid(body)
                yield Violation(
                    body, {_name([*path, "unexpected_field"])}, f"{here}: unknown field", 422
                )
            for key, sub in s.get("properties", {}).items():
                if key in v:
                    yield from walk(sub, v[key], [*path, key], set())
        if "anyOf" in s:
            matching = [b for b in s["anyOf"] if jsonschema.Draft202012Validator(b).is_valid(v)]
            assert matching, f"{here}: the base matches no branch"
            names = {k for b in s["anyOf"] for k in b.get("required", ())}
            yield from walk(matching[0], v, path, names)

    yield from walk(root, base, [], set())


# ------------------------------------------------------------------------------ the document
@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    with server.client() as c:
        return dict(c.get("/openapi.json").json())


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    comps = doc["components"]["schemas"]
    return dict(resolve(comps[name], comps))


def test_the_known_rules_are_stated(document: dict[str, Any]) -> None:
    """The rules the server enforces and issue #20 named, with the server's limits (conftest:
    max_inputs 16, max_text_chars 2000, max_feedback_items 20)."""
    paths = document["paths"]
    for method, path, name in (
        ("post", "/v1/models/{name}/predict", "PredictRequest"),
        ("post", "/v1/models/{name}/feedback", "FeedbackRequest"),
        ("patch", "/v1/monitoring/config", "MonitoringConfigPatch"),
        ("post", "/v1/monitoring/erase", "EraseRequest"),
        ("post", "/v2/models/{name}/infer", "InferenceRequest"),
        ("post", "/v2/models/{name}/versions/{version}/infer", "InferenceRequest"),
    ):
        op = paths[path][method]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + name) and op["requestBody"]["required"]
        for status in ("400", "413", "422"):
            body = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert body.endswith("/V2Error" if path.startswith("/v2/") else "/ErrorBody")
    assert "415" in paths["/v1/models/{name}/feedback"]["post"]["responses"]
    for path, ops in paths.items():  # every error answer is JSON
        for method, op in ops.items():
            for status, answer in op.get("responses", {}).items():
                if status.startswith(("4", "5")):
                    assert "application/json" in answer.get("content", {}), (method, path)

    predict = _schema(document, "PredictRequest")
    assert predict["required"] == ["inputs"]
    text, many = predict["properties"]["inputs"]["anyOf"]
    assert text == {"type": "string", "maxLength": 2000, LIMIT: True}
    assert (many["minItems"], many["maxItems"], many["items"]["maxLength"]) == (1, 16, 2000)
    assert predict["properties"]["return_probabilities"]["type"] == "boolean"

    feedback = _schema(document, "FeedbackRequest")
    single, batch = feedback["anyOf"]
    assert set(single["required"]) == {"id", "label"} and batch["required"] == ["items"]
    pid = single["properties"]["id"]
    assert (pid["type"], pid["minLength"], pid["maxLength"]) == ("string", 1, 64)
    items = feedback["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 20)
    assert set(items["items"]["required"]) == {"id", "label"}

    patch = _schema(document, "MonitoringConfigPatch")
    assert patch["additionalProperties"] is False and patch["minProperties"] == 1
    assert set(patch["properties"]) == {*CHANGEABLE_MONITORING, "thresholds"}
    fixed = {"alert_rules", "relative_accuracy", "pending_max_entries"}
    assert set(CHANGEABLE_MONITORING) == {f.name for f in dataclasses.fields(MonitorConfig)} - fixed
    for name, sub in patch["properties"].items():
        if name != "thresholds":
            assert "enum" in sub or {"minimum", "maximum"} <= set(sub) or sub["type"] == "boolean"
    assert patch["properties"]["sampling_rate"] == {"type": "number", "minimum": 0, "maximum": 1}

    erase = _schema(document, "EraseRequest")
    assert erase["minProperties"] == 1 and erase["additionalProperties"] is False
    assert (
        erase["properties"]["ids"]["minItems"] == 1 and erase["properties"]["older_than"]["pattern"]
    )

    infer = _schema(document, "InferenceRequest")
    assert infer["required"] == ["inputs"]
    tensors = infer["properties"]["inputs"]
    assert (tensors["minItems"], tensors["maxItems"]) == (1, 1)
    tensor = tensors["items"]
    assert set(tensor["required"]) == {"name", "datatype", "shape"}
    assert tensor["properties"]["datatype"] == {"enum": ["BYTES"]}
    shape = tensor["properties"]["shape"]
    assert (shape["minItems"], shape["maxItems"], shape["items"]["minimum"]) == (1, 2, 0)
    flat, rows = tensor["properties"]["data"]["anyOf"]
    assert (flat["minItems"], flat["maxItems"], flat["items"]["maxLength"]) == (1, 16, 2000)
    assert rows["items"] == flat
    assert [b["required"] for b in tensor["anyOf"]] == [["data"], ["parameters"]]
    names = infer["properties"]["outputs"]["items"]["properties"]["name"]["enum"]
    assert set(names) == {"label", "confidence", "id", "probabilities"}


# ------------------------------------------------------------------------------ the sends
_PATCH_BASE: dict[str, Any] = {}


def _patch_base(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid body naming every changeable setting (never sent: only its violations are)."""
    out: dict[str, Any] = {}
    for name, sub in schema["properties"].items():
        if name == "thresholds":
            rules = list(sub["properties"])
            out[name] = {rules[0]: 0.5, rules[1]: {"warning": 0.1, "critical": None}}
        elif "enum" in sub:
            out[name] = sub["enum"][0]
        elif sub.get("type") == "boolean":
            out[name] = False
        else:
            out[name] = sub["minimum"]
    return out


def _cases(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str, Any]]:
    """(method, url, headers, schema name, valid base body)."""
    admin = admin_headers()
    tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hi", "there"]}
    rows = {**tensor, "shape": [2, 1], "data": [["hi"], ["there"]]}
    v2 = {
        "id": "r1",
        "parameters": {"binary_data_output": False},
        "inputs": [tensor],
        "outputs": [{"name": "label", "parameters": {"binary_data": False}}],
    }
    patch = _patch_base(_schema(doc, "MonitoringConfigPatch"))
    return [
        ("POST", "/v1/models/intent/predict", {}, "PredictRequest",
         {"inputs": ["hello there", "fix the printer"], "return_probabilities": True}),
        ("POST", "/v1/models/intent/predict", {}, "PredictRequest", {"inputs": "hello there"}),
        ("POST", "/v1/models/intent/feedback", {}, "FeedbackRequest",
         {"id": "p-1-abc", "label": "reply"}),
        ("POST", "/v1/models/intent/feedback", {}, "FeedbackRequest",
         {"items": [{"id": "p-1-abc", "label": "reply"}, {"id": "p-2-abc", "label": 3}]}),
        ("PATCH", "/v1/monitoring/config", admin, "MonitoringConfigPatch", patch),
        ("POST", "/v1/monitoring/erase", admin, "EraseRequest",
         {"ids": ["p-1-abc"], "older_than": "3650d"}),
        ("POST", "/v2/models/intent/infer", {}, "InferenceRequest", v2),
        ("POST", "/v2/models/intent/versions/1/infer", {}, "InferenceRequest",
         {**v2, "inputs": [rows]}),
    ]  # fmt: skip


def test_every_documented_rule_is_enforced(server: Server, document: dict[str, Any]) -> None:
    sent = 0
    failures = []
    rules: set[str] = set()
    with server.client() as c:
        for method, url, headers, name, base in _cases(document):
            schema = _schema(document, name)
            if name != "MonitoringConfigPatch":  # the valid base itself is accepted
                r = c.request(method, url, json=base, headers=headers)
                ok = r.status_code == 200 or (name == "FeedbackRequest" and r.status_code == 404)
                assert ok, (url, base, r.status_code, r.text)
            for v in violations(schema, base):
                r = c.request(method, url, json=v.body, headers=headers)
                sent += 1
                rules.add(f"{name}: {v.rule}")
                try:
                    answer = r.json()
                except ValueError:
                    answer = {}
                field = str(answer.get("field"))
                fields = v.fields
                if len(json.dumps(v.body)) > MAX_BODY_BYTES:  # the body limit answers first
                    fields = {"body"}
                named = any(field == f or field.startswith((f + ".", f + "[")) for f in fields)
                if r.status_code != v.status or not answer.get("error") or not named:
                    failures.append((name, v.rule, v.fields, r.status_code, r.text[:200]))
    assert not failures, "\n".join(map(str, failures))
    print(f"{sent} documented-invalid bodies, {len(rules)} rules: each 4xx naming the field")
    assert sent >= 150


def test_v2_shape_must_hold_the_texts(server: Server) -> None:
    """The one V2 rule JSON Schema cannot state (it is in the tensor's description)."""
    with server.client() as c:
        for shape in ([3], [2, 2], [1, 1], [0]):
            t = {"name": "t", "datatype": "BYTES", "shape": shape, "data": ["a", "b"]}
            r = c.post("/v2/models/intent/infer", json={"inputs": [t]})
            assert r.status_code == 422 and r.json()["field"] == "inputs[0].shape", r.text
        for shape in ([2], [2, 1], [1, 2]):
            t = {"name": "t", "datatype": "BYTES", "shape": shape, "data": ["a", "b"]}
            assert c.post("/v2/models/intent/infer", json={"inputs": [t]}).status_code == 200
