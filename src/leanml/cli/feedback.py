"""``leanml feedback export NAME --out FILE [--since ISO-TIME|DURATION]``: the next training file.

The labelled predictions of NAME (every label the ground-truth path joined, from the monitor
store's durable feedback log; see :mod:`leanml.monitor.labelled`) are written as CSV, TSV, JSON
Lines or Parquet, by the suffix of ``--out``: ``text, label, predicted, confidence,
predicted_at, labelled_at, variant, version, id`` (times in ISO 8601, UTC), so that
``leanml train NAME --data FILE`` takes the file as it is.

A prediction's text is in the store only when it was sampled in detail (``[monitor]
sampling_rate``, ``sample_below_confidence``) and ``store_inputs`` keeps text (``text``, or
``redacted``, the default, with personal data masked). Labels whose text is not stored are
skipped (a training file needs the text) and counted in the summary; ``--keep-without-text``
writes them with an empty text (then drop them before training).

Bad input exits 2 before anything is read: an output suffix that cannot be written (or Parquet
without pyarrow), a place that cannot be written, a ``--since`` that is neither an ISO time nor
a duration, a model neither registered nor in the store. A model with no labelled predictions
(since ``--since``) exits 1 and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from leanml.cli._common import (
    ModelsDirOption,
    StoreUrlOption,
    check_store_exists,
    console,
    parse_time,
    registry_of,
    settings_of,
)
from leanml.config import MonitorConfig
from leanml.datasets import check_output, write_rows
from leanml.errors import LeanMLError, ParameterError

__all__ = ["export", "feedback_app", "register"]

_COMMAND = "leanml feedback export"

feedback_app = typer.Typer(
    help="Turn the feedback collected for a model into its next training file.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``feedback export`` to ``app``."""
    app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model whose labelled predictions to export.")],
    out: Annotated[
        Path, typer.Option("--out", help="Where they go: .csv, .tsv, .jsonl or .parquet.")
    ],
    since: Annotated[
        str | None,
        typer.Option(
            help="Only labels received since this ISO time (2026-12-01T08:00, UTC unless it "
            "names its zone) or this long ago (90m, 24h, 7d)."
        ),
    ] = None,
    keep_without_text: Annotated[
        bool,
        typer.Option(
            "--keep-without-text",
            help="Also write the labels whose text is not stored (with an empty text).",
        ),
    ] = False,
    store: StoreUrlOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Write NAME's labelled predictions (text, label, predicted class, confidence, times,
    variant, version) as a file that 'leanml train NAME --data FILE' takes."""
    from leanml.monitor import MonitorStore  # heavy: every command imports this module
    from leanml.monitor.labelled import LABELLED_COLUMNS, labelled_predictions, store_models

    check_output(out, _COMMAND, "--out")
    start = parse_time(since, time.time(), "since", _COMMAND) if since is not None else None
    settings = settings_of(ctx)
    url = store or settings.store_url
    registry = registry_of(ctx, models_dir)
    registered = registry.list_models()
    check_store_exists(url)
    st = MonitorStore(url)  # opening it migrates an older store's feedback log
    seen = {"labelled": 0, "with_text": 0}

    def rows() -> Iterator[dict[str, Any]]:  # streamed from the store into the file
        for r in labelled_predictions(st, name, start):
            seen["labelled"] += 1
            seen["with_text"] += bool(r["text"])
            if r["text"] or keep_without_text:
                yield _plain(r)

    try:
        known = store_models(st)
        if name not in known and name not in registered:
            raise ParameterError(
                f"No model named {name!r} in the registry {registry.root} "
                f"nor in the store {st.url} (models there: "
                f"{', '.join(sorted(known | set(registered))) or 'none'}).",
                param="NAME",
            )
        written = write_rows(out, LABELLED_COLUMNS, rows(), keep_empty=False)
    finally:
        st.close()
    labelled, with_text = seen["labelled"], seen["with_text"]
    without = labelled - with_text
    window = f" labelled since {_iso(start)}" if start is not None else ""
    why = _why_no_text(settings.monitor)
    if not labelled:
        raise LeanMLError(
            f"No labelled predictions of {name}{window} in {url}: nothing written. Labels "
            f"arrive with POST /v1/models/{name}/feedback {{'id': <prediction id>, 'label': ...}}."
        )
    if not written:
        raise LeanMLError(
            f"None of the {labelled} labelled predictions of {name}{window} has its text "
            f"stored: nothing written ({why}; --keep-without-text writes them without text)."
        )
    console.print(
        f"wrote {_n(written, 'labelled prediction')} of {name}{window} to {out} "
        f"({with_text} with their text)",
        soft_wrap=True,  # one line per message, whatever the width: scripts grep them
    )
    if without and keep_without_text:
        console.print(
            f"[yellow]note:[/] kept {without} of them without a stored text (empty 'text'): "
            f"drop those rows before leanml train --data {out} ({why})",
            soft_wrap=True,
        )
    elif without:
        console.print(
            f"[yellow]note:[/] skipped {without} of the {_n(labelled, 'labelled prediction')}: "
            f"their text is not stored ({why})",
            soft_wrap=True,
        )


def _why_no_text(cfg: MonitorConfig) -> str:
    """Why the store holds the text of some predictions only, under these settings."""
    if cfg.store_inputs in ("hash", "none"):
        return f"[monitor] store_inputs is {cfg.store_inputs!r}: set it to 'redacted' or 'text'"
    return (
        f"the store keeps the text of sampled predictions only: [monitor] sampling_rate is "
        f"{cfg.sampling_rate:g}; raise it to keep more"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """One row as written: ISO times, a rounded confidence."""
    conf = row["confidence"]
    return {
        **row,
        "confidence": None if conf is None else round(float(conf), 6),
        "predicted_at": _iso(row["predicted_at"]),
        "labelled_at": _iso(row["labelled_at"]),
    }
