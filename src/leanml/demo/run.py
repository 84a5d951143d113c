"""The run of ``leanml demo``: each demo model through every step, then the report and output.

For each model of :data:`DEMO_MODELS` the run loads its dataset, trains or reuses the model,
compresses it behind the accuracy guard, measures each variant loaded back through the registry
(:mod:`leanml.demo.models`), then runs the monitoring phase (:mod:`leanml.demo.monitoring`) and
the simulated day (:mod:`leanml.demo.day`: yesterday, midnight to midnight UTC, written to the
monitoring store), in which the original already loaded re-scores a sample of what the compact
variant served, as ``leanml serve``'s shadow check does (:mod:`leanml.demo.shadow`). A progress
bar per model shows the step and the work done. The report is written from the store over that
day at the end (with each model's shadow figures), and the results printed and optionally
written as JSON (:mod:`leanml.demo.output`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from leanml.config import AlertRule, MonitorConfig, ServingConfig, Settings
from leanml.dashboard import build_report
from leanml.datasets import Dataset, load_dataset
from leanml.demo.day import DAY_S, day_start_for, simulate_day
from leanml.demo.models import ensure_compact, ensure_model, variant_figures
from leanml.demo.monitoring import monitoring_demo
from leanml.demo.output import print_results, write_json
from leanml.demo.shadow import DayShadow
from leanml.monitor import MonitorStore
from leanml.monitor.shadow import default_threshold
from leanml.registry import LoadedModel, ModelRegistry

__all__ = ["DEMO_MODELS", "run_demo"]

#: registry name -> task
DEMO_MODELS = {"email": "email", "intent": "intent", "sentiment": "sentiment"}


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
    settings = settings or Settings.load()
    console = console or Console()
    registry = ModelRegistry(models_dir or settings.models_dir)
    store_url = store_url or settings.store_url
    day_start = day_start_for(time.time())
    started = time.perf_counter()
    # the variants in memory (LoadedModel by variant): the report does not load them again
    loaded: dict[str, dict[str, Any]] = {}
    results, notes = _run_models(
        settings, registry, store_url, n_requests, retrain, day_start, console, loaded
    )
    out: dict[str, Any] = {
        "models": results,
        "models_dir": str(registry.root),
        "store_url": store_url,
        "notes": notes,
    }
    if report_dir is not None:
        with console.status("writing the report"):
            report = build_report(
                store_url,
                report_dir,
                registry=registry,
                since=day_start,
                until=day_start + DAY_S + 60.0,
                rules={  # the rules each model's day was monitored with
                    name: [AlertRule(**rule) for rule in r["day"]["rules"]]
                    for name, r in results.items()
                },
                loaded=loaded,
                serving={  # the shadow check of each day, as a server's stats carry it
                    name: {
                        "variant": r["served_variant"],
                        "shadow": r["shadow"] if r["shadow"].get("enabled") else None,
                    }
                    for name, r in results.items()
                },
                sampling_rate=settings.monitor.sampling_rate,
                retention_max_age_s=settings.monitor.retention_max_age_s,
            )
        out["report"] = str(report.html_path)
    out["elapsed_s"] = round(time.perf_counter() - started, 2)
    print_results(console, out)
    if json_path is not None:
        write_json(out, json_path, console)
    return out


@dataclasses.dataclass(frozen=True)
class _DayPlan:
    start: float
    seed: int


class _Bar:
    """One model's progress bar: the step it is in and the predictions done."""

    def __init__(self, progress: Progress, name: str, total: int) -> None:
        self.progress = progress
        self.name = name
        self.task: TaskID = progress.add_task(f"{name}: loading data", total=total)

    def step(self, what: str) -> None:
        self.progress.update(self.task, description=f"{self.name}: {what}")

    def advance(self, n: float = 1) -> None:
        self.progress.advance(self.task, n)

    def remove(self) -> None:
        self.progress.remove_task(self.task)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _run_models(
    settings: Settings,
    registry: ModelRegistry,
    store_url: str,
    n_requests: int,
    retrain: bool,
    day_start: float,
    console: Console,
    loaded: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], list[str]]:
    """Every demo model through every step; their results and the datasets' notes."""
    store = MonitorStore(store_url)
    results: dict[str, Any] = {}
    notes: list[str] = []
    try:
        with _progress(console) as progress:
            for seed, (name, task) in enumerate(DEMO_MODELS.items()):
                # two loads of n_requests each (original, compact), then the day (as much)
                bar = _Bar(progress, name, 3 * n_requests)
                dataset = load_dataset(task, settings=settings)
                if dataset.notes:
                    notes.append(f"{name}: {dataset.notes}")
                results[name] = _run_model(
                    registry,
                    store,
                    settings.monitor,
                    settings.serving,
                    name,
                    task,
                    dataset,
                    n_requests,
                    retrain,
                    bar,
                    _DayPlan(day_start, seed),
                    loaded,
                )
                bar.remove()
    finally:
        store.close()
    return results, notes


def _run_model(
    registry: ModelRegistry,
    store: MonitorStore,
    monitor_config: MonitorConfig,
    serving_config: ServingConfig,
    name: str,
    task: str,
    dataset: Dataset,
    n_requests: int,
    retrain: bool,
    bar: _Bar,
    plan: _DayPlan,
    loaded: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One model: train or reuse, compress, measure each variant, monitor the served one."""
    bar.step("training")
    action, train_seconds = ensure_model(registry, name, task, dataset, retrain)
    # each variant is loaded through the registry once; the compression, the figures and the
    # report all use that one load (a skops load of a large vocabulary takes seconds)
    bar.step("loading the original through the registry")
    original = registry.load(name, variant="original")
    bar.step("compressing behind the accuracy guard")
    compression = ensure_compact(
        registry, name, dataset, fresh=action == "trained", original=original
    )
    bar.step("load through each variant")
    served = registry.load(name, original=original)  # a fallback reuses the loaded original
    loaded[name] = {"original": original}
    if served.variant == "compact":
        loaded[name]["compact"] = served
    variants = _measure_variants(registry, original, served, dataset, n_requests, bar)
    bar.step("monitoring")
    monitoring = _monitor(served, dataset, monitor_config, n_requests)
    bar.step("a simulated day")
    shadow = _day_shadow(original, served, serving_config, plan.seed)
    day = simulate_day(
        served.model,
        dataset,
        store,
        name=name,
        task=task,
        day_start=plan.start,
        version=str(served.version),
        variant=served.variant,
        reference=served.manifest.extra.get("reference"),
        config=monitor_config,
        seed=plan.seed,
        progress=lambda share: bar.advance(share * n_requests),
        shadow=shadow,
    )
    return {
        "task": task,
        "dataset": dataset.name,
        "model": action,
        "version": original.version,
        "train_seconds": round(train_seconds, 2),
        "requests": n_requests,
        **variants["original"],
        "served_variant": served.variant,
        "fallback_reason": served.fallback_reason,
        "variants": variants,
        "compression": compression,
        "monitoring": monitoring,
        "day": day,
        "shadow": _shadow_result(shadow, served, serving_config, compression),
    }


def _day_shadow(
    original: LoadedModel, served: LoadedModel, config: ServingConfig, seed: int
) -> DayShadow | None:
    """The day's shadow check when the compact variant serves and the setting is on: the
    loaded original re-scores a sample at the server's rate against the server's threshold."""
    if served.variant != "compact" or config.shadow != "on":
        return None
    guard = served.manifest.extra.get("guard")
    return DayShadow(
        original.model,
        rate=config.shadow_rate,
        threshold=default_threshold(config.shadow_threshold, guard),
        alpha=config.shadow_alpha,
        seed=seed,
    )


def _shadow_result(
    shadow: DayShadow | None,
    served: LoadedModel,
    config: ServingConfig,
    compression: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The day's shadow figures, or why there are none (``compression``: this run's
    compression, whose guard may have kept no compact variant)."""
    if shadow is not None:
        return shadow.summary()
    if served.variant != "compact":  # the accuracy guard fell back: no compact to check
        why = served.fallback_reason or (compression or {}).get("fallback_reason")
        return {"enabled": False, "reason": f"serving the original: {why or 'no compact variant'}"}
    return {"enabled": False, "reason": f"shadow check off ([serving] shadow = {config.shadow})"}


def _measure_variants(
    registry: ModelRegistry,
    original: LoadedModel,
    served: LoadedModel,
    dataset: Dataset,
    n_requests: int,
    bar: _Bar,
) -> dict[str, dict[str, Any]]:
    """The figures of the original and, when the registry has one, the compact variant (the
    served one when it is that variant, else loaded here)."""
    variants = {"original": variant_figures(original, dataset, n_requests, bar.advance)}
    compact = served  # fell back: the compact cannot serve, and the registry said why already
    if not served.fell_back and not (
        served.variant == "compact" and served.version == original.version
    ):
        compact = registry.load(
            original.name, version=original.version, variant="compact", original=original
        )
    if compact.variant == "compact":
        variants["compact"] = variant_figures(compact, dataset, n_requests, bar.advance)
    else:  # the registry fell back to the original: that load's share of the bar is done
        bar.advance(n_requests)
    return variants


def _monitor(
    served: LoadedModel,
    dataset: Dataset,
    monitor_config: MonitorConfig,
    n_requests: int,
) -> dict[str, Any]:
    """The monitoring phase: overhead, and accuracy joined from delayed, partly missing labels."""
    # each variant carries the drift reference of its own validation predictions
    simulation = monitoring_demo(
        served.model,
        dataset.X_test[:n_requests],
        dataset.y_test[:n_requests].tolist(),
        name=served.name,
        reference=served.manifest.extra.get("reference"),
        config=monitor_config,
    )
    overhead = simulation["overhead"]
    return {
        "overhead_pct": round(overhead["overhead_pct"], 2),
        "predict_us": round(overhead["predict_us"], 1),
        "monitored_predict_us": round(overhead["monitored_predict_us"], 1),
        # the monitor's own CPU (flusher + sampled caller cost) over the model's time
        "self_measured_overhead_pct": round(overhead["self_measured_overhead_pct"], 2),
        "monitor_cpu_per_prediction_us": round(overhead["monitor_cpu_per_prediction_us"], 2),
        "true_accuracy": simulation["true_accuracy"],
        "joined_accuracy": simulation["joined_accuracy"],
        "joined_interval": simulation["joined_interval"],
        "estimated_accuracy": simulation["estimated_accuracy"],
        "estimated_interval": simulation["estimated_interval"],
        "estimated_n": simulation["estimated_n"],
        "accuracy_alerts": {
            k: v for k, v in simulation["alerts"].items() if k.endswith("accuracy")
        },
        "ground_truth": simulation["ground_truth"],
        "labels_missing": simulation["labels_missing"],
        "health": simulation["health"],
    }
