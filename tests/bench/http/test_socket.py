"""The raw keep-alive client against a tiny in-process HTTP/1.1 server."""

from __future__ import annotations

import asyncio

import pytest

from leanml.bench.http._socket import Conn


async def _serve(answers: list[bytes]) -> tuple[asyncio.Server, int, list[bytes]]:
    """Answers each request on a connection with the next of ``answers``; records the bodies."""
    bodies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            bodies.append(await reader.readexactly(length))
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], bodies


def test_keep_alive_requests_read_whole_answers() -> None:
    async def main() -> None:
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        bad = b"HTTP/1.1 422 Unprocessable\r\ncontent-length: 5\r\n\r\nnope!"
        server, port, bodies = await _serve([ok, bad])
        async with server:
            conn = Conn("127.0.0.1", port, "/p")
            assert not conn.is_open
            assert await conn.request(b'{"a":1}') == 200
            assert conn.is_open
            assert await conn.request(b'{"b":2}') == 422
            conn.close()
            assert not conn.is_open
        assert bodies == [b'{"a":1}', b'{"b":2}']

    asyncio.run(main())


def test_a_closed_connection_raises_for_the_caller_to_count() -> None:
    async def main() -> None:
        server, port, _ = await _serve([])  # closes at once
        async with server:
            conn = Conn("127.0.0.1", port, "/p")
            with pytest.raises((OSError, asyncio.IncompleteReadError)):  # what _Load counts
                await conn.request(b"{}")
            conn.close()

    asyncio.run(main())
