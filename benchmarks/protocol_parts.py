"""What handing a read to the parser in parts costs (issue #20: the immediate 413 for a chunk
announced past the body limit needs to know where each body starts).

    flock /tmp/bench.lock python benchmarks/protocol_parts.py

With limits on, :class:`leanml.serving._protocol.CoalescingHttpToolsProtocol` feeds a read
that holds a request's head and body to httptools in two calls (head, then the
``Content-Length`` body), after looking for the head's end (``_head_end``), instead of one.
This times both ways on the same bytes (a predict request with a 1.4 kB body, the parser's
callbacks doing nothing) in the same run, alternating, and prints JSON: microseconds per
request each way and the difference. A cache hit answered before the parser
(``_answer_whole``) is not affected; a miss pays the difference once per request.
"""

from __future__ import annotations

import json
import time

import httptools

from leanml.serving._protocol import _head_end

BODY = json.dumps({"inputs": ["please reply to this email about the invoice " * 30]}).encode()
HEAD = (
    b"POST /v1/models/email/predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Content-Type: application/json\r\nUser-Agent: wrk\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)
REQUEST = HEAD + BODY


class _Sink:
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_body(self, body: bytes) -> None: ...


def _whole(n: int) -> float:
    p = httptools.HttpRequestParser(_Sink())
    t = time.perf_counter()
    for _ in range(n):
        p.feed_data(REQUEST)
    return time.perf_counter() - t


def _parts(n: int) -> float:
    p = httptools.HttpRequestParser(_Sink())
    tail = b""
    t = time.perf_counter()
    for _ in range(n):
        data = REQUEST
        cut = _head_end(tail, data) or len(data)
        head, body = data[:cut], data[cut:]
        tail = head[-3:]
        p.feed_data(head)
        tail = body[-3:]
        p.feed_data(body)
    return time.perf_counter() - t


def main() -> None:
    n, reps = 20_000, 7
    whole: list[float] = []
    parts: list[float] = []
    for i in range(reps):
        for fn, out in (
            ((_whole, whole), (_parts, parts))
            if i % 2 == 0
            else (
                (_parts, parts),
                (_whole, whole),
            )
        ):
            out.append(fn(n) / n * 1e6)
    w, p = sorted(whole)[reps // 2], sorted(parts)[reps // 2]
    print(
        json.dumps(
            {
                "request_bytes": len(REQUEST),
                "us_per_request_one_feed": round(w, 3),
                "us_per_request_in_parts": round(p, 3),
                "extra_us_per_request": round(p - w, 3),
                "ratio": round(p / w, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
