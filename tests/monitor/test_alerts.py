from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from leanml.config import AlertRule
from leanml.errors import ParameterError
from leanml.monitor.alerts import (
    AlertEvent,
    AlertManager,
    CallbackSink,
    LogSink,
    WebhookSink,
    health_from_levels,
)

RULE = AlertRule(
    "acc",
    "realized_accuracy",
    "below",
    warning=0.9,
    critical=0.8,
    min_samples=50,
    hysteresis=0.02,
    for_evaluations=2,
    clear_evaluations=2,
)


def _run(mgr: AlertManager, values: list[tuple[float | None, int]]) -> list[str]:
    levels = []
    for i, v in enumerate(values):
        mgr.evaluate({"realized_accuracy": v}, now=float(i))
        levels.append(mgr.levels()["acc"])
    return levels


def test_fires_holds_and_clears_with_hysteresis() -> None:
    events: list[AlertEvent] = []
    mgr = AlertManager([RULE], [CallbackSink(events.append)], model="m", variant="v")
    seq = [
        (0.95, 100),  # ok
        (0.85, 100),  # breach 1 of 2: still ok
        (0.85, 100),  # breach 2: warning fires
        (0.91, 100),  # above 0.9 but inside the 0.02 hysteresis band: holds warning
        (0.905, 100),
        (0.93, 100),  # recovered past 0.92: clear 1 of 2
        (0.89, 100),  # breach again: resets the clear streak, still warning
        (0.93, 100),
        (0.93, 100),  # cleared
        (0.5, 10),  # below min_samples: holds ok, never fires on thin data
        (0.5, 10),
        (None, 500),  # no value: holds
        (0.75, 100),
        (0.75, 100),  # critical straight away (two evaluations)
        (0.81, 100),  # above 0.8 but within hysteresis: holds critical
        (0.85, 100),
        (0.85, 100),  # back to warning (past 0.82), not ok
    ]
    levels = _run(mgr, seq)
    assert levels == [
        "ok",
        "ok",
        "warning",
        "warning",
        "warning",
        "warning",
        "warning",
        "warning",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "critical",
        "critical",
        "critical",
        "warning",
    ]
    assert [(e.previous, e.level) for e in events] == [
        ("ok", "warning"),
        ("warning", "ok"),
        ("ok", "critical"),
        ("critical", "warning"),
    ]
    assert events[0].reason.startswith("realized_accuracy=0.85 < 0.9 (warning, n=100)")
    assert events[0].model == "m" and events[0].ts == 2.0
    assert mgr.health() == "degraded"
    assert mgr.active()[0]["rule"] == "acc"


def test_health_and_above_rules() -> None:
    assert health_from_levels([]) == "healthy"
    assert health_from_levels(["ok", "warning"]) == "degraded"
    assert health_from_levels(["warning", "critical"]) == "unhealthy"
    lat = AlertRule("p99", "latency_p99_s", "above", warning=0.1, critical=0.5)
    mgr = AlertManager([lat])
    mgr.evaluate({"latency_p99_s": (0.6, 10)}, 0.0)
    assert mgr.health() == "unhealthy"
    mgr.evaluate({"latency_p99_s": (0.2, 10)}, 1.0)
    assert mgr.levels() == {"p99": "warning"}
    mgr.evaluate({"latency_p99_s": (0.01, 10)}, 2.0)
    assert mgr.health() == "healthy"


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ParameterError):
        AlertManager([RULE, RULE])


def test_broken_sink_is_counted_and_log_sink_logs(caplog: pytest.LogCaptureFixture) -> None:
    def boom(event: AlertEvent) -> None:
        raise RuntimeError("sink down")

    rule = AlertRule("e", "error_rate", "above", warning=0.1)
    mgr = AlertManager([rule], [CallbackSink(boom), LogSink()], model="m")
    with caplog.at_level(logging.WARNING, logger="leanml.monitor.alerts"):
        mgr.evaluate({"error_rate": (0.5, 10)}, 0.0)
    assert mgr.sink_errors == 1
    assert any("alert m/e error_rate=0.5 > 0.1" in r.getMessage() for r in caplog.records)


class _Hook(BaseHTTPRequestHandler):
    fail_first = 0
    bodies: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
        else:
            cls.bodies.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Hook.bodies = []
    _Hook.fail_first = 2
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_webhook_posts_json_with_retry(server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    sink = WebhookSink(url, timeout_s=2.0, retries=3, backoff_s=0.01)
    mgr = AlertManager([AlertRule("e", "error_rate", "above", warning=0.1)], [sink], model="m")
    mgr.evaluate({"error_rate": (0.5, 10)}, 7.0)
    sink.flush()
    assert sink.stats() == {"sent": 1, "failed": 0, "dropped": 0, "attempts": 3}
    assert _Hook.bodies[0]["rule"] == "e" and _Hook.bodies[0]["level"] == "warning"
    assert _Hook.bodies[0]["ts"] == 7.0
    mgr.close()


def test_webhook_gives_up_and_counts_failure() -> None:
    # nothing listens on this port: every attempt fails fast
    sink = WebhookSink("http://127.0.0.1:9/none", timeout_s=0.5, retries=1, backoff_s=0.01)
    sink.emit(AlertEvent("m", "v", "r", "x", "ok", "warning", 1.0, 1, 0.0, "why"))
    sink.flush()
    assert sink.stats()["failed"] == 1 and sink.stats()["attempts"] == 2
    sink.close()


def test_a_below_rule_reads_the_upper_bound_of_the_interval() -> None:
    rule = AlertRule("est", "estimated_accuracy", "below", warning=0.85, min_samples=10)
    mgr = AlertManager([rule])
    # the estimate is under the threshold but its interval reaches above it: hold
    table = {
        "estimated_accuracy": (0.84, 200),
        "estimated_accuracy_lower": (0.79, 200),
        "estimated_accuracy_upper": (0.89, 200),
    }
    mgr.evaluate(table, now=0.0)
    assert mgr.levels()["est"] == "ok"
    # the whole interval under the threshold: warn, and the reason names the bound
    table["estimated_accuracy_upper"] = (0.849, 200)
    (event,) = mgr.evaluate(table, now=1.0)
    assert event.level == "warning" and "upper bound 0.849" in event.reason
    # a rule that ignores the interval compares the value itself
    plain = AlertManager([AlertRule("e", "estimated_accuracy", "below", 0.85, interval=False)])
    table["estimated_accuracy_upper"] = (0.89, 200)
    plain.evaluate(table, now=0.0)
    assert plain.levels()["e"] == "warning"


def test_an_above_rule_reads_the_lower_bound() -> None:
    mgr = AlertManager([AlertRule("e", "error_rate", "above", warning=0.01)])
    mgr.evaluate({"error_rate": (0.02, 100), "error_rate_lower": (0.005, 100)}, now=0.0)
    assert mgr.levels()["e"] == "ok"
    mgr.evaluate({"error_rate": (0.05, 1000), "error_rate_lower": (0.04, 1000)}, now=1.0)
    assert mgr.levels()["e"] == "warning"
