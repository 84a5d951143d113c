"""``leanml serve`` and ``leanml bench http``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leanml.cli import _common
from leanml.config import Settings
from leanml.errors import ParameterError
from leanml.registry import ModelRegistry

__all__ = ["bench_http", "register", "serve"]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``bench http`` to ``app``."""
    app.command("serve")(serve)
    bench = typer.Typer(help="Load tests.", no_args_is_help=True)
    app.add_typer(bench, name="bench")
    bench.command("http")(bench_http)


def _serving_overrides(
    monitoring: bool, cache: bool, batching: bool, variant: str | None
) -> dict[str, object]:
    """The [serving] settings the command-line switches change (only those turned off/set)."""
    overrides: dict[str, object] = {}
    if not monitoring:
        overrides["monitoring"] = False
    if not cache:
        overrides["cache_max_entries"] = 0
    if not batching:
        overrides["max_batch_size"] = 1
    if variant is not None:
        overrides["variant"] = variant
    return overrides


def _require_models(folder: Path) -> None:
    """Exit 2 before starting when ``folder`` holds no registered model."""
    if not ModelRegistry(folder).list_models():
        raise ParameterError(
            f"No registered models in {folder}: train one (leanml train NAME --data FILE) or "
            "register one (leanml register NAME MODEL.skops --validation FILE) there first, "
            "or give the folder that holds them.",
            param="MODELS_DIR",
        )


def serve(
    ctx: typer.Context,
    models_dir: Annotated[
        Path | None, typer.Argument(help="Registry folder (default: settings models_dir).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    store: Annotated[
        str | None, typer.Option("--store", help="Monitor store URL (SQLite or PostgreSQL).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML file: [leanml], [serving], [monitor] tables.", dir_okay=False
        ),
    ] = None,
    monitoring: Annotated[bool, typer.Option(help="Monitor every prediction.")] = True,
    cache: Annotated[bool, typer.Option(help="Prediction cache.")] = True,
    batching: Annotated[bool, typer.Option(help="Micro-batching.")] = True,
    variant: Annotated[
        str | None, typer.Option(help="auto | original | compact (default: auto).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the registered models over HTTP (see /docs once started)."""
    from leanml.app import run  # here, not at the top: keeps the CLI's start light

    root_config = ctx.find_root().params.get("config") if ctx.find_root() else None
    cfg = config or root_config
    _require_models(models_dir or Settings.load(cfg).models_dir)
    run(
        host=host,
        port=port,
        workers=workers,
        config_file=str(cfg) if cfg else None,
        models_dir=str(models_dir) if models_dir else None,
        store_url=store,
        serving=_serving_overrides(monitoring, cache, batching, variant),
        log_level=log_level,
    )


def bench_http(
    url: Annotated[str, typer.Argument(help="Base URL, e.g. http://127.0.0.1:8000")],
    model: Annotated[str, typer.Option(help="Model name.")] = "email",
    mode: Annotated[str, typer.Option(help="closed | open")] = "closed",
    concurrency: Annotated[int, typer.Option(min=1)] = 32,
    rate: Annotated[float, typer.Option(help="Open loop: requests/s (start rate).")] = 500.0,
    pattern: Annotated[str, typer.Option(help="Open loop: constant | step | ramp")] = "constant",
    rate_to: Annotated[
        float | None, typer.Option(help="Open loop step/ramp: final requests/s.")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Open loop step: number of steps.")] = 4,
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds of load.")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds of warm-up.")] = 1.0,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Duplicate ratio.")] = 0.0,
    server_pid: Annotated[
        int | None, typer.Option(help="Server pid for CPU/RSS (default: found by port).")
    ] = None,
    client: Annotated[str, typer.Option(help="auto | wrk | python")] = "auto",
    texts: Annotated[
        Path | None, typer.Option(help="File of texts, one JSON string per line.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write JSON here.")] = None,
) -> None:
    """Load-test a running leanml server (closed or open loop) and print a table."""
    from leanml.bench.http import BenchConfig, print_table, run_bench, write_json

    cfg = BenchConfig(
        url=url,
        model=model,
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        pattern=pattern,
        rate_to=rate_to,
        steps=steps,
        duration_s=duration,
        warmup_s=warmup,
        duplicates=duplicates,
        server_pid=server_pid,
        client=client,
        texts_file=str(texts) if texts else None,
    )
    result = run_bench(cfg)
    print_table(result, _common.console)
    if json_path is not None:
        write_json(result, json_path)
