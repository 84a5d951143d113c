"""``leanml report``: the HTML performance report with its PNG charts.

The report, the store and the HTTP client are imported inside the functions that use them:
every ``leanml`` command imports this module at start-up, and they bring matplotlib,
SQLAlchemy and httpx.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leanml.cli._common import (
    ModelsDirOption,
    StoreUrlOption,
    check_store_exists,
    console,
    parse_duration,
    parse_time,
    registry_of,
    settings_of,
)
from leanml.errors import ParameterError

if TYPE_CHECKING:
    from leanml.dashboard.report import Report

__all__ = ["parse_duration", "parse_size", "register", "report"]

_SIZES = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def register(app: typer.Typer) -> None:
    app.command()(report)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)\s*", text.lower())
    if not m or m.group(2) not in _SIZES:
        raise ParameterError(
            "The 'store_budget' parameter of leanml report must be a size such as 500MB or 2GiB, "
            f"got {text!r} instead."
        )
    return int(float(m.group(1)) * _SIZES[m.group(2)])


def _fetch_serving(url: str, names: list[str]) -> dict[str, Any]:
    """Per model, the live stats of a running ``leanml serve`` (cache, batching figures)."""
    import httpx  # heavy: see the module docstring

    out: dict[str, Any] = {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=5.0) as client:
        for name in names:
            try:
                r = client.get(f"/v1/models/{name}/stats")
            except httpx.HTTPError as exc:
                raise ParameterError(f"cannot read serving stats from {url}: {exc}") from exc
            if r.status_code == 200:
                out[name] = r.json()
    return out


def report(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Start of the range: a duration ago (30m, 1h, 2d) or ISO time.")
    ] = "1h",
    until: Annotated[
        str | None, typer.Option(help="End of the range (default: now); same forms as --since.")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", help="Models to include (repeat or comma-separate; default all)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for report.html and the PNG charts.")
    ] = Path("leanml-report"),
    store: StoreUrlOption = None,
    models_dir: ModelsDirOption = None,
    server: Annotated[
        str | None,
        typer.Option(help="Base URL of a running leanml serve: adds its cache and batch figures."),
    ] = None,
    bench: Annotated[
        list[Path] | None,
        typer.Option(help="JSON from benchmarks/*.py --json for the standard-vs-optimized table."),
    ] = None,
    store_budget: Annotated[
        str | None, typer.Option(help="Disk budget of the store (e.g. 2GB) for the retention rule.")
    ] = None,
    retention_days: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="The store's retention in days (default: [monitor] retention_max_age_s; 0: none).",
        ),
    ] = None,
) -> None:
    """Write the performance report (HTML + PNG charts) from the monitor store."""
    # heavy: see the module docstring
    from leanml.dashboard.report import build_report, load_benchmarks
    from leanml.monitor.store import MonitorStore

    settings = settings_of(ctx)
    start, end = _time_range(since, until)
    names = _model_names(models)
    registry = registry_of(ctx, models_dir)
    url = store or settings.store_url
    check_store_exists(url)
    st = MonitorStore(url, create=False)
    try:
        serving = _fetch_serving(server, names or registry.list_models()) if server else None
        with console.status("reading the store and drawing the charts"):
            result = build_report(
                st,
                out,
                registry=registry if registry.root.is_dir() else None,
                since=start,
                until=end,
                models=names,
                serving=serving,
                benchmarks=load_benchmarks(bench or []),
                sampling_rate=settings.monitor.sampling_rate,
                retention_max_age_s=(
                    settings.monitor.retention_max_age_s
                    if retention_days is None
                    else retention_days * 86_400 or None
                ),
                store_budget_bytes=parse_size(store_budget) if store_budget else None,
            )
    finally:
        st.close()
    _print_summary(result, url)


def _time_range(since: str, until: str | None) -> tuple[float, float]:
    """``--since`` and ``--until`` as timestamps; the end must come after the start."""
    now = time.time()
    start = parse_time(since, now, "since", "leanml report")
    end = parse_time(until, now, "until", "leanml report") if until else now
    if end <= start:
        raise ParameterError(
            f"The 'until' parameter of leanml report must be after --since, got {until!r} instead."
        )
    return start, end


def _model_names(models: list[str] | None) -> list[str] | None:
    """``--models a,b --models c`` -> ``["a", "b", "c"]``; ``None`` (every model) when empty."""
    return [n.strip() for item in models or [] for n in item.split(",") if n.strip()] or None


def _print_summary(result: Report, url: str) -> None:
    data = result.data
    if not data.models:
        console.print(f"[yellow]no monitored predictions in {url} for this range[/]")
    from leanml.dashboard.data import model_shadow_lines

    for name, md in data.models.items():
        console.print(f"{name}: {md.health}, {md.count:,} predictions")
        for line in model_shadow_lines(md):  # the online shadow check, when one ran
            console.print(f"  shadow check: {line}", highlight=False)
    console.print(
        f"{len(result.insights)} insight(s), {len(result.suggestions)} suggestion(s), "
        f"{len(result.charts)} chart(s)"
    )
    console.print(f"report written to {result.html_path}", highlight=False)
