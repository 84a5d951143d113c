"""Loggers whose repeated messages are written at a bounded rate.

During an outage the same failure repeats at the rate of whatever hits it (a flusher step every
0.1 s, a feedback poll every 0.2 s, each with its traceback): measured 0.6 MB/s of log for a
PostgreSQL store that was down. :func:`limited` attaches a :class:`RateLimit` filter to a
logger: per call site (logger, message template, file, line), at most ``burst`` records per
``period_s``; the rest are dropped and counted, and the next record let through says how many
were left out. The first occurrence of every failure in a period is written with its traceback;
the rest of the burst as one line each, ending with the exception's type and message (a chained
database error prints three tracebacks of 30 lines: one per site and period is enough to debug).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimit", "limited"]


class RateLimit(logging.Filter):
    """At most ``burst`` records per call site per ``period_s`` (see module docstring)."""

    def __init__(
        self,
        burst: int = 5,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_sites: int = 1024,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period_s = period_s
        self.clock = clock
        self.max_sites = max_sites
        self.suppressed = 0  # records dropped, in total
        self._sites: dict[tuple[object, ...], list[float]] = {}  # [window start, sent, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg, record.pathname, record.lineno)
        now = self.clock()
        with self._lock:
            site = self._sites.get(key)
            if site is None:
                if len(self._sites) >= self.max_sites:  # bounded: forget the oldest site
                    self._sites.pop(next(iter(self._sites)))
                site = self._sites[key] = [now, 0, 0]
            elif now - site[0] >= self.period_s:
                dropped = int(site[2])
                site[:] = [now, 0, 0]
                if dropped:
                    record.msg = f"{record.msg} [{dropped} more like this in the last period]"
            if site[1] < self.burst:
                site[1] += 1
                if site[1] > 1 and record.exc_info:
                    _one_line(record)
                return True
            site[2] += 1
            self.suppressed += 1
            return False


def _one_line(record: logging.LogRecord) -> None:
    """Replace the record's traceback by ``: Type: message`` at the end of its message."""
    exc = record.exc_info[1] if record.exc_info else None
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
    record.msg = f"{record.getMessage()}: {summary}"
    record.args = None
    record.exc_info = None
    record.exc_text = None


def limited(name: str, burst: int = 5, period_s: float = 60.0) -> logging.Logger:
    """``logging.getLogger(name)`` with a :class:`RateLimit` (attached once per logger)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit(burst, period_s))
    return logger
