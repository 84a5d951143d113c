"""What ``leanml demo`` prints (three tables and its notes) and writes (the results as JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from leanml._format import human_bytes

__all__ = ["print_results", "shadow_cell", "write_json"]

_VARIANT_COLUMNS = (
    "model",
    "variant",
    "dataset",
    "test acc",
    "artifact",
    "load ms",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "pred/s",
)
_MONITORING_COLUMNS = (
    "model",
    "overhead",
    "true acc",
    "joined acc [95%]",
    "estimated acc [95%]",
    "labels joined",
    "missing",
    "late",
    "duplicate",
    "unknown",
)
_DAY_COLUMNS = (
    "model",
    "predictions",
    "peak/night /s",
    "drift (UTC): detected after",
    "alerts: fired/resolved",
    "health 24:00",
    "shadow agreement [95%]",
)


def print_results(console: Console, out: dict[str, Any]) -> None:
    """Print the results of :func:`~leanml.demo.run_demo`: the tables, then the notes."""
    console.print(_variants_table(out["models"]))
    console.print(_monitoring_table(out["models"]))
    if any("day" in r for r in out["models"].values()):
        console.print(_day_table(out["models"]))
    _print_notes(console, out)


def write_json(out: dict[str, Any], path: Path, console: Console) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    console.print(f"results written to {path}")


def _variants_table(results: dict[str, Any]) -> Table:
    table = Table(title="leanml demo: three email-product models, original vs compact")
    for column in _VARIANT_COLUMNS:
        table.add_column(
            column, justify="left" if column in ("model", "variant", "dataset") else "right"
        )
    for name, r in results.items():
        for variant, v in r["variants"].items():
            served = " (serving)" if variant == r["served_variant"] else ""
            table.add_row(
                name if variant == "original" else "",
                variant + served,
                r["dataset"] if variant == "original" else "",
                f"{v['accuracy']:.3f}",
                human_bytes(v["artifact_bytes"]),
                f"{v['load_ms']:.0f}",
                f"{v['p50_ms']:.3f}",
                f"{v['p95_ms']:.3f}",
                f"{v['p99_ms']:.3f}",
                f"{v['predictions_per_s']:,.0f}",
            )
    return table


def _overhead(m: dict[str, Any]) -> str:
    """Added time per single-text predict (paired), and the monitor's self-measured CPU share
    (with its CPU per prediction when known)."""
    out = f"{m['monitored_predict_us'] - m['predict_us']:+.1f} µs ({m['overhead_pct']:+.0f}%)"
    own = m.get("self_measured_overhead_pct")
    if own is None:
        return out
    per = m.get("monitor_cpu_per_prediction_us")
    return f"{out}, self {own:.1f}%" + ("" if per is None else f" ({per:.1f} µs)")


def _monitoring_table(results: dict[str, Any]) -> Table:
    table = Table(title="monitoring: overhead and accuracy from delayed, partly missing labels")
    for column in _MONITORING_COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results.items():
        m = r["monitoring"]
        gt = m["ground_truth"]
        table.add_row(
            name,
            _overhead(m),
            _fmt(m["true_accuracy"]),
            _fmt_interval(m["joined_accuracy"], m.get("joined_interval")),
            _fmt_interval(m["estimated_accuracy"], m.get("estimated_interval")),
            str(gt["joined"]),
            str(m["labels_missing"]),
            str(gt["late"]),
            str(gt["duplicate"]),
            str(gt["unknown"]),
        )
    return table


def _day_table(results: dict[str, Any]) -> Table:
    days = [r["day"] for r in results.values() if "day" in r]
    title = f"a simulated day ({days[0]['day']}, UTC): traffic, late labels, drift and alerts"
    table = Table(title=title)
    rows = []
    for name, r in results.items():
        if "day" not in r:
            continue
        d = r["day"]
        drift = d["drift"]
        rows.append(
            (
                name,
                f"{d['predictions']:,}",
                f"{d['peak_per_s']:.2f}/{d['night_per_s']:.2f}",
                f"{_hour(drift['start'], d['start'])} {drift['name']}, "
                + _minutes(drift["detection_s"]),
                f"{d['alerts_fired']} / {d['alerts_resolved']}",
                str(d["health"]),
                shadow_cell(r.get("shadow")),
            )
        )
    for column in _DAY_COLUMNS:
        left = column in ("model", "drift (UTC): detected after", "shadow agreement [95%]")
        table.add_column(column, justify="left" if left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def shadow_cell(shadow: dict[str, Any] | None) -> str:
    """The day's shadow check in one cell: ``0.987 [0.981, 0.991] n=412`` (the compact's live
    agreement with the original, its 95% Wilson interval, the shadowed predictions), "—" with the
    reason when no compact variant was checked."""
    if not shadow:
        return "-"
    if not shadow.get("enabled"):
        return f"— {shadow.get('reason') or ''}".rstrip()
    n = int(shadow.get("shadowed") or 0)
    cell = _fmt_interval(
        shadow.get("agreement"), (shadow.get("agreement_lower"), shadow.get("agreement_upper"))
    )
    cell = f"{cell} n={n:,}" if n else "nothing shadowed"
    return cell + (" FAILED" if shadow.get("fallen_back") else "")


def _hour(ts: float, day_start: float) -> str:
    minutes = round((ts - day_start) / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(seconds: float | None) -> str:
    return "not detected" if seconds is None else f"+{seconds / 60:.0f} min"


def _print_notes(console: Console, out: dict[str, Any]) -> None:
    for name, r in out["models"].items():
        if r["fallback_reason"]:
            console.print(f"[yellow]{name}: serving the original: {r['fallback_reason']}[/]")
        shadow = r.get("shadow") or {}
        if shadow.get("fallen_back"):  # the demo keeps the compact; a server would switch
            at = _hour(shadow["fallen_back_at"], r["day"]["start"]) if "day" in r else "?"
            console.print(
                f"[red]{name}: the shadow check failed at {at} (leanml serve would fall back to "
                f"the original): {shadow['reason']}[/]"
            )
    for note in out["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"models stored in {out['models_dir']}; monitoring store {out['store_url']}")
    if "report" in out:
        console.print(f"report: {out['report']}")
    console.print(f"finished in {out['elapsed_s']} s")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fmt_interval(value: float | None, interval: Sequence[float | None] | None) -> str:
    """``0.906 [0.889, 0.921]``: a figure and its 95% interval (the figure alone without one)."""
    if value is None or not interval or None in interval:
        return _fmt(value)
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
