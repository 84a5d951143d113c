"""A hostile corpus on raw sockets against one ``leanml serve`` (issue #20, point 4).

Table-driven: each case is the bytes a client sends (in one write, or in several with a short
pause, optionally followed by a half-close of its sending side) and the status class of every
answer it must get. Every answer that carries a body is JSON (``{"error", ...}`` for a 4xx);
no case ever gets a 5xx; and after each case the server still answers a normal prediction on
a new connection. The slow senders (a request dribbled in over seconds) are in the slow part.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import ADMIN_TOKEN, Server, connect

NAME = "intent"
PREDICT = f"/v1/models/{NAME}/predict"
FEEDBACK = f"/v1/models/{NAME}/feedback"
INFER = f"/v2/models/{NAME}/infer"
OK_BODY = b'{"inputs": ["please reply to this email"]}'


# ---------------------------------------------------------------------------- HTTP bytes
def req(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """One request's bytes; ``Content-Length`` from ``body`` unless ``length`` is False or
    the caller set a framing header."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    hdrs = dict(headers or {})
    framing = {k.lower() for k in hdrs} & {"content-length", "transfer-encoding"}
    if body is not None and length and not framing:
        hdrs["Content-Length"] = str(len(body))
    if body is not None and "content-type" not in {k.lower() for k in hdrs}:
        hdrs["Content-Type"] = "application/json"
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")


def post(path: str, body: bytes, **kw: object) -> bytes:
    return req("POST", path, body, **kw)  # type: ignore[arg-type]


def chunked(*parts: bytes) -> bytes:
    """A chunked body of ``parts`` with its last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answers(data: bytes, heads: list[bool]) -> tuple[list[Answer], bytes]:
    """The complete answers in ``data`` (``heads[i]``: the i-th request was a HEAD, so its
    answer has no body), and what is left. 1xx interim answers are skipped."""
    out: list[Answer] = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        rest = data[end + 4 :]
        if 100 <= status < 200:
            data = rest
            continue
        no_body = heads[len(out)] if len(out) < len(heads) else False
        if no_body:
            size = 0
        elif "content-length" in headers:
            size = int(headers["content-length"])
        elif headers.get("transfer-encoding") == "chunked":
            body, pos = b"", 0
            while True:
                eol = rest.find(b"\r\n", pos)
                if eol < 0:
                    return out, data
                n = int(rest[pos:eol].split(b";")[0], 16)
                if len(rest) < eol + 2 + n + 2:
                    return out, data
                body += rest[eol + 2 : eol + 2 + n]
                pos = eol + 2 + n + 2
                if n == 0:
                    break
            out.append(Answer(status, headers, body))
            data = rest[pos:]
            continue
        else:
            return out, data  # no framing: read until close (not used by this server)
        if len(rest) < size:
            return out, data
        out.append(Answer(status, headers, rest[:size]))
        data = rest[size:]


# ---------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """What a client sends and the status class of each answer it must get.

    ``expect``: one entry per answer, a class (``"2xx"``, ``"4xx"``) or an exact status
    (``"405"``); ``"2xx|4xx"`` where either is right (the text is odd, not wrong). An empty
    ``expect``: the server must close the connection without an answer. ``closes``: the
    server must close the connection after its answers.
    """

    id: str
    send: bytes | tuple[bytes, ...]
    expect: tuple[str, ...]
    half_close: bool = False
    closes: bool | None = False  # None: either
    head: bool = False
    allow: str | None = None  # the Allow header a 405 carries
    json: bool = True  # answers with a body are JSON (/metrics: Prometheus text)
    pause: float = 0.05  # between the parts of ``send``

    def parts(self) -> tuple[bytes, ...]:
        return self.send if isinstance(self.send, tuple) else (self.send,)


def case(id: str, send: bytes | tuple[bytes, ...], *expect: str, **kw: object) -> Case:
    return Case(id, send, expect, **kw)  # type: ignore[arg-type]


def _json_bodies() -> list[Case]:
    """Malformed JSON, UTF-8, lone surrogates, NUL bytes and deep nesting on the three
    body-reading fast-path routes."""
    bodies: list[tuple[str, bytes, str]] = [
        ("empty", b"", "4xx"),
        ("open-brace", b"{", "4xx"),
        ("open-list", b'{"inputs": [', "4xx"),
        ("bare-word", b"nul", "4xx"),
        ("trailing-garbage", OK_BODY + b" x", "4xx"),
        ("two-documents", OK_BODY + OK_BODY, "4xx"),
        ("single-quotes", b"{'inputs': ['a']}", "4xx"),
        ("trailing-comma", b'{"inputs": ["a",]}', "4xx"),
        ("comment", b'{"inputs": ["a"] /* c */}', "4xx"),
        ("nan", b'{"inputs": ["a"], "return_probabilities": NaN}', "4xx"),
        ("infinity", b'{"inputs": ["a"], "x": Infinity}', "4xx"),
        ("huge-exponent", b'{"inputs": ["a"], "x": 1e999999}', "4xx"),
        ("bom", b"\xef\xbb\xbf" + OK_BODY, "4xx"),
        ("utf16", OK_BODY.decode().encode("utf-16"), "4xx"),
        ("invalid-utf8-ff", b'{"inputs": ["\xff"]}', "4xx"),
        ("overlong-utf8", b'{"inputs": ["\xc0\xaf"]}', "4xx"),
        ("truncated-utf8", b'{"inputs": ["\xe2\x82"]}', "4xx"),
        ("encoded-surrogate", b'{"inputs": ["\xed\xa0\x80"]}', "4xx"),
        ("lone-high-surrogate", b'{"inputs": ["\\ud800"]}', "4xx"),
        ("lone-low-surrogate", b'{"inputs": ["a\\udc00b"]}', "4xx"),
        ("bad-escape", b'{"inputs": ["\\x41"]}', "4xx"),
        ("short-unicode-escape", b'{"inputs": ["\\u12"]}', "4xx"),
        ("raw-nul-outside", b'{"inputs": ["a"]}\x00', "4xx"),
        ("raw-nul-in-string", b'{"inputs": ["a\x00b"]}', "4xx"),
        ("raw-control-in-string", b'{"inputs": ["a\x01b"]}', "4xx"),
        ("nested-lists-2000", b"[" * 2000 + b"]" * 2000, "4xx"),
        ("nested-objects-2000", b'{"a":' * 2000 + b"1" + b"}" * 2000, "4xx"),
        ("nested-unclosed-60000", b"[" * 60000, "4xx"),
        ("nested-in-inputs-100", b'{"inputs": ' + b"[" * 100 + b"]" * 100 + b"}", "4xx"),
        ("only-whitespace", b" \r\n\t ", "4xx"),
        ("big-int-key", b'{"inputs": ["a"], "x": ' + b"9" * 5000 + b"}", "4xx"),
    ]
    valid_oddities: list[tuple[str, bytes]] = [  # valid JSON, valid texts: answered
        ("escaped-nul-text", b'{"inputs": ["a\\u0000b"]}'),
        ("surrogate-pair", b'{"inputs": ["\\ud83d\\ude00 smile"]}'),
        ("rtl-and-zero-width", '{"inputs": ["\u202ereply\u200b"]}'.encode()),
        ("duplicate-keys", b'{"inputs": ["x"], "inputs": ["please reply"]}'),
        ("empty-text", b'{"inputs": [""]}'),
    ]
    out: list[Case] = []
    for name, body, cls in bodies:
        # big-int: orjson rejects integers past 64 bits (400), json would accept: a 4xx either way
        out.append(case(f"predict-{name}", post(PREDICT, body), cls))
    for name, body in valid_oddities:
        out.append(case(f"predict-{name}", post(PREDICT, body), "2xx"))
    for name, body, cls in bodies[::3]:  # the same bodies on feedback and V2 infer
        out.append(case(f"feedback-{name}", post(FEEDBACK, body), cls))
        out.append(case(f"infer-{name}", post(INFER, body), cls))
    out += [
        case(
            "feedback-lone-surrogate-label",
            post(FEEDBACK, b'{"id": "x-1", "label": "\\ud800"}'),
            "4xx",
        ),
        case("feedback-nul-id", post(FEEDBACK, b'{"id": "x\\u0000", "label": "reply"}'), "4xx"),
        case("feedback-unknown-id", post(FEEDBACK, b'{"id": "nope-1", "label": "reply"}'), "4xx"),
        case(
            "infer-lone-surrogate",
            post(
                INFER,
                b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], '
                b'"data": ["\\udfff"]}]}',
            ),
            "4xx",
        ),
        case(
            "infer-deep-data",
            post(
                INFER,
                b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": '
                + b"[" * 500
                + b'"a"'
                + b"]" * 500
                + b"}]}",
            ),
            "4xx",
        ),
        case(
            "infer-shape-lies",
            post(
                INFER,
                b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1000000], '
                b'"data": ["a"]}]}',
            ),
            "4xx",
        ),
    ]
    return out


def _framing() -> list[Case]:
    """Huge, chunked, mis-framed and short bodies; half-closes."""
    big = b'{"inputs": ["' + b"a" * 70_000 + b'"]}'
    head_only = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    ).encode()
    return [
        case("huge-body-70k", post(PREDICT, big), "413"),
        case("huge-body-1mb", post(PREDICT, b"x" * 1_000_000), "413"),
        case(
            "huge-declared-length",
            head_only + b"Content-Length: 1000000000000\r\n\r\n{",
            "413",
            closes=True,
        ),
        case(
            "content-length-past-2-63",
            head_only + b"Content-Length: 99999999999999999999999\r\n\r\n",
            "4xx",
            closes=True,
        ),
        case("negative-length", head_only + b"Content-Length: -1\r\n\r\n", "400", closes=True),
        case("length-not-a-number", head_only + b"Content-Length: ten\r\n\r\n", "400", closes=True),
        case(
            "two-different-lengths",
            head_only + b"Content-Length: 5\r\nContent-Length: 44\r\n\r\n" + OK_BODY,
            "400",
            closes=True,
        ),
        case(
            "length-and-chunked",
            head_only
            + b"Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(OK_BODY),
            "400",
            closes=True,
        ),
        case(
            "chunked-ok",
            head_only + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(OK_BODY[:10], OK_BODY[10:]),
            "2xx",
        ),
        case(
            "chunked-one-byte-chunks",
            head_only
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked(*(OK_BODY[i : i + 1] for i in range(len(OK_BODY)))),
            "2xx",
        ),
        case(
            "chunked-with-extension",
            head_only
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x;ext=1\r\n%s\r\n0\r\n\r\n" % (len(OK_BODY), OK_BODY),
            "2xx",
        ),
        case(
            "chunked-trailer",
            head_only
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked(OK_BODY)[:-2]
            + b"X-Trailer: 1\r\n\r\n",
            "2xx",
        ),
        case(
            "chunked-huge",
            head_only + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(*([b"a" * 8192] * 10)),
            "413",
        ),
        # a chunk announced past the body limit (64 KiB): 413 at once, not the body timeout
        case(
            "chunked-huge-declared-chunk",
            head_only + b"Transfer-Encoding: chunked\r\n\r\nffffffffff\r\naaaa",
            "413",
            closes=True,
        ),
        case(
            "chunked-second-chunk-past-limit",
            head_only + b"Transfer-Encoding: chunked\r\n\r\n" + b"a\r\n0123456789\r\nfffff\r\nab",
            "413",
            closes=True,
        ),
        case(
            "chunked-announced-in-parts",
            (
                head_only + b"Transfer-Encoding: chunked\r\n",
                b"\r\n1000",
                b"1;ext=1\r\n{",  # 0x10001: one byte past the limit
            ),
            "413",
            closes=True,
        ),
        case(
            "chunked-past-limit-pipelined",
            post(PREDICT, OK_BODY)
            + head_only
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked(OK_BODY)
            + head_only
            + b"Transfer-Encoding: chunked\r\n\r\n10001\r\n{",
            "2xx",
            "2xx",
            "413",
            closes=True,
        ),
        case(
            "chunked-past-limit-on-get",
            req("GET", "/health", headers={"Transfer-Encoding": "chunked"}) + b"fffffff\r\n",
            "413",
            closes=True,
        ),
        case(
            "chunked-bad-size",
            head_only + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "400",
            closes=True,
        ),
        case(
            "chunked-size-overflow",
            head_only + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n{}\r\n0\r\n\r\n",
            "400",
            closes=True,
        ),
        case(
            "chunked-in-parts",
            (
                head_only + b"Transfer-Encoding: chunked\r\n\r\n",
                b"%x\r\n%s\r\n" % (len(OK_BODY), OK_BODY),
                b"0\r\n\r\n",
            ),
            "2xx",
        ),
        case(
            "transfer-encoding-gzip",
            head_only + b"Transfer-Encoding: gzip\r\n\r\n" + OK_BODY,
            "4xx",
            closes=True,
        ),
        case("body-on-get", req("GET", "/health", OK_BODY), "2xx"),
        case("no-length-no-body", head_only + b"\r\n", "4xx"),
        case("body-in-parts", (post(PREDICT, OK_BODY)[:-20], OK_BODY[-20:]), "2xx"),
        case("head-in-parts", (post(PREDICT, OK_BODY)[:30], post(PREDICT, OK_BODY)[30:]), "2xx"),
        # short bodies with a half-close: the request can never complete
        case(
            "short-body-half-close",
            post(PREDICT, OK_BODY)[:-10],
            "400",
            half_close=True,
            closes=True,
        ),
        case(
            "short-chunked-half-close",
            head_only + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"inp',
            "400",
            half_close=True,
            closes=True,
        ),
        case(
            "short-head-half-close",
            post(PREDICT, OK_BODY)[:25],
            "400",
            half_close=True,
            closes=True,
        ),
        case(
            "short-feedback-half-close",
            post(FEEDBACK, b'{"id": "a-1", "label": "x"}')[:-3],
            "400",
            half_close=True,
            closes=True,
        ),
        case("empty-half-close", b"", half_close=True, closes=True),
        # a whole request, then a half-close: answered, then closed
        case(
            "whole-predict-half-close", post(PREDICT, OK_BODY), "2xx", half_close=True, closes=True
        ),
        case(
            "whole-uncached-half-close",
            post(PREDICT, b'{"inputs": ["half-closed %d"]}' % time.time_ns()),
            "2xx",
            half_close=True,
            closes=True,
        ),
        case("whole-health-half-close", req("GET", "/health"), "2xx", half_close=True, closes=True),
        case("whole-bad-half-close", post(PREDICT, b"{"), "4xx", half_close=True, closes=True),
        case(
            "pipelined-half-close",
            post(PREDICT, OK_BODY) + req("GET", "/metrics"),
            "2xx",
            "2xx",
            half_close=True,
            closes=True,
        ),
        case(
            "expect-100-continue",
            post(PREDICT, OK_BODY, headers={"Expect": "100-continue"}),
            "2xx",
        ),
        case(
            "expect-100-too-large",
            head_only + b"Expect: 100-continue\r\nContent-Length: 9000000\r\n\r\n",
            "413",
            closes=True,
        ),
    ]


def _pipelining() -> list[Case]:
    health = req("GET", "/health")
    ok = post(PREDICT, OK_BODY)
    fb = post(FEEDBACK, b'{"id": "nope-1", "label": "reply"}')
    return [
        case("pipeline-2-predicts", ok + ok, "2xx", "2xx"),
        case("pipeline-20-predicts", ok * 20, *["2xx"] * 20),
        case(
            "pipeline-mixed", ok + health + fb + req("GET", "/metrics"), "2xx", "2xx", "4xx", "2xx"
        ),
        case("pipeline-bad-in-middle", ok + post(PREDICT, b"{") + ok, "2xx", "4xx", "2xx"),
        case(
            "pipeline-uncached",
            post(PREDICT, b'{"inputs": ["pipe %d"]}' % time.time_ns()) + ok,
            "2xx",
            "2xx",
        ),
        case("pipeline-405-then-ok", req("GET", PREDICT) + ok, "405", "2xx"),
        case("pipeline-split-mid-request", (ok + ok[:40], ok[40:]), "2xx", "2xx"),
        case(
            "pipeline-then-garbage",
            ok + b"\x16\x03\x01garbage\r\n\r\n",
            "2xx",
            "400",
            closes=True,
        ),
        case(
            "pipeline-close-ends",
            ok + req("GET", "/health", headers={"Connection": "close"}) + ok,
            "2xx",
            "2xx",
            closes=True,
        ),
        case(
            "pipeline-v2",
            post(
                INFER,
                b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
            )
            * 3,
            "2xx",
            "2xx",
            "2xx",
        ),
    ]


def _versions_and_lines() -> list[Case]:
    return [
        case("http10-get", req("GET", "/health", version="HTTP/1.0"), "2xx", closes=True),
        case("http10-predict", post(PREDICT, OK_BODY, version="HTTP/1.0"), "2xx", closes=True),
        case(
            "http10-keep-alive",
            req("GET", "/health", version="HTTP/1.0", headers={"Connection": "keep-alive"})
            + req("GET", "/health", version="HTTP/1.0"),
            "2xx",  # HTTP/1.0 keep-alive is optional: answered, then closed
            closes=True,
        ),
        case("http10-no-host", b"GET /health HTTP/1.0\r\n\r\n", "2xx", closes=True),
        case("http10-bad-json", post(PREDICT, b"{", version="HTTP/1.0"), "4xx", closes=True),
        case("http11-no-host", b"GET /health HTTP/1.1\r\n\r\n", "2xx"),
        case("http09", b"GET /health\r\n\r\n", "2xx|400", closes=None),
        case("http2-line", b"GET /health HTTP/2.0\r\n\r\n", "2xx|400", closes=None),
        case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400", closes=True),
        case("http12", b"GET /health HTTP/1.2\r\nHost: x\r\n\r\n", "2xx|400", closes=None),
        case("http-lowercase", b"GET /health http/1.1\r\n\r\n", "400", closes=True),
        case("method-lowercase", b"get /health HTTP/1.1\r\n\r\n", "400", closes=True),
        case("method-unknown", b"FROB /health HTTP/1.1\r\n\r\n", "400", closes=True),
        case("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n", "4xx", closes=None),
        case("options-star", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "4xx"),
        case("absolute-uri", req("POST", f"http://evil.example{PREDICT}", OK_BODY), "2xx"),
        case("double-slash", req("GET", "//health"), "404"),
        case("no-path", b"GET  HTTP/1.1\r\n\r\n", "400", closes=True),
        case(
            "tls-hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 60, "400", closes=True
        ),
        case("binary-garbage", bytes(range(256)), "400", closes=True),
        case("nul-in-path", b"GET /hea\x00lth HTTP/1.1\r\n\r\n", "400", closes=True),
        case("space-in-path", b"GET /he alth HTTP/1.1\r\n\r\n", "400", closes=True),
        case("leading-crlf", b"\r\n" + req("GET", "/health"), "2xx"),
        case("bare-lf-lines", b"GET /health HTTP/1.1\nHost: x\n\n", "2xx|400", closes=None),
        case("header-no-colon", b"GET /health HTTP/1.1\r\nHost x\r\n\r\n", "400", closes=True),
        case(
            "header-space-before-colon",
            b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
            "400",
            closes=True,
        ),
        case(
            "header-nul-value", b"GET /health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", "400", closes=True
        ),
        case(
            "header-obs-fold",
            b"GET /health HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
            "2xx|400",
            closes=None,
        ),
        case("header-bad-name", b"GET /health HTTP/1.1\r\nX(A): b\r\n\r\n", "400", closes=True),
        case(
            "header-crlf-injection",
            b"GET /health HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            "400",
            closes=True,
        ),
        case(
            "header-too-large",
            req("GET", "/health", headers={"X-Big": "a" * 9000}),
            "431",
            closes=True,
        ),
        case(
            "headers-too-many",
            req("GET", "/health", headers={f"X-{i}": "v" * 20 for i in range(500)}),
            "431",
            closes=True,
        ),
        case("url-too-long", req("GET", "/health?" + "a" * 9000), "431", closes=True),
        case(
            "predict-url-too-long",
            req("POST", PREDICT + "?" + "q" * 9000, OK_BODY),
            "431",
            closes=True,
        ),
        case("query-junk", req("GET", "/health?%zz=%ff&&=;"), "2xx"),
        case("predict-query-junk", req("POST", PREDICT + "?x=%00%ff", OK_BODY), "2xx"),
        case("percent-ff-path", req("GET", "/v1/models/%ff%fe"), "404"),
        case(
            "upgrade-websocket",
            req(
                "GET",
                "/health",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ),
            "2xx|4xx",
            closes=None,
        ),
        case(
            "upgrade-h2c",
            req(
                "GET",
                "/health",
                headers={
                    "Connection": "Upgrade, HTTP2-Settings",
                    "Upgrade": "h2c",
                    "HTTP2-Settings": "",
                },
            ),
            "2xx|4xx",
            closes=None,
        ),
        case(
            "predict-text-plain",
            post(PREDICT, OK_BODY, headers={"Content-Type": "text/plain"}),
            "2xx|415",
        ),
        case(
            "feedback-text-plain",
            post(FEEDBACK, b'{"id": "a-1", "label": "x"}', headers={"Content-Type": "text/plain"}),
            "415",
        ),
        case(
            "predict-connection-close",
            post(PREDICT, OK_BODY, headers={"Connection": "close"}),
            "2xx",
            closes=True,
        ),
        case(
            "predict-duplicate-content-type",
            post(
                PREDICT,
                OK_BODY,
                headers={"Content-Type": "application/json", "content-type": "text/html"},
            ),
            "2xx|4xx",
        ),
        case(
            "predict-auth-junk",
            post(PREDICT, OK_BODY, headers={"Authorization": "\x7f\xff"}),
            "400",  # DEL is no field-value character
            closes=True,
        ),
        case(
            "predict-header-obs-text",
            post(PREDICT, OK_BODY, headers={"X-Note": "caf\xe9 \xff"}),
            "2xx",
        ),
        case(
            "admin-token-in-query",
            req(
                "PUT", f"/v1/models/{NAME}/variant?token=" + ADMIN_TOKEN, b'{"variant": "original"}'
            ),
            "401",
        ),
        case(
            "admin-bearer-empty",
            req("POST", f"/v1/models/{NAME}/reload", headers={"Authorization": "Bearer "}),
            "401",
        ),
        case(
            "admin-basic",
            req(
                "POST",
                f"/v1/models/{NAME}/reload",
                headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
            ),
            "401",
        ),
        case(
            "admin-wrong-token",
            req("PATCH", "/v1/monitoring/config", b"{}", headers={"Authorization": "Bearer x" * 3}),
            "403",
        ),
    ]


TRAVERSALS = [
    "..",
    "../..",
    "%2e%2e",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "....//....//etc",
    "..%5c..%5cwindows",
    "%252e%252e%252f",
    "intent%2f..%2f..",
    "intent%00",
    "~root",
    ".",
    "%c0%ae%c0%ae",
    "con",
    "intent;rm%20-rf",
]


def _traversal() -> list[Case]:
    out: list[Case] = []
    for i, name in enumerate(TRAVERSALS):
        out.append(
            case(f"traversal-predict-{i}", post(f"/v1/models/{name}/predict", OK_BODY), "404")
        )
        out.append(case(f"traversal-info-{i}", req("GET", f"/v1/models/{name}"), "404"))
    out += [
        case("traversal-stats", req("GET", "/v1/models/../../etc/passwd/stats"), "404"),
        case("traversal-v2-infer", post("/v2/models/../../etc/passwd/infer", b"{}"), "404"),
        case("traversal-v2-version", req("GET", f"/v2/models/{NAME}/versions/..%2f..%2f1"), "404"),
        case(
            "traversal-feedback-id",
            post(FEEDBACK, b'{"id": "../../etc/passwd", "label": "x"}'),
            "4xx",
        ),
        case("traversal-dashboard", req("GET", "/dashboard/../../../etc/passwd"), "404"),
        case(
            "traversal-dashboard-encoded",
            req("GET", "/dashboard/static/..%2f..%2fconfig.py"),
            "404",
        ),
        case("traversal-openapi", req("GET", "/openapi.json/../../etc/passwd"), "404"),
    ]
    return out


def _dashboard() -> list[Case]:
    """The dashboard mounted at ``/dashboard``: its own 404s and 405s are JSON too."""
    variant = b'{"model": "intent", "variant": "original"}'
    return [
        case("dashboard-page", req("GET", "/dashboard/"), "2xx", json=False),  # HTML
        case("dashboard-page-head", req("HEAD", "/dashboard/"), "2xx", head=True),
        case("dashboard-data-head", req("HEAD", "/dashboard/data.json"), "2xx", head=True),
        case("dashboard-no-slash", req("GET", "/dashboard"), "307", json=False),  # redirect
        case("dashboard-unknown", req("GET", "/dashboard/nope"), "404"),
        case("dashboard-unknown-deep", req("GET", "/dashboard/a/b/c.js"), "404"),
        case("dashboard-unknown-post", post("/dashboard/nope", b"{}"), "404"),
        case("dashboard-variant-get", req("GET", "/dashboard/variant"), "405", allow="POST"),
        case("dashboard-data-post", post("/dashboard/data.json", b"{}"), "405", allow="GET, HEAD"),
        case(
            "dashboard-js-delete",
            req("DELETE", "/dashboard/dashboard.js"),
            "405",
            allow="GET, HEAD",
        ),
        case("dashboard-variant-no-token", post("/dashboard/variant", variant), "401"),
        case(
            "dashboard-variant-wrong-token",
            post("/dashboard/variant", variant, headers={"Authorization": "Bearer nope"}),
            "403",
        ),
        case(
            "dashboard-variant-bad-json",
            post("/dashboard/variant", b"{", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
            "422",
        ),
    ]


#: every route of the API with the methods it answers (OpenAPI ``paths``)
ROUTES: dict[str, str] = {
    "/health": "GET",
    "/metrics": "GET",
    "/v1/models": "GET",
    f"/v1/models/{NAME}": "GET",
    f"/v1/models/{NAME}/stats": "GET",
    PREDICT: "POST",
    FEEDBACK: "POST",
    f"/v1/models/{NAME}/variant": "PUT",
    f"/v1/models/{NAME}/reload": "POST",
    "/v1/monitoring/config": "PATCH",
    "/v1/monitoring/erase": "POST",
    "/v2": "GET",
    "/v2/health/live": "GET",
    "/v2/health/ready": "GET",
    f"/v2/models/{NAME}": "GET",
    f"/v2/models/{NAME}/versions/1": "GET",
    f"/v2/models/{NAME}/ready": "GET",
    f"/v2/models/{NAME}/versions/1/ready": "GET",
    INFER: "POST",
    f"/v2/models/{NAME}/versions/1/infer": "POST",
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _every_method() -> list[Case]:
    """Every method on every route, without a body: GET routes answer GET and HEAD (HEAD: no
    body) 2xx, body-taking routes a 4xx (no body, or no admin token), the others 405 with
    ``Allow`` (``GET, HEAD`` on a GET route)."""
    out: list[Case] = []
    for path, allowed in ROUTES.items():
        allow = "GET, HEAD" if allowed == "GET" else allowed
        for method in METHODS:
            body = None if method in ("GET", "HEAD", "OPTIONS", "TRACE") else b""
            raw = req(method, path, body)
            head = method == "HEAD"
            if method in allow.split(", "):
                expect = "2xx" if method in ("GET", "HEAD") else "4xx"
                out.append(case(f"{method}-{path}", raw, expect, head=head))
            else:
                out.append(case(f"{method}-{path}", raw, "405", head=head, allow=allow))
    return out


CASES = [
    *_json_bodies(),
    *_framing(),
    *_pipelining(),
    *_versions_and_lines(),
    *_traversal(),
    *_dashboard(),
    *_every_method(),
]


# ---------------------------------------------------------------------------- the checks
def run_case(server: Server, c: Case) -> list[Answer]:
    """Send ``c`` and check every answer; returns them."""
    heads = [c.head] * max(1, len(c.expect))
    with connect(server, timeout=10) as s:
        for i, part in enumerate(c.parts()):
            if i:
                time.sleep(c.pause)
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed before the rest (413, 431, 400)
        if c.half_close:
            s.shutdown(socket.SHUT_WR)
        data, closed = b"", False
        answers: list[Answer] = []
        while True:
            answers, rest = parse_answers(data, heads)
            if len(answers) >= len(c.expect) and not (c.closes or not c.expect):
                break
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError(
                    f"{c.id}: no {'close' if len(answers) >= len(c.expect) else 'answer'} in "
                    f"10 s; got {data[:300]!r}"
                ) from None
            if not chunk:
                closed = True
                break
            data += chunk
    statuses = [a.status for a in answers]
    assert len(answers) == len(c.expect), f"{c.id}: answers {statuses}, expected {c.expect}"
    for a, want in zip(answers, c.expect, strict=True):
        options = want.split("|")
        ok = any(
            str(a.status) == w or (w.endswith("xx") and str(a.status)[0] == w[0]) for w in options
        )
        assert ok, f"{c.id}: {a.status} {a.body[:300]!r}, expected {want}"
        assert a.status < 500, f"{c.id}: {a.status} {a.body[:300]!r}"
        ctype = a.headers.get("content-type", "")
        if c.head:  # no body, whatever length the headers announce: nothing follows
            assert rest == b"", (c.id, rest[:200])
        elif ctype.startswith("text/plain; version=0.0.4"):  # /metrics: Prometheus text
            assert a.status == 200 and a.body.startswith(b"# HELP"), (c.id, a.body[:200])
        elif not c.json:
            assert b"root:" not in a.body and b"import" not in a.body, (c.id, a.body[:200])
        else:
            assert a.headers.get("content-type", "").startswith("application/json"), (
                c.id,
                a.headers,
                a.body[:200],
            )
            payload = json.loads(a.body)
            if a.status >= 400:
                assert isinstance(payload, dict) and payload.get("error"), (c.id, payload)
        if a.status == 405 and c.allow is not None:
            assert a.headers.get("allow") == c.allow, (c.id, a.headers)
    if c.closes is True or not c.expect:
        assert closed, f"{c.id}: the connection stayed open"
    return answers


def normal_request(server: Server) -> None:
    """A normal prediction on a new connection is answered 200."""
    with connect(server, timeout=10) as s:
        s.sendall(post(PREDICT, OK_BODY, headers={"Connection": "close"}))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    answers, _ = parse_answers(data, [False])
    assert [a.status for a in answers] == [200], data[:300]
    assert json.loads(answers[0].body)["predictions"][0]["label"]


@pytest.fixture(scope="module")
def hostile(limited: Server) -> Iterator[Server]:
    """The module's one server (:data:`conftest.LIMITS`); at the end its log shows no
    traceback and its metrics no 5xx."""
    yield limited
    log = limited.log.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def test_corpus_size() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile(hostile: Server, c: Case) -> None:
    run_case(hostile, c)
    normal_request(hostile)


def test_no_5xx_counted(hostile: Server) -> None:
    """The server's own count of answers by status has no 5xx after the corpus."""
    with connect(hostile) as s:
        s.sendall(req("GET", "/metrics", headers={"Connection": "close"}))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    text = data.decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("leanml_http_responses_total")]
    assert lines
    assert not [ln for ln in lines if 'status="5' in ln], lines


# ---------------------------------------------------------------------------- slow senders
def _split(raw: bytes, n: int) -> list[bytes]:
    step = -(-len(raw) // n)
    return [raw[i : i + step] for i in range(0, len(raw), step)]


SLOW = [
    # (id, parts, pause between parts, expected class): the header timeout is 1 s, the body's
    # 1.5 s (conftest.LIMITS)
    ("slow-head-within", _split(post(PREDICT, OK_BODY), 10), 0.05, "2xx"),
    (
        "slow-head-past-timeout",
        [b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n"],
        0.6,
        "408",
    ),
    ("slow-body-past-timeout", [post(PREDICT, OK_BODY)[:-30]] + [b" "] * 8, 0.3, "408"),
    (
        "slow-chunked-past-timeout",
        [post(PREDICT, b"", headers={"Transfer-Encoding": "chunked"})] + [b"1\r\n \r\n"] * 8,
        0.3,
        "408",
    ),
    ("slow-byte-by-byte-head", [bytes([b]) for b in req("GET", "/health")], 0.1, "408"),
    (
        "slow-between-pipelined",
        [post(PREDICT, OK_BODY), post(PREDICT, OK_BODY)[:20], post(PREDICT, OK_BODY)[20:]],
        0.4,
        "2xx",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("cid", "parts", "pause", "expect"), SLOW, ids=[s[0] for s in SLOW])
def test_slow_senders(
    hostile: Server, cid: str, parts: list[bytes], pause: float, expect: str
) -> None:
    """A slow sender within the timeouts is answered; one past them gets a JSON 408 and the
    connection closed (a write after the close may fail: the answer was already sent)."""
    n = 2 if cid == "slow-between-pipelined" else 1
    closes = expect == "408"
    c = Case(cid, tuple(parts), (expect,) * n, closes=closes, pause=pause)
    run_case(hostile, c)
    normal_request(hostile)
