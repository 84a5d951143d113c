"""``leanml train`` and ``leanml models list|show|switch``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leanml._format import human_bytes
from leanml.cli._common import (
    EncodingOption,
    LabelColumnOption,
    ModelsDirOption,
    StoreUrlOption,
    TextColumnOption,
    console,
    registry_of,
    settings_of,
)
from leanml.monitor import MonitorStore
from leanml.monitor.shadow import clear_fallback, read_decision
from leanml.registry import VARIANTS, check_name

__all__ = [
    "delete",
    "list_models",
    "models_app",
    "promote",
    "register",
    "rollback",
    "show",
    "switch",
    "train",
]

models_app = typer.Typer(
    help="List, inspect, switch, promote, roll back and delete registered models.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``models list|show|switch|promote|rollback|delete`` to ``app``."""
    app.command()(train)
    app.add_typer(models_app, name="models")


def train(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="Registry name; without --data, a demo task (email, intent or sentiment)."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled texts: CSV/TSV, JSONL, Parquet or a folder per class."),
    ] = None,
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    validation: Annotated[
        Path | None, typer.Option(help="Validation file (default: split from --data).")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Test file (default: split from --data).")
    ] = None,
    encoding: EncodingOption = None,
    estimator: Annotated[
        str,
        typer.Option(help="logreg, linearsvc, complementnb, sgd or randomforest."),
    ] = "logreg",
    task_name: Annotated[
        str | None,
        typer.Option("--name", help="Demo task only: registry name (default: the task)."),
    ] = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Train a pipeline on your labelled texts (--data) or a demo task; register a version."""
    from leanml.datasets import load_dataset, load_file
    from leanml.training import build_pipeline
    from leanml.workflows import train_and_register

    build_pipeline(estimator)  # validates the estimator before loading data
    if data is None and (validation or test):
        raise typer.BadParameter("needs --data", param_hint="--validation/--test")
    if data is not None and task_name is not None:
        raise typer.BadParameter("with --data, NAME is the registry name", param_hint="--name")
    settings = settings_of(ctx)
    registry = registry_of(ctx, models_dir)
    if data is None:
        dataset = load_dataset(name, settings=settings)
        name = task_name or name
    else:
        check_name(name, "leanml train")
        dataset = load_file(
            data, text_column, label_column, validation=validation, test=test,
            encoding=encoding, task=name,
        )  # fmt: skip
    with console.status(f"training {estimator} on {dataset.name} ({len(dataset.X_train)} rows)"):
        trained, manifest = train_and_register(
            registry, name, dataset, estimator, sample_rows=settings.validation_sample_rows
        )
    test_m, val = trained.metrics["test"], trained.metrics["val"]
    console.print(
        f"registered {manifest.name} v{manifest.version} ({estimator}, {dataset.name}): "
        f"val accuracy {val['accuracy']:.4f}, test accuracy {test_m['accuracy']:.4f}, "
        f"macro-F1 {test_m['macro_f1']:.4f}, artifact {human_bytes(manifest.payload_bytes)}"
    )
    if dataset.notes:
        console.print(f"[yellow]note:[/] {dataset.notes}")


@models_app.command("list")
def list_models(ctx: typer.Context, models_dir: ModelsDirOption = None) -> None:
    """One line per registered model."""
    registry = registry_of(ctx, models_dir)
    table = Table(title=f"models in {registry.root}")
    columns = ("name", "task", "versions", "serving", "variants", "active", "test acc", "size")
    for column in columns:
        table.add_column(column)
    for name in registry.list_models():
        manifest = registry.manifest(name)
        table.add_row(
            name,
            manifest.task,
            ", ".join(f"v{v}" for v in registry.versions(name)),
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
    store: StoreUrlOption = None,
) -> None:
    """A model's report: artifact bytes, load time, in-memory size and accuracy per variant;
    the live shadow check's agreement and decision from the monitor store."""
    report = registry_of(ctx, models_dir).report(name, version)
    report["shadow"] = _shadow_state(store or settings_of(ctx).store_url, name, report["version"])
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    console.print(
        f"[bold]{report['name']}[/] v{report['version']} ({report['task']}, "
        f"dataset {report['dataset']}), versions {report['versions']}, "
        f"serving v{report['serving_version']}, active variant: {report['active_variant']}"
    )
    table = Table()
    for column in ("variant", "artifact", "in memory", "load ms", "test acc", "macro-F1", "guard"):
        table.add_column(column)
    for variant, entry in report["variants"].items():
        table.add_row(variant, *_variant_cells(entry))
    console.print(table)
    for fallback in report["fallbacks"]:
        console.print(f"[yellow]fallback[/] v{fallback['version']}: {fallback['reason']}")
    sh = report["shadow"]
    if sh is not None and sh["fallen_back"]:
        console.print(f"[red]shadow fallback[/] v{sh['version']}: {sh['reason']}")
    elif sh is not None and sh["alarm"]:  # fallback = "off": the compact serves on
        console.print(f"[red]shadow alarm[/] v{sh['version']} (fallback off): {sh['reason']}")
    elif sh is not None and sh["agreement"] is not None:
        console.print(
            f"shadow check v{sh['version']}: live agreement {sh['agreement']:.3f} "
            f"[{sh['agreement_lower']:.3f}, {sh['agreement_upper']:.3f}] over "
            f"{sh['shadowed']:,} shadowed predictions"
        )


def _shadow_state(url: str, name: str, version: int) -> dict[str, Any] | None:
    """The shadow check's state in the monitor store; None without one (or unreachable)."""
    try:
        st = MonitorStore(url, create=False)
    except Exception:
        return None
    try:
        return read_decision(st, name, version)
    except Exception:
        return None
    finally:
        st.close()


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
    store: StoreUrlOption = None,
) -> None:
    """Make ``variant`` the one served for NAME (falls back to the original if unusable)."""
    if variant not in VARIANTS:
        raise typer.BadParameter(f"must be one of {', '.join(VARIANTS)}", param_hint="VARIANT")
    registry = registry_of(ctx, models_dir)
    registry.set_active_variant(name, variant)
    if variant == "compact":  # ends a shadow fallback in every server sharing the store
        url = store or settings_of(ctx).store_url
        try:
            st = MonitorStore(url, create=False)
            try:
                if read_decision(st, name, registry.serving_version(name)) is not None:
                    clear_fallback(st, name, registry.serving_version(name))
            finally:
                st.close()
        except Exception as exc:
            console.print(f"[yellow]the shadow check's state in {url} was not cleared: {exc}[/]")
    loaded = registry.load(name)
    if loaded.fell_back:
        console.print(
            f"[yellow]{name}: active variant set to {variant}, but it cannot serve; "
            f"serving the original: {loaded.fallback_reason}[/]"
        )
    else:
        console.print(f"{name}: now serving the {loaded.variant} variant of v{loaded.version}")


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    name: str,
    version: Annotated[int, typer.Argument(min=1, help="The version to serve.")],
    models_dir: ModelsDirOption = None,
) -> None:
    """Serve VERSION of NAME from now on (running servers follow within registry_watch_s)."""
    registry = registry_of(ctx, models_dir)
    before = registry.serving_version(name)
    registry.promote(name, version)
    console.print(f"{name}: now serving v{version} (was v{before})")


@models_app.command("rollback")
def rollback(ctx: typer.Context, name: str, models_dir: ModelsDirOption = None) -> None:
    """Serve the version promoted before the serving one again."""
    registry = registry_of(ctx, models_dir)
    before = registry.serving_version(name)
    version = registry.rollback(name)
    console.print(f"{name}: rolled back to v{version} (was v{before})")


@models_app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    version: Annotated[int, typer.Argument(min=1, help="The version to delete.")],
    models_dir: ModelsDirOption = None,
) -> None:
    """Delete VERSION of NAME (refused for the serving version)."""
    registry_of(ctx, models_dir).delete(name, version)
    console.print(f"{name}: deleted v{version}")
