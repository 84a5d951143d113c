"""The coalescing protocol's cache-hit answers, checked on the wire of a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from tests.serving.conftest import Server

from leanml.serving import _protocol

PATH = "/v1/models/intent/predict"


def request(body: bytes, *headers: str, path: str = PATH) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def predict_body(text: str) -> bytes:
    return json.dumps({"inputs": [text]}).encode()


class Reader:
    """Reads HTTP/1.1 responses (Content-Length bodies) off one socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before a response"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} sent twice"
            headers[name.lower()] = value.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            assert self._fill(), "connection closed inside a body"
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self) -> bool:
        self.sock.settimeout(10)
        return not self.buf and not self._fill()


def connect(server: Server) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock, Reader(sock)


def test_a_cache_hit_is_answered_like_a_miss(server: Server) -> None:
    text = f"forward the invoice to accounting ({time.time_ns()})"
    sock, reader = connect(server)
    with sock:
        sock.sendall(request(predict_body(text)))
        s1, h1, b1 = reader.response()
        sock.sendall(request(predict_body(text)))
        s2, h2, b2 = reader.response()
    assert s1 == s2 == 200
    assert set(h1) == set(h2)  # same header names: date, content-type, length, worker
    assert h2["content-type"] == "application/json"
    assert h2["x-leanml-worker"] == h1["x-leanml-worker"]
    miss, hit = json.loads(b1), json.loads(b2)
    assert "cached" not in miss["predictions"][0] and hit["predictions"][0]["cached"] is True
    assert {k: miss[k] for k in ("model", "version", "variant")} == {
        k: hit[k] for k in ("model", "version", "variant")
    }
    assert hit["predictions"][0]["label"] == miss["predictions"][0]["label"]
    assert hit["predictions"][0]["id"] != miss["predictions"][0]["id"]


def test_pipelined_hits_misses_and_errors_come_back_in_order(server: Server) -> None:
    hot = f"book a meeting room for friday ({time.time_ns()})"
    sock, reader = connect(server)
    with sock:
        sock.sendall(request(predict_body(hot)))
        assert reader.response()[0] == 200  # now cached
        cold = f"unsubscribe me from this list ({time.time_ns()})"
        sock.sendall(
            request(predict_body(hot))
            + request(predict_body(cold))
            + request(b'{"inputs": ["unterminated')
            + request(json.dumps({"inputs": [hot], "return_probabilities": True}).encode())
            + request(predict_body(hot), path="/v1/models/nope/predict")
        )
        answers = [reader.response() for _ in range(5)]
    assert [a[0] for a in answers] == [200, 200, 400, 200, 404]
    first, second, bad, fourth, unknown = (json.loads(a[2]) for a in answers)
    assert first["predictions"][0]["cached"] is True
    assert "cached" not in second["predictions"][0]
    assert bad["field"] == "body" and unknown["field"] == "name"
    probs = fourth["predictions"][0]["probabilities"]
    assert fourth["predictions"][0]["cached"] is True
    assert abs(sum(probs.values()) - 1.0) < 1e-6
    assert max(probs, key=probs.get) == fourth["predictions"][0]["label"]


def test_connection_close_is_honoured_on_a_hit(server: Server) -> None:
    text = f"what is the status of my order ({time.time_ns()})"
    sock, reader = connect(server)
    with sock:
        sock.sendall(request(predict_body(text)))
        assert reader.response()[0] == 200
        sock.sendall(request(predict_body(text), "Connection: close"))
        status, headers, body = reader.response()
        assert status == 200 and json.loads(body)["predictions"][0]["cached"] is True
        assert headers["connection"] == "close"
        assert reader.closed()


def test_expect_100_continue_still_gets_its_interim_answer(server: Server) -> None:
    text = f"please reschedule the call ({time.time_ns()})"
    body = predict_body(text)
    sock, reader = connect(server)
    with sock:
        for _ in range(2):  # a miss, then a hit
            head = request(body, "Expect: 100-continue")[: -len(body)]
            sock.sendall(head)
            status, _, _ = reader.response()
            assert status == 100
            sock.sendall(body)
            status, _, answer = reader.response()
            assert status == 200
        assert json.loads(answer)["predictions"][0]["cached"] is True


# -- the whole-request path, on an in-process uvicorn with a 1 s keep-alive --------------------
HIT = b'{"inputs": ["hit"]}'


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request with {"app": true} (so a fast answer is told apart)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"app": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: per fast-answer call: whether it came from the whole-request path (a scope without headers)
WHOLE: list[bool] = []


@pytest.fixture(scope="module")
def fast_server() -> Iterator[int]:
    """uvicorn with the coalescing protocol; the fast answer knows the one body ``HIT``."""

    def answer(scope: Any, body: bytes) -> bytes | None:
        WHOLE.append("headers" not in scope)
        return b'{"fast": true}' if body == HIT else None

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        http=_protocol.CoalescingHttpToolsProtocol,
        timeout_keep_alive=1,
        log_level="warning",
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    _protocol.use_fast_answer(answer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield port
    finally:
        srv.should_exit = True
        thread.join(30)
        _protocol.use_fast_answer(None)


def _raw(port: int) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock, Reader(sock)


def test_whole_requests_keep_the_connection_alive_and_idle_ones_close(fast_server: int) -> None:
    WHOLE.clear()
    sock, reader = _raw(fast_server)
    with sock:
        t_end = time.monotonic() + 2.5  # well past the 1 s keep-alive timeout
        n = 0
        while time.monotonic() < t_end:
            sock.sendall(request(HIT))
            status, headers, body = reader.response()
            assert (status, json.loads(body)) == (200, {"fast": True})
            assert headers["content-type"] == "application/json" and "date" in headers
            n += 1
            time.sleep(0.3)
        assert n >= 7 and WHOLE == [True] * n  # every hit answered before uvicorn parsed it
        sock.sendall(request(b'{"inputs": ["miss"]}'))  # a miss on the same connection
        assert json.loads(reader.response()[2]) == {"app": True}
        assert WHOLE[n:] == [True]  # asked once: the parser's pass reuses the verdict
        started = time.monotonic()
        assert reader.closed()  # idle: the keep-alive timer closes it
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("content-length: 999", 400),  # two lengths: for the parser to refuse
        ("Transfer-Encoding: chunked", 400),  # with a length too: refused by the parser
        ("Bad Header: x", 400),  # a space in a header name
        ("X-Trace:\tabc ", 200),  # odd but valid whitespace: answered, by either path
    ],
)
def test_unusual_headers_go_to_the_parser(fast_server: int, extra: str, expected: int) -> None:
    sock, reader = _raw(fast_server)
    with sock:
        sock.sendall(request(HIT, extra))
        status, _, body = reader.response()
    assert status == expected
    if expected == 200:
        assert json.loads(body) == {"fast": True}


def test_a_chunked_hit_is_answered_after_its_last_chunk(fast_server: int) -> None:
    head = f"POST {PATH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, HIT[:5], len(HIT) - 5, HIT[5:])
    sock, reader = _raw(fast_server)
    with sock:
        sock.sendall(head + chunks)
        status, _, body = reader.response()
        sock.sendall(request(HIT) + request(HIT))  # two whole requests in one read
        pipelined = [reader.response() for _ in range(2)]
    assert (status, json.loads(body)) == (200, {"fast": True})
    assert [json.loads(r[2]) for r in pipelined] == [{"fast": True}] * 2
