"""Rate-limited loggers: a repeating failure is written a bounded number of times per period."""

from __future__ import annotations

import logging
import sys

from leanml._logging import RateLimit, limited


def _record(msg: str = "store write failed: %s", line: int = 1) -> logging.LogRecord:
    return logging.LogRecord("leanml.x", logging.ERROR, "f.py", line, msg, ("down",), None)


def test_burst_per_call_site_then_a_count_of_what_was_left_out() -> None:
    now = [0.0]
    f = RateLimit(burst=3, period_s=10.0, clock=lambda: now[0])
    passed = [f.filter(_record()) for _ in range(100)]
    assert passed.count(True) == 3 and f.suppressed == 97
    assert f.filter(_record(line=2))  # another call site has its own budget
    now[0] = 10.0
    rec = _record()
    assert f.filter(rec)
    assert "97 more like this" in rec.getMessage() and rec.getMessage().startswith("store")


def test_sites_are_bounded() -> None:
    f = RateLimit(burst=1, period_s=10.0, max_sites=4)
    for line in range(50):
        assert f.filter(_record(line=line))
    assert len(f._sites) == 4


def test_limited_attaches_one_filter() -> None:
    a = limited("leanml.test_logging")
    b = limited("leanml.test_logging")
    assert a is b and sum(isinstance(f, RateLimit) for f in a.filters) == 1


def test_one_traceback_per_site_and_period_the_rest_on_one_line() -> None:
    now = [0.0]
    f = RateLimit(burst=3, period_s=10.0, clock=lambda: now[0])
    try:
        raise ConnectionError("database down\nDETAIL: 100% gone")
    except ConnectionError:
        info = sys.exc_info()
    recs = [_record() for _ in range(3)]
    for r in recs:
        r.exc_info = info
        assert f.filter(r)
    out = [logging.Formatter().format(r) for r in recs]
    assert out[0].count("Traceback") == 1  # the first keeps its traceback
    for line in out[1:]:
        assert "Traceback" not in line and "\n" not in line
        assert line == "store write failed: down: ConnectionError: database down"
    now[0] = 10.0  # a new period: a traceback again
    r = _record()
    r.exc_info = info
    assert f.filter(r) and "Traceback" in logging.Formatter().format(r)
