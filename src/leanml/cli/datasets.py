"""``leanml datasets list|info|fetch``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from leanml.cli._common import console, settings_of
from leanml.datasets import TASKS, fetch_clinc150, load_dataset

__all__ = ["datasets_app", "fetch", "info", "list_datasets", "register"]

datasets_app = typer.Typer(
    help="The demo datasets: where they are and what they are.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def list_datasets(ctx: typer.Context) -> None:
    """Each task's dataset, its source, size and licence."""
    table = Table(title="demo datasets")
    for column in ("task", "dataset", "classes", "train/val/test", "source", "licence"):
        table.add_column(column)
    for task in TASKS:
        ds = load_dataset(task, settings=settings_of(ctx))
        table.add_row(
            task,
            ds.name,
            str(len(ds.classes)),
            f"{len(ds.X_train)}/{len(ds.X_val)}/{len(ds.X_test)}",
            ds.source,
            ds.license,
        )
    console.print(table)


@datasets_app.command("info")
def info(
    ctx: typer.Context, task: Annotated[str, typer.Argument(help="email, intent or sentiment.")]
) -> None:
    """A dataset's splits, classes, source, licence and citation."""
    ds = load_dataset(task, settings=settings_of(ctx))
    for key, value in ds.summary().items():
        console.print(f"[bold]{key}:[/] {value}", highlight=False)
    console.print(f"[bold]citation:[/] {ds.citation}", highlight=False)
    if ds.notes:
        console.print(f"[bold]notes:[/] {ds.notes}", highlight=False)


@datasets_app.command("fetch")
def fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="clinc150")],
) -> None:
    """Download a dataset that leanml may not ship (CLINC150) into the user cache."""
    if name != "clinc150":
        raise typer.BadParameter("only 'clinc150' can be fetched", param_hint="NAME")
    path = fetch_clinc150(settings=settings_of(ctx))
    console.print(f"CLINC150 is at {path} (sha256 checked; CC BY 3.0, see ATTRIBUTION.txt there)")
