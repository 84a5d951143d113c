"""``leanml train`` and ``leanml models list|show|switch``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from leanml._format import human_bytes
from leanml.cli._common import ModelsDirOption, console, registry_of, settings_of
from leanml.registry import VARIANTS

__all__ = ["list_models", "models_app", "register", "show", "switch", "train"]

models_app = typer.Typer(help="List, inspect and switch registered models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``models list|show|switch`` to ``app``."""
    app.command()(train)
    app.add_typer(models_app, name="models")


def train(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="email, intent or sentiment.")],
    estimator: Annotated[
        str,
        typer.Option(help="logreg, linearsvc, complementnb, sgd or randomforest."),
    ] = "logreg",
    name: Annotated[str | None, typer.Option(help="Registry name (default: the task).")] = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Train a demo pipeline and register it as a new version."""
    from leanml.datasets import load_dataset
    from leanml.training import build_pipeline, train_model

    build_pipeline(estimator)  # validates the estimator before loading data
    settings = settings_of(ctx)
    dataset = load_dataset(task, settings=settings)
    with console.status(f"training {estimator} on {dataset.name} ({len(dataset.X_train)} rows)"):
        trained = train_model(task, estimator, dataset=dataset)
    registry = registry_of(ctx, models_dir)
    manifest = registry.register(
        name or task,
        trained.pipeline,
        task=task,
        metrics=trained.metrics,
        extra={
            "estimator": estimator,
            "reference": trained.reference,
            "dataset": dataset.summary(),
        },
    )
    test, val = trained.metrics["test"], trained.metrics["val"]
    console.print(
        f"registered {manifest.name} v{manifest.version} ({estimator}, {dataset.name}): "
        f"val accuracy {val['accuracy']:.4f}, test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}, artifact {human_bytes(manifest.payload_bytes)}"
    )
    if dataset.notes:
        console.print(f"[yellow]note:[/] {dataset.notes}")


@models_app.command("list")
def list_models(ctx: typer.Context, models_dir: ModelsDirOption = None) -> None:
    """One line per registered model."""
    registry = registry_of(ctx, models_dir)
    table = Table(title=f"models in {registry.root}")
    for column in ("name", "task", "versions", "latest", "variants", "active", "test acc", "size"):
        table.add_column(column)
    for name in registry.list_models():
        manifest = registry.manifest(name)
        table.add_row(
            name,
            manifest.task,
            str(len(registry.versions(name))),
            f"v{manifest.version}",
            ", ".join(registry.variants(name)),
            registry.active_variant(name),
            f"{manifest.metrics.get('test', {}).get('accuracy', float('nan')):.4f}",
            human_bytes(manifest.payload_bytes),
        )
    console.print(table)


@models_app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    models_dir: ModelsDirOption = None,
) -> None:
    """A model's report: artifact bytes, load time, in-memory size and accuracy per variant."""
    report = registry_of(ctx, models_dir).report(name, version)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    console.print(
        f"[bold]{report['name']}[/] v{report['version']} ({report['task']}, "
        f"dataset {report['dataset']}), versions {report['versions']}, "
        f"active variant: {report['active_variant']}"
    )
    table = Table()
    for column in ("variant", "artifact", "in memory", "load ms", "test acc", "macro-F1", "guard"):
        table.add_column(column)
    for variant, entry in report["variants"].items():
        table.add_row(variant, *_variant_cells(entry))
    console.print(table)
    for fallback in report["fallbacks"]:
        console.print(f"[yellow]fallback[/] v{fallback['version']}: {fallback['reason']}")


def _variant_cells(entry: dict[str, Any]) -> list[str]:
    if "error" in entry and "artifact_bytes" not in entry:
        return [f"[red]{entry['error']}[/]", "", "", "", "", ""]
    guard = entry.get("guard")
    guard_text = "" if guard is None else ("passed" if guard.get("passed") else "failed")
    load_ms = entry.get("load_seconds")
    return [
        human_bytes(entry["artifact_bytes"]),
        human_bytes(entry["memory_bytes"]) if "memory_bytes" in entry else "?",
        f"{load_ms * 1000:.1f}" if load_ms is not None else entry.get("error", "?"),
        _fmt(entry.get("test_accuracy")),
        _fmt(entry.get("test_macro_f1")),
        guard_text,
    ]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@models_app.command("switch")
def switch(
    ctx: typer.Context,
    name: str,
    variant: Annotated[str, typer.Argument(help="original or compact.")],
    models_dir: ModelsDirOption = None,
) -> None:
    """Make ``variant`` the one served for NAME (falls back to the original if unusable)."""
    if variant not in VARIANTS:
        raise typer.BadParameter(f"must be one of {', '.join(VARIANTS)}", param_hint="VARIANT")
    registry = registry_of(ctx, models_dir)
    registry.set_active_variant(name, variant)
    loaded = registry.load(name)
    if loaded.fell_back:
        console.print(
            f"[yellow]{name}: active variant set to {variant}, but it cannot serve; "
            f"serving the original: {loaded.fallback_reason}[/]"
        )
    else:
        console.print(f"{name}: now serving the {loaded.variant} variant of v{loaded.version}")
