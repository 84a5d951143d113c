"""Alert rules with minimum sample sizes and hysteresis, states, health and sinks.

A rule watches one metric of the monitor's flat metric table (``monitor.metrics()``: name ->
(value, sample size)) and has a warning and/or critical threshold, a direction (``"above"`` or
``"below"``), ``min_samples`` below which it holds its state (never fires on thin data),
``interval`` (compare the bound of the metric's 95% interval nearest to the healthy side, read
from the table's ``<metric>_upper`` for a "below" rule and ``<metric>_lower`` for an "above"
one, so that a figure whose interval still reaches the threshold does not fire), ``hysteresis``
(an absolute margin the value must recover past the threshold before the level
drops) and ``for_evaluations`` / ``clear_evaluations`` (consecutive evaluations needed to raise /
lower the level). Together they keep an alert from flapping around its threshold.

States are ``ok`` < ``warning`` < ``critical``; each transition is one :class:`AlertEvent` with a
human-readable reason, handed to every sink. Health: ``unhealthy`` if any rule is critical,
``degraded`` if any is warning, else ``healthy``.

Sinks: :class:`LogSink` (logging), :class:`CallbackSink` (a Python callable) and
:class:`WebhookSink` (HTTP POST of the event as JSON from its own thread, with a timeout, retries
with exponential backoff, and a bounded queue whose drops are counted). A sink that raises is
counted in ``sink_errors`` and never breaks the monitor.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx

from leanml._validation import check_number, param_error
from leanml.config.monitor import LEVELS, AlertRule

__all__ = [
    "AlertEvent",
    "AlertManager",
    "AlertSink",
    "CallbackSink",
    "LogSink",
    "WebhookSink",
    "health_from_levels",
]

_RANK = {name: i for i, name in enumerate(LEVELS)}
_log = logging.getLogger("leanml.monitor.alerts")


def health_from_levels(levels: Iterable[str]) -> str:
    worst = max((_RANK[level] for level in levels), default=0)
    return ("healthy", "degraded", "unhealthy")[worst]


@dataclass
class AlertEvent:
    """A change of a rule's level."""

    model: str
    variant: str
    rule: str
    metric: str
    previous: str
    level: str
    value: float | None
    n: int
    ts: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertSink(Protocol):
    def emit(self, event: AlertEvent) -> None: ...


class LogSink:
    """Log each transition (warning/critical at WARNING/ERROR, recovery at INFO)."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or _log

    def emit(self, event: AlertEvent) -> None:
        lvl = {"ok": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
        self.log.log(lvl[event.level], "alert %s/%s %s", event.model, event.rule, event.reason)


class CallbackSink:
    """Call ``fn(event)`` for each transition."""

    def __init__(self, fn: Callable[[AlertEvent], Any]) -> None:
        self.fn = fn

    def emit(self, event: AlertEvent) -> None:
        self.fn(event)


class WebhookSink:
    """POST each event as JSON to ``url`` from a background thread.

    ``timeout_s`` bounds each attempt; failed attempts (connection errors, 5xx, 429) are retried
    ``retries`` times with exponential backoff from ``backoff_s``. The queue holds at most
    ``max_queue`` events; the rest are counted in ``dropped``. ``sent`` and ``failed`` count the
    outcomes. ``close()`` drains the queue (bounded by ``timeout_s`` per remaining attempt).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_queue: int = 1000,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_number(timeout_s, "timeout_s", "WebhookSink", low=0, low_open=True)
        check_number(retries, "retries", "WebhookSink", low=0, integer=True)
        check_number(backoff_s, "backoff_s", "WebhookSink", low=0)
        check_number(max_queue, "max_queue", "WebhookSink", low=1, integer=True)
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.attempts = 0
        self._client_args = {
            "timeout": timeout_s,
            "headers": dict(headers or {}),
            "transport": transport,
        }
        self._max_queue = max_queue
        self._start()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart(ref))

    def _start(self) -> None:
        """(Re)create the queue, client and sender thread (also in a forked child)."""
        self._q: queue.Queue[AlertEvent | None] = queue.Queue(self._max_queue)
        self._client = httpx.Client(**self._client_args)  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._run, name="leanml-webhook", daemon=True)
        self._thread.start()

    def emit(self, event: AlertEvent) -> None:
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            event = self._q.get()
            try:
                if event is None:
                    return
                self._post(event)
            finally:
                self._q.task_done()

    def _post(self, event: AlertEvent) -> None:
        body = json.dumps(event.to_dict(), default=str)
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                r = self._client.post(
                    self.url, content=body, headers={"content-type": "application/json"}
                )
                if r.status_code < 400 or (400 <= r.status_code < 500 and r.status_code != 429):
                    if r.status_code < 400:
                        self.sent += 1
                    else:
                        self.failed += 1
                        _log.warning("webhook %s rejected alert: %s", self.url, r.status_code)
                    return
            except httpx.HTTPError as exc:
                _log.debug("webhook attempt %d failed: %s", attempt + 1, exc)
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        self.failed += 1
        _log.warning("webhook %s failed after %d attempts", self.url, self.retries + 1)

    def flush(self) -> None:
        """Wait until every queued event has been sent or has failed."""
        self._q.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._client.close()

    def stats(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "attempts": self.attempts,
        }


def _restart(ref: weakref.ReferenceType[WebhookSink]) -> None:
    sink = ref()
    if sink is not None:
        sink._start()


@dataclass
class _RuleState:
    level: str = "ok"
    candidate: str = "ok"
    streak: int = 0
    value: float | None = None
    n: int = 0
    reason: str = ""
    since: float = 0.0
    history: list[str] = field(default_factory=list)


class AlertManager:
    """Evaluate rules against a metric table and notify sinks of transitions."""

    def __init__(
        self,
        rules: Iterable[AlertRule],
        sinks: Iterable[AlertSink] = (),
        *,
        model: str = "",
        variant: str = "",
        max_events: int = 1000,
    ) -> None:
        self.model = model
        self.variant = variant
        self.sinks = list(sinks)
        self.sink_errors = 0
        self.max_events = max_events
        self.events: list[AlertEvent] = []
        self.events_evicted = 0
        self._state: dict[str, _RuleState] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[AlertRule]) -> None:
        rules = tuple(rules)
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise param_error("rules", "AlertManager", "rules with unique names", names)
        self.rules = rules
        self._state = {r.name: self._state.get(r.name, _RuleState()) for r in rules}

    def evaluate(
        self, metrics: Mapping[str, tuple[float | None, int]], now: float
    ) -> list[AlertEvent]:
        out = []
        for rule in self.rules:
            st = self._state[rule.name]
            value, n = metrics.get(rule.metric, (None, 0))
            st.value, st.n = value, n
            if value is None or value != value or n < rule.min_samples:
                st.streak = 0
                continue  # hold: not enough data to change anything
            side = "upper" if rule.direction == "below" else "lower"
            bound = metrics.get(f"{rule.metric}_{side}", (None, 0))[0] if rule.interval else None
            tested = value if bound is None or bound != bound else bound
            target = rule.level_for(tested, st.level)
            if target == st.level:
                st.streak = 0
                st.candidate = target
                continue
            if target != st.candidate:
                st.candidate, st.streak = target, 0
            st.streak += 1
            need = (
                rule.for_evaluations if _RANK[target] > _RANK[st.level] else rule.clear_evaluations
            )
            if st.streak < need:
                continue
            thr = getattr(rule, target) if target != "ok" else getattr(rule, st.level)
            op = ">" if rule.direction == "above" else "<"
            shown = f"{rule.metric}={value:.6g}"
            if tested is not value:
                shown += f" (95% {side} bound {tested:.4g})"
            if target == "ok":
                reason = f"{shown} recovered past {thr} (n={n})"
            else:
                reason = f"{shown} {op} {thr} ({target}, n={n})"
            event = AlertEvent(
                self.model,
                self.variant,
                rule.name,
                rule.metric,
                st.level,
                target,
                value,
                n,
                now,
                reason,
            )
            st.level, st.streak, st.reason, st.since = target, 0, reason, now
            out.append(event)
            self._notify(event)
        return out

    def _notify(self, event: AlertEvent) -> None:
        self.events.append(event)
        if len(self.events) > self.max_events:
            del self.events[0]
            self.events_evicted += 1
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a broken sink must not break monitoring
                self.sink_errors += 1
                _log.exception("alert sink %r failed", sink)

    def levels(self) -> dict[str, str]:
        return {name: st.level for name, st in self._state.items()}

    def health(self) -> str:
        return health_from_levels(self.levels().values())

    def active(self) -> list[dict[str, Any]]:
        return [
            {
                "rule": name,
                "level": st.level,
                "value": st.value,
                "n": st.n,
                "reason": st.reason,
                "since": st.since,
            }
            for name, st in self._state.items()
            if st.level != "ok"
        ]

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
