"""Process resources as a bounded time series, and garbage-collection scheduling.

:class:`ResourceSampler` samples, on demand (the monitor's flusher calls it every
``resource_interval_s``): process RSS and CPU percent (psutil), GC counts and collections per
generation, the objects :func:`freeze_after_load` froze, and the store's disk usage (a
callable). The last ``history`` samples are kept in a deque (older ones evicted and counted).
One sample costs about 0.1-0.7 ms of CPU (more with the process under load).

GC scheduling: :func:`freeze_after_load` runs a full collection then ``gc.freeze()`` so the
objects of loaded models move to the permanent generation and are never scanned again (this also
keeps copy-on-write pages shared after a fork). :class:`IdleCollector` runs ``gc.collect(gen)``
once per idle period (no predictions for ``idle_s``) so collections happen between requests
rather than inside them; with ``disable_automatic=True`` it also turns off automatic collection
(gen-2 pauses only happen when idle; use with care: cycles accumulate under non-stop load, so a
collection is forced after at most ``max_interval_s``).
"""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import psutil

from leanml._validation import check_number

__all__ = ["IdleCollector", "ResourceSampler", "freeze_after_load"]


#: objects in the permanent generation after the last :func:`freeze_after_load` (None before)
_frozen: int | None = None


def freeze_after_load() -> int:
    """Collect, then freeze every live object into the permanent generation; return the count."""
    global _frozen
    gc.collect()
    gc.freeze()
    _frozen = gc.get_freeze_count()
    return _frozen


class ResourceSampler:
    """Bounded time series of process resources (see module docstring)."""

    def __init__(
        self,
        history: int = 360,
        *,
        disk_usage: Callable[[], int | None] | None = None,
        pid: int | None = None,
    ) -> None:
        check_number(history, "history", "ResourceSampler", low=1, integer=True)
        self._proc = psutil.Process(pid or os.getpid())
        self._proc.cpu_percent(None)  # prime: the first call always returns 0
        self.disk_usage = disk_usage
        self.samples: deque[dict[str, Any]] = deque(maxlen=history)
        self.evicted = 0

    def sample(self, now: float) -> dict[str, Any]:
        with self._proc.oneshot():
            mem = self._proc.memory_info()
            cpu = self._proc.cpu_percent(None)
            threads = self._proc.num_threads()
        stats = gc.get_stats()
        counts = gc.get_count()
        disk = None
        if self.disk_usage is not None:
            try:
                disk = self.disk_usage()
            except Exception:  # the store may be unreachable; resources still count
                disk = None
        s = {
            "ts": now,
            "rss_bytes": int(mem.rss),
            "cpu_percent": float(cpu),
            "threads": int(threads),
            "gc_counts": list(counts),
            "gc_collections": [int(g["collections"]) for g in stats],
            "gc_collected": [int(g["collected"]) for g in stats],
            # as counted at the last freeze_after_load: gc.get_freeze_count() walks the whole
            # permanent generation (~20 ms of CPU with a model loaded in a server)
            "gc_frozen": _frozen,
            "disk_bytes": disk,
        }
        if len(self.samples) == self.samples.maxlen:
            self.evicted += 1
        self.samples.append(s)
        return s

    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None

    def series(self) -> list[dict[str, Any]]:
        return list(self.samples)


class IdleCollector:
    """Run garbage collection when the process is idle (see module docstring)."""

    def __init__(
        self,
        idle_s: float = 2.0,
        generation: int = 2,
        *,
        disable_automatic: bool = False,
        max_interval_s: float = 60.0,
    ) -> None:
        check_number(idle_s, "idle_s", "IdleCollector", low=0, low_open=True)
        check_number(generation, "generation", "IdleCollector", low=0, high=2, integer=True)
        check_number(max_interval_s, "max_interval_s", "IdleCollector", low=0, low_open=True)
        self.idle_s = idle_s
        self.generation = generation
        self.max_interval_s = max_interval_s
        self.collections = 0
        self._last_activity = 0.0
        self._last_collect = 0.0
        self._collected_since_activity = False
        self._was_enabled = gc.isenabled()
        self.disable_automatic = disable_automatic
        if disable_automatic:
            gc.disable()

    def activity(self, now: float) -> None:
        self._last_activity = now
        self._collected_since_activity = False

    def maybe_collect(self, now: float) -> bool:
        idle = now - self._last_activity >= self.idle_s and not self._collected_since_activity
        overdue = self.disable_automatic and now - self._last_collect >= self.max_interval_s
        if not (idle or overdue):
            return False
        gc.collect(self.generation)
        self.collections += 1
        self._last_collect = now
        self._collected_since_activity = True
        return True

    def close(self) -> None:
        if self.disable_automatic and self._was_enabled:
            gc.enable()
