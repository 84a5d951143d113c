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

A client that half-closes (shuts down its sending side after its request, as ``nc -N`` does)
still gets its answers, then the connection closes; a request cut short by the half-close gets
a JSON 400 (:meth:`CoalescingHttpToolsProtocol.eof_received`; the hostile corpus in
``tests/serving/test_hostile.py`` found both missing).

With limits set (:func:`use_limits`), a chunked body is followed on the raw bytes
(:class:`_ChunkedBody`): a chunk whose announced size takes the body past ``max_body_bytes``
gets a JSON 413 at once and the connection closes (the parser keeps chunk sizes to itself, and
the app only sees the bytes that arrived: it would wait for the body timeout, 408). To know
where a body starts, a read is handed to the parser in parts: up to the end of a request's
head, then its ``Content-Length`` body or its chunked body, then the next request.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from leanml.config import ServingConfig
from leanml.serving._http import JSON, WORKER, dumps

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport", "use_fast_answer", "use_limits"]

#: (ASGI scope, whole body) -> a 200 JSON answer, or None to let the ASGI app answer.
FastAnswer = Callable[[Any, bytes], bytes | None]

_fast: FastAnswer | None = None
_limits: ServingConfig | None = None  # header size and read timeouts; None: uvicorn's (none)
_HEAD = (  # the headers _http.send_bytes sends, around the content length
    b"HTTP/1.1 200 OK\r\n",
    b"content-type: " + JSON + b"\r\ncontent-length: ",
    b"\r\nx-leanml-worker: " + WORKER + b"\r\n",
)
_log = logging.getLogger("leanml.serving")

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


def use_limits(config: ServingConfig | None) -> None:
    """Enforce ``config``'s ``max_header_bytes``, ``header_timeout_s`` and ``body_timeout_s``
    on every connection (None: off)."""
    global _limits
    _limits = config


def _error_response(status: int, error: str, detail: str, field: str | None) -> bytes:
    """A whole JSON error answer that closes the connection (written by the protocol)."""
    body = dumps({"error": error, "detail": detail, "field": field})
    head = [
        STATUS_LINE[status],
        b"content-type: " + JSON + b"\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"x-leanml-worker: " + WORKER + b"\r\n",
    ]
    if status == 503:
        head.append(b"retry-after: 1\r\n")
    return b"".join([*head, b"connection: close\r\n\r\n", body])


async def _unavailable(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer past ``limit_concurrency``, as a JSON 503 with ``Retry-After``."""
    body = dumps(
        {
            "error": "unavailable",
            "detail": "too many concurrent connections; retry shortly",
            "field": None,
        }
    )
    headers = [
        (b"content-type", JSON),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _ask(scope: Any, body: bytes) -> bytes | None:
    """The registered fast answer, or None (also when it fails: the app then answers)."""
    fast = _fast
    if fast is None:
        return None
    try:
        return fast(scope, body)
    except Exception:  # never lose the request: the app answers it (and reports the error)
        _log.exception("fast cache answer failed; the app answers instead")
        return None


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _ChunkedBody:
    """The framing of one chunked body, followed on the raw bytes after its request's head:
    :meth:`scan` says how many bytes of a read belong to it and notices a chunk announced
    past ``budget`` body bytes (``over``). Anything it cannot follow (``lost``) is left to
    the parser, which rejects bad framing itself."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0  # body bytes announced so far
        self.state = "size"  # size line | data | the CRLF after data | trailer lines
        self.left = 0  # data bytes left in the current chunk
        self.line = b""  # a line split across reads
        self.over = self.done = self.lost = False

    def scan(self, data: bytes) -> int:
        i, n = 0, len(data)
        while i < n and not (self.over or self.done or self.lost):
            if self.state == "data":
                take = min(self.left, n - i)
                i += take
                self.left -= take
                if self.left == 0:
                    self.state = "crlf"
                continue
            eol = data.find(b"\n", i)
            if eol < 0:
                self.line += data[i:]
                self.lost = len(self.line) > 4096
                return n
            line = (self.line + data[i:eol]).rstrip(b"\r")
            self.line = b""
            i = eol + 1
            if self.state == "size":
                token = line.split(b";", 1)[0].strip(b" \t")
                if _HEX.fullmatch(token) is None:
                    self.lost = True
                    break
                size = int(token, 16)
                if size == 0:
                    self.state = "trailer"
                elif self.total + size > self.budget:
                    self.over = True
                else:
                    self.total += size
                    self.left = size
                    self.state = "data"
            elif self.state == "crlf":
                self.state = "size"
            elif not line:  # the blank line after the trailers: the body has ended
                self.done = True
        return i if self.done or self.over else n


def _head_end(tail: bytes, data: bytes) -> int:
    """The offset in ``data`` just past the first blank line (``tail``: the bytes before
    ``data``), 0 when there is none."""
    joined = tail + data
    k = joined.find(b"\r\n\r\n")
    end = k + 4 if k >= 0 else -1
    j = joined.find(b"\n\n", 0, k + 2 if k >= 0 else len(joined))  # bare-LF lines, if any
    if j >= 0:
        end = j + 2
    return max(end - len(tail), 0) if end >= 0 else 0


def _declared_length(scope: Any) -> int:
    """The request's ``Content-Length`` (0 when absent or unreadable: uvicorn's parser has
    already refused a malformed one)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


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

    _in_head = True  # waiting for (the rest of) a request line and its headers
    _head_bytes = 0  # bytes received while in the head (raw) ...
    _head_size = 0  # ... and the size of the parsed request line and header lines
    _timer: asyncio.TimerHandle | None = None  # the header or body read timeout
    _rejected = False  # a request's headers were too large: answer 431 and close
    _eof = False  # the client half-closed: close once what it sent in full is answered
    _tail = b""  # the last bytes handed to the parser (a head's end may span two reads)
    _chunked: _ChunkedBody | None = None  # the chunked body being received
    _body_left: int | None = None  # Content-Length bytes of the body being received
    _starts_body: str | bool = False  # on_headers_complete: "chunked" or the Content-Length

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_read_timeout("header")

    def data_received(self, data: bytes) -> None:
        if (
            _fast is not None
            and not self._in_message
            and (self.cycle is None or self.cycle.response_complete)
            and data.startswith(b"POST /v1/models/")
            and self._answer_whole(data)
        ):
            return
        limits = _limits
        try:
            if limits is None:
                if self._in_head:
                    self._head_bytes += len(data)
                super().data_received(data)
            else:
                self._feed_in_parts(data, limits.max_body_bytes)
        finally:  # a miss's handover is for the request in this read only
            self._handover = None
        if (
            limits is not None
            and (self._rejected or (self._in_head and self._head_bytes > limits.max_header_bytes))
            and not self.transport.is_closing()
        ):
            self._reject_head(limits.max_header_bytes)

    # ------------------------------------------------------------------ limits
    def _feed_in_parts(self, data: bytes, budget: int) -> None:
        """Hand ``data`` to the parser in parts (a head, a body, the next request), following
        chunked bodies: 413 as soon as a chunk is announced past ``budget``."""
        pending = data
        while pending and not self.transport.is_closing() and not self._rejected:
            chunked = self._chunked
            head = False
            if chunked is not None:
                cut = chunked.scan(pending)
                if chunked.over:
                    self._chunked = None
                    self._reject_chunk(budget)
                    return
                if chunked.done or chunked.lost:
                    self._chunked = None
            elif self._body_left is not None:
                cut = min(self._body_left, len(pending))
                self._body_left = self._body_left - cut or None
            elif self._in_head:
                cut = _head_end(self._tail, pending) or len(pending)
                head = True
            else:
                cut = len(pending)
            part, pending = pending[:cut], pending[cut:]
            self._tail = part[-3:] if len(part) >= 3 else (self._tail + part)[-3:]
            if self._in_head:
                self._head_bytes += len(part)
            self._starts_body = False
            super().data_received(part)
            follows, self._starts_body = self._starts_body, False
            if head and follows and self._in_message:  # the body starts at ``pending``
                if follows == "chunked":
                    self._chunked = _ChunkedBody(budget)
                else:
                    self._body_left = int(follows) or None

    def _reject_chunk(self, limit: int) -> None:
        """413: a chunk is announced past the body limit; close (the app sees a disconnect)."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            detail = f"a chunk of the body is announced past {limit} bytes"
            self.transport.write(_error_response(413, "payload_too_large", detail, "body"))
        self._close_cycle()

    def _arm_read_timeout(self, what: str) -> None:
        """Arm the ``header`` or ``body`` read timeout (replacing the armed one)."""
        limits = _limits
        self._cancel_read_timeout()
        if limits is None:
            return
        delay = limits.header_timeout_s if what == "header" else limits.body_timeout_s
        self._timer = self.loop.call_later(delay, self._read_timed_out, what)

    def _cancel_read_timeout(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read_timed_out(self, what: str) -> None:
        """The client did not send its headers (or body) in time: 408 unless an answer has
        started, then close; an ASGI task still reading sees a disconnect."""
        self._timer = None
        if self.transport.is_closing() or _limits is None:
            return
        cycle = self.cycle
        started = cycle is not None and cycle.response_started and not cycle.response_complete
        idle = what == "header" and self._head_bytes == 0 and not self._in_message
        if not started and not idle:
            seconds = _limits.header_timeout_s if what == "header" else _limits.body_timeout_s
            part = "headers" if what == "header" else "body"
            detail = f"the request's {part} did not arrive within {seconds:g} s"
            self.transport.write(_error_response(408, "request_timeout", detail, what))
        self._close_cycle()

    def _reject_head(self, limit: int) -> None:
        """431: the request line and headers exceed ``max_header_bytes``; close."""
        detail = f"the request line and headers exceed {limit} bytes"
        self.transport.write(_error_response(431, "headers_too_large", detail, "headers"))
        self._close_cycle()

    def _close_cycle(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive answers http.disconnect, send is a no-op
            cycle.message_event.set()
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to an unparsable request, as JSON."""
        self.transport.write(_error_response(400, "bad_request", msg, None))
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url) + 16
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        limits = _limits
        if limits is not None:
            if self._head_size > limits.max_header_bytes:
                self._rejected = True  # answered 431 once this read is parsed; no ASGI task
                return
            self._arm_read_timeout("body")  # cancelled when the message completes
            framing = dict(self.headers)  # uvicorn's (lowercased name, value) of this request
            te = framing.get(b"transfer-encoding", b"").strip().lower()
            length = framing.get(b"content-length", b"").strip()
            if te == b"chunked":
                self._starts_body = "chunked"
            elif not te and length.isdigit():
                self._starts_body = length.decode()
        super().on_headers_complete()

    def _answer_whole(self, data: bytes) -> bool:
        """Answer ``data`` if it is one whole plain predict request whose texts are all cached."""
        end = data.find(b"\r\n\r\n")
        limit = self.limit_concurrency
        if (
            end < 0
            or self.root_path
            or (limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit))
            or (_limits is not None and end > _limits.max_header_bytes)
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
        self._cancel_read_timeout()  # this request's head and body have arrived
        self._head_bytes = 0
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
        if app is service_unavailable:  # past limit_concurrency: JSON, never the fast answer
            super()._start_asgi_task(cycle, _unavailable)
            return
        if (
            _fast is not None
            and cycle.scope["method"] == "POST"
            and not cycle.waiting_for_100_continue
            and cycle.scope["path"].endswith("/predict")
            and _declared_length(cycle.scope) <= HIGH_WATER_LIMIT  # else the app answers 413
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
        self._in_head = True
        self._head_size = 0
        if self._timer is None:  # the first request's timeout runs from the connection's start
            self._arm_read_timeout("header")
        # A fast answer arms the keep-alive timer from inside the parser; a request pipelined
        # in the same read must not be cut by it.
        self._unset_keepalive_if_required()

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        super().on_body(body)
        deferred = self._deferred
        # beyond uvicorn's high-water mark it pauses reading until the app consumes the body
        if deferred is not None and len(deferred[0].body) > HIGH_WATER_LIMIT:
            self._deferred = None
            super()._start_asgi_task(*deferred)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._in_head = True
        self._head_bytes = 0
        self._chunked = None
        self._body_left = None
        self._cancel_read_timeout()
        if self._rejected:
            return
        super().on_message_complete()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            if not self._answer(deferred[0]):
                super()._start_asgi_task(*deferred)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client shut down its sending side (a half-close). Requests it sent in full are
        still answered, then the connection closes; a request it cut short can never
        complete: 400 (once the answers before it are out) and close. (uvicorn let the
        transport close at once: a whole request followed by a half-close got no answer.)"""
        self._eof = True
        self._cancel_read_timeout()
        if self.transport.is_closing():
            return None
        cycle = self.cycle
        busy = (cycle is not None and not cycle.response_complete) or bool(self.pipeline)
        if self._in_message and not (busy and self._in_head):  # this request's head or body
            if cycle is None or cycle.response_complete or not cycle.response_started:
                self._write_cut_short()
            self._close_cycle()
            return None
        if busy:
            return True  # keep the sending side open: on_response_complete closes
        self.transport.close()  # flushes a buffered answer first
        return None

    def _write_cut_short(self) -> None:
        part = "headers" if self._in_head else "body"
        detail = f"the connection was shut down before the request's {part} ended"
        self.transport.write(_error_response(400, "bad_request", detail, part))

    def on_response_complete(self) -> None:
        last = not self.pipeline
        super().on_response_complete()
        if self._eof and last and not self.transport.is_closing():
            if self._in_message:  # the head of a request cut short, after those answered
                self._write_cut_short()
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deferred = None
        self._cancel_read_timeout()
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
