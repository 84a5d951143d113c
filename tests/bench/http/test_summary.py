"""A load's latency figures, its table and its JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from leanml.bench.http import print_table, write_json
from leanml.bench.http._summary import latency_ms


def test_latency_ms_in_milliseconds() -> None:
    got = latency_ms([0.001] * 98 + [0.010, 0.020])
    assert got["p50"] == 1.0 and got["max"] == 20.0 and got["mean"] == 1.28
    assert got["p50"] <= got["p95"] <= got["p99"] <= got["max"]


def test_latency_ms_without_a_sample_is_none() -> None:
    assert latency_ms([]) == dict.fromkeys(("p50", "p95", "p99", "max", "mean"))


def test_table_and_json(tmp_path: Path) -> None:
    result = {
        "mode": "open",
        "url": "http://h",
        "client": "python",
        "requests": 12,
        "rps": 6.0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0},
        "errors": {"non_2xx": 1, "socket": 2},
        "duplicates": 0.0,
        "steps": [{"target_rps": 5.0, "rps": 4.5, "latency_ms": {"p99": 3.0}}],
    }
    console = Console(record=True, width=120)
    print_table(result, console)
    text = console.export_text()
    assert "open-loop load on http://h (python client)" in text
    assert "1.0 / 2.0 / 3.0 / 4.0" in text and "1 / 2" in text
    assert "step 5.0 req/s -> 4.5 req/s, p99 3.0 ms" in text
    write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == result
