"""The Open Inference Protocol, driven by the real V2 client (tritonclient.http)."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import Server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")


@pytest.fixture()
def triton(server: Server):  # type: ignore[no-untyped-def]
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield client
    client.close()


def test_health_and_metadata(triton) -> None:  # type: ignore[no-untyped-def]
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("intent")
    assert triton.is_model_ready("intent", "1")
    assert not triton.is_model_ready("nope")
    meta = triton.get_model_metadata("intent")
    assert meta["name"] == "intent" and meta["versions"] == ["1"]
    assert meta["inputs"][0]["datatype"] == "BYTES"
    assert {o["name"] for o in meta["outputs"]} >= {"label", "confidence", "id"}
    assert triton.get_server_metadata()["name"] == "leanml"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_v1(triton, server: Server, intent_texts, binary: bool) -> None:  # type: ignore[no-untyped-def]
    texts = intent_texts[30:36]
    inp = httpclient.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary)
        for n in ("label", "confidence", "id", "probabilities")
    ]
    result = triton.infer("intent", [inp], outputs=outputs)
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in result.as_numpy("label")]
    conf = result.as_numpy("confidence")
    ids = [x.decode() if isinstance(x, bytes) else str(x) for x in result.as_numpy("id")]
    proba = result.as_numpy("probabilities")
    assert len(labels) == len(texts) and len(set(ids)) == len(texts)
    assert proba.shape[0] == len(texts)
    np.testing.assert_allclose(proba.max(axis=1), conf, rtol=1e-5)
    with server.client() as c:
        v1 = c.post("/v1/models/intent/predict", json={"inputs": texts}).json()["predictions"]
        assert labels == [p["label"] for p in v1]
        np.testing.assert_allclose(conf, [p["confidence"] for p in v1], rtol=1e-5)
        r = c.post("/v1/models/intent/feedback", json={"id": ids[0], "label": labels[0]})
        assert r.status_code == 200 and r.json()["status"] == "joined"


def test_infer_default_outputs_and_errors(triton, intent_texts) -> None:  # type: ignore[no-untyped-def]
    inp = httpclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in intent_texts[:2]], dtype=object))
    result = triton.infer("intent", [inp])
    assert result.as_numpy("label").shape == (2,)
    assert result.as_numpy("id").shape == (2,)
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="unknown model"):
        triton.infer("nope", [inp])
    bad = httpclient.InferInput("text", [1], "FP32")
    bad.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException, match="BYTES"):
        triton.infer("intent", [bad])
