"""``leanml demo``: the three email-product models, end to end, offline, in a few minutes.

For email categorization, intent recognition and sentiment analysis it:

1. trains the demo pipeline, or reuses the registered one trained on the same dataset;
2. compresses it behind the accuracy guard and registers the compact variant, which then serves
   when the guard passed (the registry falls back to the original otherwise, with the reason);
3. loads both variants back through the registry (checksums, allow-list, no pickle) and runs a
   single-text in-process load through each;
4. measures the monitoring overhead and replays delayed, partly missing ground truth to compare
   the accuracy joined by prediction id with the true and the estimated accuracy;
5. runs a monitored load into the monitoring store and writes the HTML report from it.

It prints the tables and, with ``json_path``, writes everything as JSON.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leanml._format import human_bytes
from leanml.bench.inprocess import run_single_text_load
from leanml.config import Settings
from leanml.datasets import Dataset, load_dataset
from leanml.registry import LoadedModel, ModelRegistry
from leanml.training import evaluate, train_model

__all__ = ["DEMO_MODELS", "run_demo"]

#: registry name -> task
DEMO_MODELS = {"email": "email", "intent": "intent", "sentiment": "sentiment"}
#: share of the monitored predictions whose true label is sent back for the report
FEEDBACK_SHARE = 0.7


def _ensure_model(
    registry: ModelRegistry, name: str, task: str, dataset: Dataset, retrain: bool
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


def _ensure_compact(
    registry: ModelRegistry, name: str, dataset: Dataset, fresh: bool
) -> dict[str, Any] | None:
    """Compress the latest version unless it has a compact variant already."""
    from leanml.compress.registered import compress_registered

    version = registry.latest_version(name)
    if not fresh and "compact" in registry.variants(name, version):
        return None
    return compress_registered(registry, name, version=version, dataset=dataset, activate=True)


def _variant_figures(
    loaded: LoadedModel, dataset: Dataset, n_requests: int, progress: Any
) -> dict[str, Any]:
    load = run_single_text_load(
        loaded.model.predict, dataset.X_test, n_requests, on_progress=progress
    ).summary()
    test = evaluate(loaded.model, dataset.X_test, dataset.y_test)
    return {
        "variant": loaded.variant,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "artifact_bytes": loaded.manifest.payload_bytes,
        "load_ms": round(loaded.load_seconds * 1000, 1),
        **{k: load[k] for k in ("p50_ms", "p95_ms", "p99_ms", "predictions_per_s")},
    }


def _monitored_load(
    served: LoadedModel,
    reference: dict[str, Any] | None,
    dataset: Dataset,
    store: Any,
    n_requests: int,
    progress: Any,
) -> dict[str, Any]:
    """A monitored single-text load written to ``store``, then delayed feedback for a share."""
    from leanml.monitor import ModelMonitor, monitored

    monitor = ModelMonitor(
        served.name,
        version=str(served.version),
        variant=served.variant,
        store=store,
        reference=reference,
        sinks=[],
    )
    wrapped = monitored(served.model, name=served.name, monitor=monitor)
    ids: list[str] = []
    load = run_single_text_load(
        lambda batch: ids.extend(wrapped.predict_with_ids(batch)[1]),
        dataset.X_test,
        n_requests,
        warmup=0,
        on_progress=progress,
    )
    rng = np.random.default_rng(0)
    answered = np.flatnonzero(rng.random(len(ids)) < FEEDBACK_SHARE)
    truth = [dataset.y_test[i % len(dataset.y_test)] for i in answered]
    monitor.record_ground_truth_batch([ids[i] for i in answered], truth)
    monitor.close()
    stats = monitor.stats()
    return {
        "monitored_predictions_per_s": round(load.predictions_per_s, 1),
        "feedback_sent": len(answered),
        "realized_accuracy": stats["accuracy"]["realized"]["accuracy"],
        "estimated_accuracy": stats["accuracy"]["estimated"],
        "health": stats["health"],
    }


def run_demo(
    *,
    settings: Settings | None = None,
    models_dir: Path | None = None,
    store_url: str | None = None,
    report_dir: Path | None = Path("leanml-report"),
    n_requests: int = 2000,
    retrain: bool = False,
    json_path: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo and return (and optionally write) its results."""
    from leanml.monitor import MonitorStore
    from leanml.monitor.demo import monitoring_demo

    settings = settings or Settings.load()
    console = console or Console()
    registry = ModelRegistry(models_dir or settings.models_dir)
    store_url = store_url or settings.store_url
    store = MonitorStore(store_url)
    started_wall = time.time()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    notes: list[str] = []
    steps = 3 * n_requests
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for name, task in DEMO_MODELS.items():
            bar = progress.add_task(f"{name}: loading data", total=steps)
            advance = functools.partial(progress.advance, bar)
            dataset = load_dataset(task, settings=settings)
            if dataset.notes:
                notes.append(f"{name}: {dataset.notes}")
            progress.update(bar, description=f"{name}: training")
            action, train_seconds = _ensure_model(registry, name, task, dataset, retrain)
            progress.update(bar, description=f"{name}: compressing behind the accuracy guard")
            compression = _ensure_compact(registry, name, dataset, fresh=action == "trained")
            progress.update(bar, description=f"{name}: load through each variant")
            original = registry.load(name, variant="original")
            served = registry.load(name)
            figures = _variant_figures(original, dataset, n_requests, advance)
            variants = {"original": figures}
            compact = registry.load(name, variant="compact")
            if compact.variant == "compact":
                variants["compact"] = _variant_figures(compact, dataset, n_requests, advance)
            else:
                progress.advance(bar, n_requests)
            progress.update(bar, description=f"{name}: monitoring")
            # each variant carries the drift reference of its own validation predictions
            reference = served.manifest.extra.get("reference")
            simulation = monitoring_demo(
                served.model,
                dataset.X_test[:n_requests],
                dataset.y_test[:n_requests].tolist(),
                name=name,
                reference=reference,
            )
            live = _monitored_load(served, reference, dataset, store, n_requests, advance)
            results[name] = {
                "task": task,
                "dataset": dataset.name,
                "model": action,
                "version": original.version,
                "train_seconds": round(train_seconds, 2),
                "requests": n_requests,
                **figures,
                "served_variant": served.variant,
                "fallback_reason": served.fallback_reason,
                "variants": variants,
                "compression": compression,
                "monitoring": {
                    "overhead_pct": round(simulation["overhead"]["overhead_pct"], 2),
                    "predict_us": round(simulation["overhead"]["predict_us"], 1),
                    "monitored_predict_us": round(
                        simulation["overhead"]["monitored_predict_us"], 1
                    ),
                    "true_accuracy": simulation["true_accuracy"],
                    "joined_accuracy": simulation["joined_accuracy"],
                    "estimated_accuracy": simulation["estimated_accuracy"],
                    "ground_truth": simulation["ground_truth"],
                    "labels_missing": simulation["labels_missing"],
                    **live,
                },
            }
            progress.remove_task(bar)
    store.close()
    out: dict[str, Any] = {
        "models": results,
        "models_dir": str(registry.root),
        "store_url": store_url,
        "notes": notes,
    }
    if report_dir is not None:
        from leanml.dashboard import build_report

        with console.status("writing the report"):
            report = build_report(store_url, report_dir, registry=registry, since=started_wall)
        out["report"] = str(report.html_path)
    out["elapsed_s"] = round(time.perf_counter() - started, 2)
    _print(console, results, notes, out)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        console.print(f"results written to {json_path}")
    return out


def _print(
    console: Console, results: dict[str, Any], notes: list[str], out: dict[str, Any]
) -> None:
    table = Table(title="leanml demo: three email-product models, original vs compact")
    for column in (
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
    ):
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
    console.print(table)
    mon = Table(title="monitoring: overhead and accuracy from delayed, partly missing labels")
    for column in (
        "model",
        "overhead",
        "true acc",
        "joined acc",
        "estimated acc",
        "labels joined",
        "missing",
        "late",
        "duplicate",
        "unknown",
        "health",
    ):
        mon.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results.items():
        m = r["monitoring"]
        gt = m["ground_truth"]
        mon.add_row(
            name,
            f"{m['monitored_predict_us'] - m['predict_us']:+.1f} µs ({m['overhead_pct']:+.0f}%)",
            _fmt(m["true_accuracy"]),
            _fmt(m["joined_accuracy"]),
            _fmt(m["estimated_accuracy"]),
            str(gt["joined"]),
            str(m["labels_missing"]),
            str(gt["late"]),
            str(gt["duplicate"]),
            str(gt["unknown"]),
            str(m["health"]),
        )
    console.print(mon)
    for name, r in results.items():
        if r["fallback_reason"]:
            console.print(f"[yellow]{name}: serving the original: {r['fallback_reason']}[/]")
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"models stored in {out['models_dir']}; monitoring store {out['store_url']}")
    if "report" in out:
        console.print(f"report: {out['report']}")
    console.print(f"finished in {out['elapsed_s']} s")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
