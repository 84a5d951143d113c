"""The server side of a load: its CPU (cores used) and RSS, over its pid and children (psutil)."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import psutil

__all__ = ["ServerSampler", "find_server_pid"]


def find_server_pid(url: str) -> int | None:
    """The pid listening on ``url``'s port, when the OS lets us see it."""
    port = urlsplit(url).port or 80
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class ServerSampler:
    """CPU seconds between :meth:`start` and :meth:`stop`; RSS sampled every 0.25 s meanwhile."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss_max = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def _procs(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        try:
            p = psutil.Process(self.pid)
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def start(self) -> None:
        self.cpu0 = self.cpu()
        self.t0 = time.perf_counter()

        def loop() -> None:
            while not self._stop.wait(0.25):
                self.rss_max = max(self.rss_max, self.rss())

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        cpu = self.cpu() - self.cpu0
        self._stop.set()
        if self._t is not None:
            self._t.join()
        rss = self.rss()
        self.rss_max = max(self.rss_max, rss)
        if self.pid is None:
            return {"server_pid": None}
        return {
            "server_pid": self.pid,
            "server_cpu_s": round(cpu, 3),
            "server_cpu_cores": round(cpu / wall, 3) if wall else None,
            "server_rss_mb": round(rss / 2**20, 1),
            "server_rss_mb_max": round(self.rss_max / 2**20, 1),
        }
