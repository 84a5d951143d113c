"""The raw asyncio HTTP/1.1 keep-alive client, for open-loop runs and when wrk is missing.

Much lighter than an HTTP library, so the client is not the bottleneck on a 2-core machine.
Closed loop: ``concurrency`` connections, each sends its next request when the previous answer
arrives. Open loop: requests are *scheduled* at the pattern's rate (:mod:`._schedule`) and
latency is measured from the scheduled send time, so a slow server cannot hide its queueing (no
coordinated omission); at most :data:`MAX_IN_FLIGHT` requests wait, the rest count as errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psutil

from leanml.bench.http._sampler import ServerSampler
from leanml.bench.http._schedule import rate_at, step_figures
from leanml.bench.http._summary import latency_ms
from leanml.bench.http._workload import BenchConfig, Bodies, request_path

__all__ = ["MAX_IN_FLIGHT", "Conn", "run_python"]

#: open loop: requests scheduled while this many are in flight count as socket errors
MAX_IN_FLIGHT = 4096


class Conn:
    """One keep-alive connection, opened on the first request, POSTing JSON bodies."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @property
    def is_open(self) -> bool:
        return self.stream is not None

    async def request(self, body: bytes) -> int:
        """Send one request and read its whole answer; returns the status code."""
        if self.stream is None:
            self.stream = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.stream
        writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.stream is not None:
            self.stream[1].close()
            self.stream = None


class _Load:
    """One run's connections target, bodies and what it recorded."""

    def __init__(self, cfg: BenchConfig, bodies: Bodies, seconds: float) -> None:
        u = urlsplit(cfg.url)
        self.cfg = cfg
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, request_path(cfg)
        self.bodies = bodies
        self.lat: list[float] = []
        self.starts: list[float] = []
        self.errors = {"non_2xx": 0, "socket": 0}
        self.t_start = time.perf_counter()
        self.t_end = self.t_start + seconds
        self.seconds = 0.0  # measured when the load ends (open loop waits for stragglers)

    def conn(self) -> Conn:
        return Conn(self.host, self.port, self.path)

    async def one(self, conn: Conn, scheduled: float) -> None:
        try:
            status = await conn.request(self.bodies.next())
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.errors["socket"] += 1
            conn.close()
            return
        if not 200 <= status < 300:
            self.errors["non_2xx"] += 1
        self.lat.append(time.perf_counter() - scheduled)
        self.starts.append(scheduled - self.t_start)

    async def closed_loop(self) -> None:
        async def worker() -> None:
            conn = self.conn()
            while time.perf_counter() < self.t_end:
                await self.one(conn, time.perf_counter())
            conn.close()

        await asyncio.gather(*(worker() for _ in range(self.cfg.concurrency)))

    async def open_loop(self) -> None:
        idle: list[Conn] = []
        tasks: set[asyncio.Task[None]] = set()

        async def fire(scheduled: float) -> None:
            conn = idle.pop() if idle else self.conn()
            await self.one(conn, scheduled)
            if conn.is_open:
                idle.append(conn)

        nxt = self.t_start
        while nxt < self.t_end:
            now = time.perf_counter()
            if now < nxt:
                await asyncio.sleep(nxt - now)
            while nxt <= time.perf_counter() and nxt < self.t_end:
                if len(tasks) < MAX_IN_FLIGHT:
                    task = asyncio.create_task(fire(nxt))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.errors["socket"] += 1
                nxt += 1.0 / rate_at(self.cfg, nxt - self.t_start)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for c in idle:
            c.close()


async def _python_load(cfg: BenchConfig, bodies: Bodies, seconds: float) -> _Load:
    load = _Load(cfg, bodies, seconds)
    await (load.closed_loop() if cfg.mode == "closed" else load.open_loop())
    load.seconds = time.perf_counter() - load.t_start
    return load


def run_python(cfg: BenchConfig, texts: list[str], sampler: ServerSampler) -> dict[str, Any]:
    """A warm-up (closed loop), then the measured load; the client's CPU is this process's."""
    bodies = Bodies(cfg, texts)
    if cfg.warmup_s > 0:
        warm = dataclasses.replace(cfg, mode="closed")
        asyncio.run(_python_load(warm, bodies, cfg.warmup_s))
    me = psutil.Process()
    c0 = me.cpu_times()
    sampler.start()
    r = asyncio.run(_python_load(cfg, bodies, cfg.duration_s))
    server = sampler.stop()
    c1 = me.cpu_times()
    secs = r.seconds
    out: dict[str, Any] = {
        "client": "python",
        "requests": len(r.lat),
        "seconds": round(secs, 3),
        "rps": round(len(r.lat) / secs, 1) if secs else 0.0,
        "errors": r.errors,
        "latency_ms": latency_ms(r.lat),
        "client_cpu_cores": round(((c1.user - c0.user) + (c1.system - c0.system)) / secs, 3),
        **server,
    }
    if cfg.mode == "open" and cfg.pattern == "step" and cfg.rate_to is not None:
        out["steps"] = step_figures(cfg, np.asarray(r.starts), np.asarray(r.lat))
    return out
