"""``leanml config show``: the effective settings and where each value came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from leanml.cli._common import console, settings_of
from leanml.config import markdown_table

__all__ = ["config_app", "register", "show"]

config_app = typer.Typer(help="The effective settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's table of every setting.")
    ] = False,
) -> None:
    """Every setting's effective value and its source (default, file and line, or variable);
    secrets are masked."""
    if markdown:
        typer.echo(markdown_table())
        return
    settings = settings_of(ctx)
    if as_json:
        typer.echo(json.dumps(settings.to_json(), indent=2, default=str))
        return
    table = Table(title="leanml settings")
    for column in ("section", "key", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in settings.rows():
        value = "unset" if row.value is None else str(row.value)
        table.add_row(row.section, row.key, value, row.source)
    console.print(table)
