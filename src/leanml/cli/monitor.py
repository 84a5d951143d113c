"""``leanml monitor stats|retention|series|erase``: read and maintain a monitoring store.

Each command imports the store when it runs: every ``leanml`` command imports this module at
start-up, and the store brings SQLAlchemy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from leanml._validation import parse_duration

__all__ = [
    "PrefixOption",
    "StoreOption",
    "erase",
    "monitor_app",
    "register",
    "retention",
    "series",
    "stats",
]

monitor_app = typer.Typer(
    help="Read a monitoring store (merged across processes) and apply retention.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store", help="SQLAlchemy URL of the store (sqlite:///path or postgresql+psycopg://...)."
    ),
]
PrefixOption = Annotated[str, typer.Option("--table-prefix", help="Table name prefix.")]


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")


@monitor_app.command("stats")
def stats(
    store: StoreOption,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name (all if omitted).")
    ] = None,
    variant: Annotated[str | None, typer.Option("--variant")] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Only the last N minutes.")
    ] = None,
    table_prefix: PrefixOption = "leanml_",
) -> None:
    """Counts, accuracy and latency quantiles merged over every process (JSON)."""
    from leanml.monitor import MonitorStore  # heavy: see the module docstring

    st = MonitorStore(store, table_prefix=table_prefix, create=False)
    try:
        since = time.time() - minutes * 60 if minutes is not None else None
        merged = st.merged(model, variant, since=since)
        merged.pop("sketch", None)
        typer.echo(json.dumps(merged, indent=2, default=str))
    finally:
        st.close()


@monitor_app.command("retention")
def retention(
    store: StoreOption,
    max_age_days: Annotated[float | None, typer.Option("--max-age-days")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows")] = None,
    reclaim: Annotated[str, typer.Option("--reclaim", help="full, plain or none.")] = "full",
    table_prefix: PrefixOption = "leanml_",
) -> None:
    """Delete old rows, reclaim the space and print rows deleted and bytes freed (JSON)."""
    from leanml.monitor import MonitorStore  # heavy: see the module docstring

    st = MonitorStore(store, table_prefix=table_prefix, create=False)
    try:
        res = st.apply_retention(
            time.time(),
            max_age_s=max_age_days * 86_400 if max_age_days is not None else None,
            max_rows=max_rows,
            reclaim=reclaim,
        )
        typer.echo(json.dumps(res, indent=2))
    finally:
        st.close()


@monitor_app.command("series")
def series(
    store: StoreOption,
    table: Annotated[str, typer.Argument(help="predictions, labels, resources or alerts.")],
    limit: Annotated[int, typer.Option("--limit")] = 20,
    table_prefix: PrefixOption = "leanml_",
) -> None:
    """The first rows of one store table (JSON lines)."""
    from leanml.monitor import MonitorStore  # heavy: see the module docstring

    st = MonitorStore(store, table_prefix=table_prefix, create=False)
    try:
        for row in st.read_table(table, limit=limit):
            typer.echo(json.dumps(row, default=str))
    finally:
        st.close()


@monitor_app.command("erase")
def erase(
    store: StoreOption,
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="A prediction id whose stored text and hash to erase (repeat)."),
    ] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option("--ids-file", help="A file of prediction ids, one a line ('-': stdin)."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Erase predictions made longer ago: 30d, 12h, 90m."),
    ] = None,
    table_prefix: PrefixOption = "leanml_",
) -> None:
    """Erase stored input texts and hashes by prediction id and/or age; counts stay (JSON)."""
    wanted = list(ids or ())
    if ids_file is not None:
        text = typer.get_text_stream("stdin").read() if str(ids_file) == "-" else None
        if text is None:
            try:
                text = ids_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise typer.BadParameter(
                    f"cannot read {ids_file}: {exc}", param_hint="--ids-file"
                ) from None
        wanted += [line.strip() for line in text.splitlines() if line.strip()]
    if not wanted and older_than is None:
        raise typer.BadParameter(
            "say what to erase: --id, --ids-file or --older-than", param_hint="--id/--older-than"
        )
    age = parse_duration(older_than, "--older-than", "leanml monitor erase") if older_than else None
    from leanml.monitor import MonitorStore  # heavy: see the module docstring

    st = MonitorStore(store, table_prefix=table_prefix, create=False)
    try:
        now = time.time()
        before = now - age if age is not None else None
        n = st.erase_details(ids=wanted, before=before)
        typer.echo(json.dumps({"erased": n, "ids": len(wanted), "before": before}))
    finally:
        st.close()
