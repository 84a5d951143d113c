"""Slow clients (issue #20, point 4): 400 half-sent requests against ``leanml serve`` with a
short header timeout set here are all closed within it (plus a margin), each with a JSON 408,
and a normal request sent while they hold their connections is answered."""

from __future__ import annotations

import json
import selectors
import socket
import time
from pathlib import Path

import httpx

from .conftest import CONFIG, connect, running

HEADER_TIMEOUT_S = 2.0
#: a margin for a loaded 2-core machine: the bound asserted is the timeout, not a speed
MARGIN_S = 8.0
N = 400

SLOW = CONFIG.replace(
    "[serving]\n",
    f"[serving]\nheader_timeout_s = {HEADER_TIMEOUT_S}\nbody_timeout_s = {HEADER_TIMEOUT_S}\n"
    "max_connections = 1000\n",
    1,
)
#: half-sent requests: request lines and headers that never end, bodies that never come
HALVES = (
    b"GET /health HTTP/1.1\r\n",
    b"POST /v1/models/intent/predict HTTP/1.1\r\nHost: x\r\nContent-Len",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa",
    b"P",
)


def test_half_sent_requests_are_closed_within_the_header_timeout(
    models_dir: Path, tmp_path: Path
) -> None:
    with running(models_dir, f"sqlite:///{tmp_path / 'monitor.db'}", tmp_path, config=SLOW) as srv:
        sel = selectors.DefaultSelector()
        got: dict[socket.socket, list] = {}  # socket -> [bytes received, seconds to its close]
        try:
            for i in range(N):
                s = connect(srv, timeout=30)
                s.sendall(HALVES[i % len(HALVES)])
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                got[s] = [b"", None]
            sent = time.monotonic()  # the last half-sent request is out

            # meanwhile, a normal request is answered
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                r = c.post("/v1/models/intent/predict", json={"inputs": ["a normal request"]})
            assert r.status_code == 200 and r.json()["predictions"][0]["label"]

            deadline = sent + HEADER_TIMEOUT_S + MARGIN_S
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    s = key.fileobj  # type: ignore[assignment]
                    try:
                        chunk = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except ConnectionResetError:
                        chunk = b""
                    if chunk:
                        got[s][0] += chunk
                        continue
                    got[s][1] = time.monotonic() - sent
                    sel.unregister(s)
            still_open = len(sel.get_map())
        finally:
            for s in got:
                s.close()
            sel.close()
        assert still_open == 0, f"{still_open} of {N} half-sent connections still open"
        for data, _ in got.values():  # each was told why: a JSON 408
            assert _answers(data) == [(408, "request_timeout")], data[:300]
        seconds = sorted(t for _, t in got.values())
        print(  # the figure for the closing note
            json.dumps(
                {
                    "half_sent": N,
                    "closed": len(seconds),
                    "header_timeout_s": HEADER_TIMEOUT_S,
                    "close_after_s": {"min": round(seconds[0], 2), "max": round(seconds[-1], 2)},
                    "normal_request": r.status_code,
                }
            )
        )

        # the server is still serving, with its log clean
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/health").status_code == 200
    assert "Traceback" not in srv.log.read_text(errors="replace")


def _answers(raw: bytes) -> list[tuple[int, str]]:
    """(status, JSON ``error``) of each answer in ``raw``."""
    out = []
    for part in raw.split(b"HTTP/1.1 ")[1:]:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        out.append((int(head[:3]), json.loads(body)["error"]))
    return out
