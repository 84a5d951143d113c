"""MonitorHub: the monitors of one process, one per (model, variant), sharing one store.

What the serving layer holds: ``hub.get(name, variant)`` returns (creating on first use) the
:class:`~leanml.monitor.ModelMonitor` of that model variant; ``hub.prometheus_text()`` renders
every monitor for ``/metrics``; ``hub.stats()`` gives each monitor's stats dict; ``hub.close()``
(graceful shutdown) flushes and closes every monitor, then the store if the hub opened it.
``get`` takes a lock (creation only happens once per key); the monitors' record paths do not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from leanml.config import MonitorConfig
from leanml.monitor.alerts import AlertSink
from leanml.monitor.drift import Reference
from leanml.monitor.monitor import ModelMonitor
from leanml.monitor.prometheus import render
from leanml.monitor.stats import MonitorStats
from leanml.monitor.store import MonitorStore

__all__ = ["MonitorHub"]


class MonitorHub:
    """See module docstring."""

    def __init__(
        self,
        store: MonitorStore | str | None = None,
        *,
        config: MonitorConfig | None = None,
        sinks: Sequence[AlertSink] | None = None,
        clock: Callable[[], float] = time.time,
        table_prefix: str = "leanml_",
        start: bool = True,
    ) -> None:
        self._owns_store = isinstance(store, str)
        self.store = (
            MonitorStore(store, table_prefix=table_prefix) if isinstance(store, str) else store
        )
        self.config = config or MonitorConfig()
        self.sinks = sinks
        self.clock = clock
        self.start = start
        self._monitors: dict[tuple[str, str], ModelMonitor] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(
        self,
        name: str,
        variant: str = "default",
        *,
        version: str = "",
        reference: Reference | Mapping[str, Any] | None = None,
        analyzer: Callable[[str], Sequence[str]] | None = None,
        vocabulary: Mapping[str, Any] | None = None,
        config: MonitorConfig | None = None,
    ) -> ModelMonitor:
        key = (name, variant)
        mon = self._monitors.get(key)
        if mon is not None:
            return mon
        with self._lock:
            mon = self._monitors.get(key)
            if mon is None:
                from leanml.errors import MonitorError

                if self._closed:
                    raise MonitorError("the monitor hub is closed")
                mon = ModelMonitor(
                    name,
                    version=version,
                    variant=variant,
                    config=config or self.config,
                    store=self.store,
                    reference=reference,
                    analyzer=analyzer,
                    vocabulary=vocabulary,
                    sinks=self.sinks,
                    clock=self.clock,
                    start=self.start,
                )
                self._monitors[key] = mon
            return mon

    def monitors(self) -> list[ModelMonitor]:
        return list(self._monitors.values())

    def stats(self) -> dict[str, MonitorStats]:
        return {f"{m.name}/{m.variant}": m.stats() for m in self.monitors()}

    def prometheus_text(self) -> str:
        return render(self.monitors())

    def flush(self) -> None:
        for m in self.monitors():
            m.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for m in self.monitors():
            m.close()
        if self._owns_store and self.store is not None:
            self.store.close()

    def __enter__(self) -> MonitorHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
