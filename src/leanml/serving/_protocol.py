"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes a response's status line and headers (``http.response.start``) and its body
(``http.response.body``) with two ``transport.write`` calls, i.e. two ``send`` syscalls. Profiling
``leanml serve`` on cache hits (py-spy, 32 connections) put 52% of the event-loop thread's
samples in those two writes. :class:`CoalescingHttpToolsProtocol` hands uvicorn a transport
wrapper that buffers writes made in one event-loop iteration and writes them with a single
call at the end of it (``loop.call_soon``): same bytes, same order, one syscall per response
(or fewer, for pipelined requests). Closing, aborting or switching protocols flushes first.
Selected with ``uvicorn.run(http="leanml.serving._protocol:CoalescingHttpToolsProtocol")``.

It also answers prediction-cache hits without the ASGI app (:func:`use_fast_answer`): uvicorn
starts an ASGI task for every request as soon as its headers are parsed; for ``POST
.../predict`` this protocol waits for the body instead and offers it to the registered
function (:meth:`leanml.serving.app.ServeApp.answer_cached`). When every text is cached that
function returns the JSON answer, which is written here with the same headers the app would
send: no task, no ASGI ``receive`` / ``send`` messages. Anything else (a miss, a bad body,
``Expect: 100-continue``, a body over 64 KiB, a pipelined request whose body is still
arriving) goes to the app exactly as before.

When one read holds exactly one plain ``POST /v1/models/<name>/predict`` request (HTTP/1.1, a
single ``Content-Length``, no ``Transfer-Encoding`` / ``Expect`` / ``Upgrade`` / ``Connection:
close``, well-formed header lines) and no other request is in flight on the connection, the
hit is answered before uvicorn parses it at all (:meth:`CoalescingHttpToolsProtocol.
_answer_whole`): no scope, no request cycle, no keep-alive timer re-armed per request. Anything
unusual, and every miss, is fed to uvicorn's parser as if this path did not exist (a miss's
JSON parse and cache keys are handed over, not redone). Measured on ``leanml serve`` at 100%
duplicates (``leanml bench http``, 32 connections, 4 x 5 s): 25.6 -> 19.3 us of server CPU per
cached request, 39.2k -> 51.5k requests/s; what is left is mostly the socket ``send`` and
uvloop's reads.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from leanml.serving._http import JSON, WORKER

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport", "use_fast_answer"]

#: (ASGI scope, whole body) -> a 200 JSON answer, or None to let the ASGI app answer.
FastAnswer = Callable[[Any, bytes], bytes | None]

_fast: FastAnswer | None = None
_HEAD = (  # the headers _http.send_bytes sends, around the content length
    b"HTTP/1.1 200 OK\r\n",
    b"content-type: " + JSON + b"\r\ncontent-length: ",
    b"\r\nx-leanml-worker: " + WORKER + b"\r\n",
)
log = logging.getLogger("leanml.serving")

_REQUEST_LINE = re.compile(rb"POST (/v1/models/[A-Za-z0-9._~-]+/predict) HTTP/1\.1")
#: a header line as RFC 9110 allows it: token name, colon, optional whitespace, visible value
_HEADER = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"  # name, colon, optional whitespace
    rb"([\x21-\x7e\x80-\xff]*(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)[ \t]*"  # value
)
#: headers that change how the request must be read or answered: uvicorn handles those
_DEFER = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


def use_fast_answer(answer: FastAnswer | None) -> None:
    """Register the function that may answer a whole ``POST .../predict`` body (None: off)."""
    global _fast
    _fast = answer


def _ask(scope: Any, body: bytes) -> bytes | None:
    """The registered fast answer, or None (also when it fails: the app then answers)."""
    fast = _fast
    if fast is None:
        return None
    try:
        return fast(scope, body)
    except Exception:  # never lose the request: the app answers it (and reports the error)
        log.exception("fast cache answer failed; the app answers instead")
        return None


class CoalescingTransport:
    """Buffers ``write`` calls until the end of the current event-loop iteration."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._buf: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        self._scheduled = False
        buf = self._buf
        if not buf:
            return
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        if not self._t.is_closing():
            self._t.write(data)

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() + sum(len(b) for b in self._buf)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def write_eof(self) -> None:
        self._flush()
        self._t.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._t.set_protocol(protocol)

    def abort(self) -> None:
        self._buf.clear()
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: coalesced writes and cache hits answered without a task."""

    _deferred: tuple[RequestResponseCycle, Any] | None = None
    _in_message = False  # the parser has seen the start of a message but not its end
    _handover: tuple[bytes, dict[str, Any]] | None = None  # a miss's parse, for the app
    _answered_at = float("-inf")  # loop time of the last answer written by _answer_whole

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if (
            _fast is not None
            and not self._in_message
            and (self.cycle is None or self.cycle.response_complete)
            and data.startswith(b"POST /v1/models/")
            and self._answer_whole(data)
        ):
            return
        try:
            super().data_received(data)
        finally:  # a miss's handover is for the request in this read only
            self._handover = None

    def _answer_whole(self, data: bytes) -> bool:
        """Answer ``data`` if it is one whole plain predict request whose texts are all cached."""
        end = data.find(b"\r\n\r\n")
        if (
            end < 0
            or self.root_path
            or self.limit_concurrency is not None
            or self.transport.is_closing()
        ):
            return False
        lines = data[:end].split(b"\r\n")
        line = _REQUEST_LINE.fullmatch(lines[0])
        if line is None:
            return False
        length = -1
        for raw in lines[1:]:
            header = _HEADER.fullmatch(raw)
            if header is None:
                return False
            name = header[1].lower()
            if name == b"content-length":
                value = header[2]
                if length >= 0 or not value.isdigit():
                    return False
                length = int(value)
            elif name in _DEFER or (name == b"connection" and header[2].lower() != b"keep-alive"):
                return False
        body = data[end + 4 :]
        if length != len(body):  # partial, pipelined or no length: uvicorn's parser decides
            return False
        scope = {"type": "http", "method": "POST", "path": line[1].decode("ascii")}
        answer = _ask(scope, body)
        if answer is None:
            self._handover = (body, scope)
            return False
        self._write_answer(answer, keep_alive=True)
        self.server_state.total_requests += 1
        # uvicorn cancels and re-arms the keep-alive timer for every request; here the armed
        # timer stays and timeout_keep_alive_handler re-arms itself for the time left
        self._answered_at = self.loop.time()
        task = self.timeout_keep_alive_task
        if task is None or task.cancelled():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        return True

    def timeout_keep_alive_handler(self) -> None:
        idle = self.loop.time() - self._answered_at
        if idle < self.timeout_keep_alive and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if (
            _fast is not None
            and cycle.scope["method"] == "POST"
            and not cycle.waiting_for_100_continue
            and cycle.scope["path"].endswith("/predict")
        ):
            if not cycle.more_body:  # a pipelined request, read in full
                if self._answer(cycle):
                    return
            elif cycle is self.cycle:  # wait for the body (on_message_complete)
                self._deferred = (cycle, app)
                return
        super()._start_asgi_task(cycle, app)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        # A fast answer arms the keep-alive timer from inside the parser; a request pipelined
        # in the same read must not be cut by it.
        self._unset_keepalive_if_required()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        deferred = self._deferred
        # beyond uvicorn's high-water mark it pauses reading until the app consumes the body
        if deferred is not None and len(deferred[0].body) > HIGH_WATER_LIMIT:
            self._deferred = None
            super()._start_asgi_task(*deferred)

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            if not self._answer(deferred[0]):
                super()._start_asgi_task(*deferred)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deferred = None
        super().connection_lost(exc)

    def _answer(self, cycle: RequestResponseCycle) -> bool:
        """Write the fast answer for ``cycle`` if there is one (then the request is done)."""
        if _fast is None or cycle.disconnected or self.transport.is_closing():
            return False
        body = bytes(cycle.body)
        handover, self._handover = self._handover, None
        if handover is not None and handover[0] == body:  # _answer_whole saw this miss
            scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
            for key, value in handover[1].items():
                scope.setdefault(key, value)  # the parse and cache keys it kept, for the app
            return False
        answer = _ask(cycle.scope, body)
        if answer is None:
            return False
        cycle.response_started = cycle.response_complete = True
        self._write_answer(answer, cycle.keep_alive)
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
        return True

    def _write_answer(self, body: bytes, keep_alive: bool) -> None:
        """The 200 JSON response with the headers the app sends (one buffered write)."""
        head, ctype, worker = _HEAD
        parts = [head]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (ctype, str(len(body)).encode(), worker)
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        self.transport.write(b"".join(parts))
