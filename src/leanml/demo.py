"""``leanml demo``: the three email-product models, trained (or reused), loaded and loaded-tested.

Offline and within a few minutes on 2 cores: for email categorization, intent recognition and
sentiment analysis it trains the demo pipeline (or reuses the registered one when it was trained
on the same dataset), stores it in the registry, loads it back through the registry (checksums,
allow-list), runs a single-text in-process load through it and prints one table.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leanml.bench.inprocess import run_single_text_load
from leanml.config import Settings
from leanml.datasets import load_dataset
from leanml.registry import ModelRegistry
from leanml.training import train_model

__all__ = ["DEMO_MODELS", "run_demo"]

#: registry name -> task
DEMO_MODELS = {"email": "email", "intent": "intent", "sentiment": "sentiment"}


def _ensure_model(
    registry: ModelRegistry, name: str, task: str, dataset: Any, retrain: bool
) -> tuple[str, float]:
    """Register a freshly trained model unless one trained on ``dataset`` exists."""
    if not retrain and registry.versions(name):
        manifest = registry.manifest(name)
        if manifest.metrics.get("dataset") == dataset.name:
            return "reused", 0.0
    started = time.perf_counter()
    trained = train_model(task, dataset=dataset)
    registry.register(
        name,
        trained.pipeline,
        task=task,
        metrics=trained.metrics,
        extra={
            "estimator": trained.estimator,
            "reference": trained.reference,
            "dataset": dataset.summary(),
        },
    )
    return "trained", time.perf_counter() - started


def run_demo(
    *,
    settings: Settings | None = None,
    models_dir: Path | None = None,
    n_requests: int = 2000,
    retrain: bool = False,
    json_path: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo and return (and optionally write) its results."""
    settings = settings or Settings.load()
    console = console or Console()
    registry = ModelRegistry(models_dir or settings.models_dir)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    notes: list[str] = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for name, task in DEMO_MODELS.items():
            bar = progress.add_task(f"{name}: loading data", total=n_requests)
            dataset = load_dataset(task, settings=settings)
            if dataset.notes:
                notes.append(f"{name}: {dataset.notes}")
            progress.update(bar, description=f"{name}: training")
            action, train_seconds = _ensure_model(registry, name, task, dataset, retrain)
            progress.update(bar, description=f"{name}: loading from the registry")
            loaded = registry.load(name)
            progress.update(bar, description=f"{name}: {n_requests} single-text predictions")
            load = run_single_text_load(
                loaded.model.predict,
                dataset.X_test,
                n_requests,
                on_progress=functools.partial(progress.advance, bar),
            )
            summary = load.summary()
            results[name] = {
                "task": task,
                "dataset": dataset.name,
                "model": action,
                "version": loaded.version,
                "variant": loaded.variant,
                "accuracy": loaded.manifest.metrics["test"]["accuracy"],
                "macro_f1": loaded.manifest.metrics["test"]["macro_f1"],
                "artifact_bytes": loaded.manifest.payload_bytes,
                "load_ms": round(loaded.load_seconds * 1000, 1),
                "train_seconds": round(train_seconds, 2),
                "p50_ms": summary["p50_ms"],
                "p95_ms": summary["p95_ms"],
                "p99_ms": summary["p99_ms"],
                "predictions_per_s": summary["predictions_per_s"],
                "requests": n_requests,
            }
            progress.remove_task(bar)
    out = {
        "models": results,
        "elapsed_s": round(time.perf_counter() - started, 2),
        "models_dir": str(registry.root),
        "notes": notes,
    }
    console.print(_table(results))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"models stored in {registry.root}; finished in {out['elapsed_s']} s")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2) + "\n")
        console.print(f"results written to {json_path}")
    return out


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="leanml demo: three email-product models")
    for column in (
        "model",
        "dataset",
        "test acc",
        "artifact",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "pred/s",
    ):
        table.add_column(column, justify="left" if column in ("model", "dataset") else "right")
    for name, r in results.items():
        table.add_row(
            f"{name} ({r['model']})",
            r["dataset"],
            f"{r['accuracy']:.3f}",
            _human_bytes(r["artifact_bytes"]),
            f"{r['p50_ms']:.3f}",
            f"{r['p95_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['predictions_per_s']:,.0f}",
        )
    return table


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
