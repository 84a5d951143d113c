"""Every bound and every malformed input answers a JSON error naming the field, never a 500."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Server, admin_headers

PREDICT = "/v1/models/intent/predict"
FEEDBACK = "/v1/models/intent/feedback"


def error(r: httpx.Response, status: int, field: str | None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] and body["detail"]
    assert body["field"] == field, body
    return body


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"inputs": ["ok"] * 17}, 413, "inputs"),
        ({"inputs": ["x" * 2001]}, 413, "inputs[0]"),
        ({"inputs": ["fine", "y" * 2001]}, 413, "inputs[1]"),
        ({"inputs": 3}, 422, "inputs"),
        ({"inputs": [1, 2]}, 422, "inputs[0]"),
        ({"inputs": ["a", None]}, 422, "inputs[1]"),
        ({"inputs": []}, 422, "inputs"),
        ({"texts": ["a"]}, 422, "inputs"),
        ({"inputs": ["a"], "return_probabilities": "yes"}, 422, "return_probabilities"),
        ([1, 2, 3], 422, "body"),
        ("just a string", 422, "body"),
    ],
)
def test_predict_limits_and_types(server: Server, payload, status, field) -> None:
    with server.client() as c:
        error(c.post(PREDICT, json=payload), status, field)


def test_body_size_and_malformed_json(server: Server) -> None:
    big = json.dumps({"inputs": ["word " * 300] * 60}).encode()
    assert len(big) > 65536
    with server.client() as c:
        error(c.post(PREDICT, content=big), 413, "body")
        error(c.post("/v2/models/intent/infer", content=big), 413, "body")
        # the admin token is checked first (tests/serving/test_defects.py), then the body bound
        error(c.put("/v1/models/intent/variant", content=big, headers=admin_headers()), 413, "body")

        def chunks():  # no Content-Length: the bound is enforced while reading
            for _ in range(20):
                yield b"x" * 8192

        error(c.post(PREDICT, content=chunks()), 413, "body")
        error(c.post(PREDICT, content=b'{"inputs": ["a"'), 400, "body")
        error(c.post(PREDICT, content=b"\xff\xfe"), 400, "body")
        error(c.post(PREDICT, content=b""), 400, "body")
        json_type = {"content-type": "application/json"}
        error(c.post(FEEDBACK, content=b"{oops", headers=json_type), 400, "body")
        error(c.post(FEEDBACK, content=b"{oops"), 415, "Content-Type")  # declared JSON first


def test_unknown_model_and_route(server: Server) -> None:
    with server.client() as c:
        error(c.post("/v1/models/nope/predict", json={"inputs": ["a"]}), 404, "name")
        error(c.post("/v1/models/nope/feedback", json={"id": "a-1", "label": "x"}), 404, "name")
        error(c.get("/v1/models/nope"), 404, "name")
        error(c.get("/v1/models/nope/stats"), 404, "name")
        assert c.get("/v2/models/nope").status_code == 404
        assert "error" in c.get("/v2/models/nope").json()
        assert c.get("/no/such/route").status_code == 404


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"label": "reply"}, 422, "id"),
        ({"id": 5, "label": "reply"}, 422, "id"),
        ({"id": "a-1"}, 422, "label"),
        ({"id": "a-1", "label": ["x"]}, 422, "label"),
        ({"id": "a-1", "label": ""}, 422, "label"),
        ({"items": []}, 422, "items"),
        ({"items": "nope"}, 422, "items"),
        ({"items": [{"id": "a-1", "label": "x"}] * 21}, 413, "items"),
        ({"items": [{"id": "a-1", "label": "x"}, {"id": "a-2"}]}, 422, "items[1].label"),
        ({"items": [7]}, 422, "items[0]"),
    ],
)
def test_feedback_validation(server: Server, payload, status, field) -> None:
    with server.client() as c:
        error(c.post(FEEDBACK, json=payload), status, field)


def test_v2_bad_requests(server: Server) -> None:
    with server.client() as c:
        url = "/v2/models/intent/infer"
        bad = [
            ({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 422),
            ({"inputs": []}, 422),
            ({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": [3]}]}, 422),
            (
                {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [17], "data": ["a"] * 17}]},
                413,
            ),
            (
                {
                    "inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                    "outputs": [{"name": "nope"}],
                },
                422,
            ),
        ]
        for payload, status in bad:
            r = c.post(url, json=payload)
            assert r.status_code == status, (payload, r.text)
            assert r.json()["error"]
        r = c.post(url, content=b"{", headers={"Inference-Header-Content-Length": "1"})
        assert r.status_code == 400
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "t",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": 50},
                    }
                ]
            }
        ).encode()
        r = c.post(
            url,
            content=head + b"\x05\x00\x00\x00ab",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        assert r.status_code == 400
        assert c.post("/v2/models/intent/versions/9/infer", json=bad[0][0]).status_code == 404


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["inputs", "return_probabilities", "id", "label", "items"]),
        json_values,
        max_size=3,
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads, raw=st.binary(max_size=40))
def test_fuzzed_bodies_never_yield_500(server: Server, payload, raw) -> None:
    with server.client() as c:
        for path in (PREDICT, FEEDBACK, "/v2/models/intent/infer"):
            r = c.post(path, json=payload)
            assert r.status_code < 500, (path, payload, r.text)
            r = c.post(path, content=raw)
            assert r.status_code < 500, (path, raw, r.text)
