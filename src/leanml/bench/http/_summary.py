"""The result of a load: latency figures, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

__all__ = ["latency_ms", "print_table", "write_json"]


def latency_ms(lat_s: list[float] | np.ndarray) -> dict[str, float | None]:
    """p50, p95, p99, max and mean in milliseconds (all ``None`` without a sample)."""
    a = np.asarray(lat_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return dict.fromkeys(("p50", "p95", "p99", "max", "mean"))
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def print_table(result: dict[str, Any], console: Any) -> None:
    t = Table(title=f"{result['mode']}-loop load on {result['url']} ({result['client']} client)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    lat = result["latency_ms"]
    rows = [
        ("requests", result["requests"]),
        ("throughput (req/s)", result["rps"]),
        (
            "p50 / p95 / p99 / max (ms)",
            f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}",
        ),
        (
            "errors (non-2xx / socket)",
            f"{result['errors']['non_2xx']} / {result['errors']['socket']}",
        ),
        ("server CPU (cores)", result.get("server_cpu_cores")),
        ("server RSS max (MB)", result.get("server_rss_mb_max")),
        ("client CPU (cores)", result.get("client_cpu_cores")),
        ("duplicates", result["duplicates"]),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    for s in result.get("steps", []):
        console.print(
            f"  step {s['target_rps']} req/s -> {s['rps']} req/s, p99 {s['latency_ms']['p99']} ms"
        )
