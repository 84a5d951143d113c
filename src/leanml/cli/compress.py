"""``leanml compress [NAMES...]`` and ``leanml size MODEL``.

``compress`` loads each registered model's original (serving version), compresses it against the
validation sample stored with that version behind the accuracy guard, and registers the compact
variant with the guard's verdict in its manifest (``extra["guard"]``). When the guard rejects
every candidate, the smallest scored candidate is registered with ``passed: false`` so the
registry serves the original and says why; when none could be scored, a stale compact variant
of that version is removed. A table goes to the terminal and, with ``--json``, per model: sizes
(pickle, joblib, skops, compact), accuracy and agreement, latencies, recipe, fallback reason.

The work is done by :func:`leanml.workflows.compress_registered` (shared with
``leanml demo``); pickle and joblib are only *written* there to measure their sizes for
comparison; nothing loads a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leanml._format import human_bytes
from leanml._validation import check_number
from leanml.cli._common import ModelsDirOption, console, err_console, registry_of, settings_of
from leanml.errors import LeanMLError, ParameterError
from leanml.workflows import compress_registered

__all__ = ["compress", "register", "size"]

_PRECISIONS = ("auto", "fp32", "fp16", "int8")


def register(app: typer.Typer) -> None:
    """Add the ``compress`` and ``size`` commands to ``app``."""
    app.command()(compress)
    app.command()(size)


def _parse_prune(value: str) -> Any:
    if value in ("auto", "none"):
        return value
    if value.startswith("threshold="):
        return {"threshold": float(value.split("=", 1)[1])}
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise ParameterError(
            "The 'prune' parameter of leanml compress must be 'auto', 'none', sparsities like "
            f"'0.5,0.9' or 'threshold=T', got {value!r} instead."
        ) from None


def compress(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Registered models (default: all of them).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest accepted accuracy drop on the validation split.")
    ] = 0.005,
    min_agreement: Annotated[
        float, typer.Option(help="Smallest accepted share of predictions equal to the original.")
    ] = 0.99,
    precision: Annotated[str, typer.Option(help="auto, fp32, fp16 or int8.")] = "auto",
    prune: Annotated[
        str, typer.Option(help="auto, none, sparsities '0.5,0.9' or 'threshold=T'.")
    ] = "auto",
    max_proba_error: Annotated[
        float | None,
        typer.Option(help="Also bound the largest change of a predicted probability."),
    ] = None,
    confidence: Annotated[
        float,
        typer.Option(
            help="One-sided confidence of the guard's bounds; 0: off (point estimates only)."
        ),
    ] = 0.9,
    activate: Annotated[
        bool, typer.Option(help="Serve the compact variant when the guard passes.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Compress registered models behind the accuracy guard and register the compact variants."""
    owner = "leanml compress"
    check_number(tolerance, "tolerance", owner, low=0, high=1)
    check_number(min_agreement, "min_agreement", owner, low=0, high=1)
    if max_proba_error is not None:
        check_number(max_proba_error, "max_proba_error", owner, low=0, high=1)
    check_number(confidence, "confidence", owner, low=0, high=1, high_open=True)
    if precision not in _PRECISIONS:
        raise ParameterError(
            "The 'precision' parameter of leanml compress must be one of "
            f"{', '.join(repr(p) for p in _PRECISIONS)}, got {precision!r} instead."
        )
    options = {
        "tolerance": tolerance,
        "min_agreement": min_agreement,
        "precision": precision,
        "prune": _parse_prune(prune),
        "max_proba_error": max_proba_error,
        "confidence": confidence or None,
    }
    registry = registry_of(ctx, models_dir)
    targets = names or registry.list_models()
    if not targets:
        err_console.print(
            f"no registered models in {registry.root}; train one (leanml train NAME --data "
            "FILE) or register one (leanml register NAME MODEL.skops --validation FILE)"
        )
        raise typer.Exit(1)
    rows: list[dict[str, Any]] = []
    for name in targets:
        try:
            with console.status(f"compressing {name}"):
                rows.append(
                    compress_registered(
                        registry, name, settings=settings_of(ctx), activate=activate, **options
                    )
                )
        except LeanMLError as exc:
            rows.append({"name": name, "error": str(exc)})
    console.print(_table(rows))  # the table first, then the exit code (1 if any model failed)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"options": options, "models": rows}
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"wrote {json_path}")
    if any("error" in row for row in rows):
        raise typer.Exit(1)


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="leanml compress")
    for column in (
        "model", "pickle", "joblib", "skops", "compact", "acc orig", "acc compact", "agree",
        "single µs", "recipe / fallback",
    ):  # fmt: skip
        table.add_column(column, overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], *["-"] * 8, f"[red]error: {r['error']}[/red]")
            continue

        def fmt(value: Any, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        single = f"{fmt(r['single_us_original'], '.0f')} -> {fmt(r['single_us_compact'], '.0f')}"
        table.add_row(
            f"{r['name']} v{r['version']}",
            human_bytes(r["pickle_bytes"]),
            human_bytes(r["joblib3_bytes"]),
            human_bytes(r["skops_bytes"]),
            human_bytes(r["compact_bytes"]),
            fmt(r["accuracy_original"], ".4f"),
            fmt(r["accuracy_compact"], ".4f"),
            fmt(r["agreement"], ".4f"),
            single,
            r["recipe"] if r["guard_passed"] else f"[yellow]{r['fallback_reason']}[/yellow]",
        )
    return table


def size(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A registered model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the breakdown as JSON here.")
    ] = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Break a model's size down by component (vocabulary, idf, weights, trees), before/after."""
    from leanml.compress import CompactModel, size_breakdown

    registry = registry_of(ctx, models_dir)
    original = registry.load(model, version, variant="original")
    compact: CompactModel | None = None
    if "compact" in registry.variants(model, original.version):
        loaded = registry.load(model, original.version, variant="compact")
        if isinstance(loaded.model, CompactModel):
            compact = loaded.model
    breakdown = size_breakdown(original.model, compact)
    before = breakdown["before"]
    after = breakdown.get("after", {})
    table = Table(title=f"{model} v{original.version}: size by component")
    for column in ("component", "before (in memory)", "after (stored)", "after (raw arrays)"):
        table.add_column(column)
    for component in sorted(set(before) | set(after)):
        entry = after.get(component, {})
        table.add_row(
            component,
            human_bytes(before.get(component)),
            human_bytes(entry.get("stored")),
            human_bytes(entry.get("raw")),
        )
    table.add_row(
        "[bold]artifact[/bold]",
        human_bytes(original.manifest.payload_bytes) + " (skops file)",
        human_bytes(sum(e["stored"] for e in after.values())) if after else "no compact variant",
        "",
    )
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(breakdown, indent=2) + "\n", encoding="utf-8")
