"""The web-free core: cache, batcher, id space, auth, request checks, config, V2 tensors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from leanml.errors import ParameterError
from leanml.serving import MicroBatcher, PredictionCache
from leanml.serving.auth import check_bearer
from leanml.serving.schemas import BadRequest, check_feedback, check_predict
from leanml.serving.v2 import decode_bytes_tensor, encode_bytes_tensor


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_cache_lru_entry_bound_and_counters() -> None:
    c = PredictionCache(max_entries=2, max_bytes=10**6)
    k = [c.key(t) for t in ("a", "b", "c")]
    c.put(k[0], "x", 0.9, np.zeros(2))
    c.put(k[1], "y", 0.8, np.zeros(2))
    assert c.get(k[0]) is not None  # a is now most recent
    c.put(k[2], "z", 0.7, np.zeros(2))  # evicts b
    assert c.get(k[1]) is None and c.get(k[0])[0] == "x" and c.get(k[2])[0] == "z"
    s = c.stats()
    assert (s["hits"], s["misses"], s["evictions"], s["entries"]) == (3, 1, 1, 2)


def test_cache_get_all_is_all_or_nothing() -> None:
    clock = Clock()
    c = PredictionCache(max_entries=3, max_bytes=10**6, ttl_s=10, clock=clock)
    ka, kb, kc, kd = (c.key(t) for t in "abcd")
    c.put(ka, "x", 0.9, np.zeros(2))
    c.put(kb, "y", 0.8, np.zeros(2))
    assert c.get_all([ka, kc]) is None  # one miss: nothing counted, nothing moved
    assert (c.hits, c.misses) == (0, 0)
    entries = c.get_all([kb, ka, ka])
    assert entries is not None and [e[0] for e in entries] == ["y", "x", "x"]
    assert (c.hits, c.misses) == (3, 0)
    c.put(kc, "z", 0.7, np.zeros(2))
    c.put(kd, "w", 0.6, np.zeros(2))  # evicts b, the least recently used (a was touched)
    assert c.get_all([kb]) is None and c.get_all([ka]) is not None
    clock.t = 11.0
    assert c.get_all([ka]) is None and c.hits == 4  # expired: left to get() to count


def test_cache_byte_bound_ttl_and_invalidation() -> None:
    clock = Clock()
    c = PredictionCache(max_entries=100, max_bytes=1000, ttl_s=10, clock=clock)
    for i in range(10):
        c.put(c.key(str(i)), "x", 0.5, np.zeros(16))  # ~350 bytes each
    assert c.bytes <= 1000 and len(c) < 10 and c.evictions == 10 - len(c)
    key = c.key("fresh")
    c.put(key, "y", 0.5, np.zeros(1))
    clock.t = 10.5
    assert c.get(key) is None and c.expired == 1
    c.put(key, "y", 0.5, np.zeros(1))
    gen = c.generation
    assert c.invalidate() >= 1 and len(c) == 0 and c.bytes == 0 and c.generation == gen + 1
    assert c.get(key) is None


def test_cache_normalization_and_disabled() -> None:
    assert PredictionCache(normalize="none").key(" a") != PredictionCache().key("a")
    assert PredictionCache(normalize="strip").key(" a ") == PredictionCache().key("a")
    nfc = PredictionCache(normalize="nfc")
    assert nfc.key("cafe\u0301") == nfc.key("caf\u00e9")
    off = PredictionCache(max_entries=0)
    off.put(off.key("a"), "x", 1.0, None)
    assert not off.enabled and len(off) == 0
    with pytest.raises(ParameterError, match="'normalize'"):
        PredictionCache(normalize="lower")


def test_batcher_coalesces_concurrent_requests() -> None:
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        return [t.upper() for t in texts]

    async def main() -> list:
        b = MicroBatcher(predict, max_batch_size=8, max_wait_ms=0)
        outs = await asyncio.gather(*(b.submit([f"t{i}"]) for i in range(20)))
        alone = await b.submit(["idle"])  # nothing else queued: a batch of one, at once
        return [outs, alone, b.stats()]

    outs, alone, stats = asyncio.run(main())
    for i, (result, a, z, wait) in enumerate(outs):
        assert result[a:z] == [f"T{i}"] and wait >= 0
    assert [len(c) for c in calls] == [8, 8, 4, 1]
    assert alone[0][alone[1] : alone[2]] == ["IDLE"]
    assert stats["batches"] == 4 and stats["items"] == 21 and stats["largest_batch"] == 8
    assert sum(stats["size_counts"]) == 4 and sum(stats["wait_counts"]) == 21


def test_batcher_large_chunk_runs_alone_and_errors_reach_every_caller() -> None:
    def predict(texts: list[str]) -> list[str]:
        if "boom" in texts:
            raise ValueError("boom")
        return texts

    async def main() -> tuple:
        b = MicroBatcher(predict, max_batch_size=4, max_wait_ms=0)
        big = await b.submit([str(i) for i in range(10)])
        res = await asyncio.gather(b.submit(["ok"]), b.submit(["boom"]), return_exceptions=True)
        return big, res, b.stats()

    big, res, stats = asyncio.run(main())
    assert big[2] - big[1] == 10
    assert all(isinstance(r, ValueError) for r in res) and stats["errors"] == 1


def test_batcher_waits_only_under_load() -> None:
    sizes: list[int] = []

    async def main() -> None:
        b = MicroBatcher(lambda t: sizes.append(len(t)) or t, max_batch_size=64, max_wait_ms=50)
        await b.submit(["idle"])  # idle: no wait although max_wait_ms is large
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.submit(["again"])
        assert loop.time() - t0 < 0.04

    asyncio.run(main())
    assert sizes == [1, 1]


def test_batcher_waits_for_company_only_when_the_process_is_saturated() -> None:
    clock, cpu = Clock(), Clock()  # wall clock and process CPU time, both driven by the test
    sizes: list[int] = []

    def predict(texts: list[str]) -> list[str]:
        sizes.append(len(texts))
        return texts

    async def burst(b: MicroBatcher, n: int) -> None:
        await asyncio.gather(*(b.submit([str(i)]) for i in range(n)))

    async def lone_request_waits(b: MicroBatcher) -> bool:
        task = asyncio.ensure_future(b.submit(["lone"]))
        for _ in range(5):
            await asyncio.sleep(0)
        waited = not task.done()
        clock.t += 1.0  # past max_wait: the next look flushes it
        await task
        return waited

    async def main() -> tuple[bool, bool]:
        b = MicroBatcher(predict, max_batch_size=64, max_wait_ms=20, clock=clock, cpu_clock=cpu)
        for _ in range(6):
            await burst(b, 20)  # batches of 20: a large recent mean
        clock.t += 0.1
        cpu.t += 0.01  # 10% of a CPU: spare capacity, no waiting
        idle = await lone_request_waits(b)
        for _ in range(6):
            await burst(b, 20)
        clock.t += 0.1
        cpu.t += 1.1  # busy all the 1.1 s since the previous look: wait for more requests
        busy = await lone_request_waits(b)
        return idle, busy

    idle, busy = asyncio.run(main())
    assert not idle and busy
    assert sizes.count(1) == 2


def test_bearer_check() -> None:
    assert check_bearer(None, "t")[0] == 401
    assert check_bearer("Basic dXNlcg==", "t")[0] == 401
    assert check_bearer("Bearer ", "t")[0] == 401
    assert check_bearer("Bearer nope", "t")[0] == 403
    assert check_bearer("Bearer t", None)[0] == 403
    assert check_bearer("Bearer t", "t") is None
    assert check_bearer("bearer t", "t") is None


def test_request_checks_name_the_field() -> None:
    assert check_predict({"inputs": ["a", "b"]}, 4, 10) == (["a", "b"], False)
    assert check_predict({"inputs": "a", "return_probabilities": True}, 4, 10) == (["a"], True)
    cases = [
        ({"inputs": ["a"] * 5}, 413, "inputs"),
        ({"inputs": ["a", "x" * 11]}, 413, "inputs[1]"),
        ({"inputs": [True]}, 422, "inputs[0]"),
        ({}, 422, "inputs"),
    ]
    for data, status, field in cases:
        with pytest.raises(BadRequest) as e:
            check_predict(data, 4, 10)
        assert (e.value.status, e.value.field) == (status, field)
    assert check_feedback({"id": "a-1", "label": 3}, 5) == [("a-1", "3")]
    with pytest.raises(BadRequest) as e:
        check_feedback({"items": [{"id": "a-1", "label": True}]}, 5)
    assert e.value.field == "items[0].label"


def test_v2_bytes_tensor_roundtrip() -> None:
    values = ["hello", "", "héllo wörld", "x" * 300]
    assert decode_bytes_tensor(encode_bytes_tensor(values)) == values
    with pytest.raises(BadRequest):
        decode_bytes_tensor(b"\x05\x00\x00\x00ab")
    with pytest.raises(BadRequest):
        decode_bytes_tensor(b"\x01\x00")
