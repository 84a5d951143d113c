"""The structured access log: one JSON line per request on the ``leanml.access`` logger.

Off by default (``[serving] access_log``); when on, a share ``access_log_sample`` of requests is
written (every 5xx is). A line holds what an operator needs to follow a request and never what
a user sent: ``{"ts", "method", "route", "status", "latency_ms", "model", "ids"}`` where
``route`` is the route template (``/v1/models/{name}/predict``), ``model`` a served model's
name (null for any other path segment, so arbitrary paths never reach the log) and ``ids`` the
prediction ids the request made or labeled. No texts, labels, headers or client addresses.
Lines go to stderr unless the ``leanml.access`` logger already has a handler.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Container, Sequence

import orjson

from leanml.config import ServingConfig

__all__ = ["AccessLog"]

_log = logging.getLogger("leanml.access")


class AccessLog:
    """Writes the access lines of one app (see module docstring)."""

    def __init__(
        self,
        config: ServingConfig,
        models: Container[str],
        logger: logging.Logger = _log,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.enabled = config.access_log
        self.sample = config.access_log_sample
        self.models = models
        self.logger = logger
        self.rand = rand
        if self.enabled and not logger.handlers:  # uvicorn configures only its own loggers
            handler = logging.StreamHandler()  # stderr, beside uvicorn's lines
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False

    def wants(self, status: int) -> bool:
        """Whether a request answered ``status`` is written (the sampling decision)."""
        return self.enabled and (status >= 500 or self.rand() < self.sample)

    def write(
        self,
        method: str,
        route: str,
        status: int,
        started: float,
        model: str | None = None,
        ids: Sequence[str] = (),
    ) -> None:
        """One line; ``started`` is the request's ``time.perf_counter()``."""
        line = {
            "ts": round(time.time(), 3),
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "model": model if model in self.models else None,
            "ids": list(ids),
        }
        self.logger.info(orjson.dumps(line).decode())
