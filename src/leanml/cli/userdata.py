"""``leanml register NAME MODEL.skops`` and ``leanml predict NAME --input FILE --output FILE``.

``register`` imports a fitted scikit-learn estimator or pipeline saved with skops: its types
must be on leanml's allow-list, in the operator's ``trusted_types`` setting or named with
``--trust`` on this command line (never taken from the file). Pickle and joblib files are
refused with the one-line conversion to run where the file is trusted. The validation file
gives the metrics, the drift reference and the validation sample kept with the version.

``predict`` scores a file (CSV/TSV, JSONL, Parquet) in batches with a progress bar, records
every prediction in the monitor store (as the server would, with prediction ids) and writes
text, predicted label, confidence and id as CSV, JSON Lines or Parquet (by the output's suffix).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from leanml._predict import predict_with_confidence
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
from leanml.datasets import check_output, read_labelled, read_texts, write_rows
from leanml.groundtruth import IdIssuer
from leanml.monitor import ModelMonitor
from leanml.registry import check_name
from leanml.workflows import read_model_file, register_model

__all__ = ["import_model", "predict", "register"]


def register(app: typer.Typer) -> None:
    """Add ``register`` and ``predict`` to ``app``."""
    app.command("register")(import_model)
    app.command("predict")(predict)


def import_model(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registry name.")],
    model: Annotated[Path, typer.Argument(help="A fitted estimator or pipeline saved with skops.")],
    validation: Annotated[
        Path, typer.Option(help="Labelled validation texts (CSV/TSV, JSONL, Parquet, folder).")
    ],
    test: Annotated[Path | None, typer.Option(help="Labelled test texts.")] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option(help="Also accept this type (repeatable), for this command only."),
    ] = None,
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    encoding: EncodingOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Import a fitted scikit-learn model (.skops) as a new, serving version of NAME."""
    check_name(name, "leanml register")
    registry = registry_of(ctx, models_dir, trust or ())
    X_val, y_val = read_labelled(validation, text_column, label_column, encoding)
    X_test, y_test = (
        read_labelled(test, text_column, label_column, encoding) if test else (None, None)
    )
    fitted = read_model_file(model, sorted(registry.trusted_types))
    manifest = register_model(
        registry,
        name,
        fitted,
        X_val,
        y_val,
        X_test=X_test,
        y_test=y_test,
        source=str(model),
        sample_rows=settings_of(ctx).validation_sample_rows,
    )
    val = manifest.metrics["val"]
    test_text = (
        f", test accuracy {manifest.metrics['test']['accuracy']:.4f}"
        if "test" in manifest.metrics
        else ""
    )
    console.print(
        f"registered {manifest.name} v{manifest.version} ({type(fitted).__name__} from "
        f"{model.name}): val accuracy {val['accuracy']:.4f}{test_text}, validation sample "
        f"{manifest.extra['validation_sample']['rows']} rows"
    )
    if registry.trusted_types - set(settings_of(ctx).trusted_types):
        console.print(
            "[yellow]note:[/] --trust applies to this command only; add the types to the "
            "trusted_types setting so that serve, compress and report can load this model."
        )


def predict(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered model.")],
    input_path: Annotated[
        Path, typer.Option("--input", help="Texts to score: CSV/TSV, JSONL or Parquet.")
    ],
    output: Annotated[
        Path, typer.Option(help="Where the predictions go: .csv, .tsv, .jsonl or .parquet.")
    ],
    text_column: TextColumnOption = "text",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per batch.")] = 256,
    version: Annotated[int | None, typer.Option(help="Version (default: serving).")] = None,
    variant: Annotated[
        str | None, typer.Option(help="original or compact (default: the active one).")
    ] = None,
    monitoring: Annotated[bool, typer.Option(help="Record predictions in the store.")] = True,
    store: StoreUrlOption = None,
    encoding: EncodingOption = None,
    models_dir: ModelsDirOption = None,
) -> None:
    """Score a file in batches, record the predictions in the monitor, write them out."""
    check_output(output, "leanml predict", "--output")
    texts, _ = read_texts(input_path, text_column, None, encoding=encoding)
    loaded = registry_of(ctx, models_dir).load(name, version, variant)
    monitor = None
    if monitoring:
        monitor = ModelMonitor(
            name,
            version=str(loaded.version),
            variant=loaded.variant,
            store=store or settings_of(ctx).store_url,
            reference=loaded.manifest.extra.get("reference"),
        )
    try:
        rows = _score(loaded.model, texts, batch_size, monitor)
    finally:
        if monitor is not None:
            monitor.close()
    write_rows(output, ["text", "label", "confidence", "id"], rows)
    console.print(
        f"wrote {len(rows)} predictions of {name} v{loaded.version} ({loaded.variant}) to "
        f"{output}" + (" and recorded them in the monitor store" if monitor else "")
    )


def _score(
    model: Any, texts: list[str], batch_size: int, monitor: ModelMonitor | None
) -> list[dict[str, Any]]:
    ids = IdIssuer()  # row ids in the output (the same form as served prediction ids)
    rows: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("predicting", total=len(texts))
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            started = time.perf_counter()
            labels, confidences, _ = predict_with_confidence(model, batch)
            elapsed = time.perf_counter() - started
            batch_ids = ids.take(start, len(batch))
            if monitor is not None:
                monitor.record_batch(
                    batch_ids,
                    labels,
                    confidences,
                    elapsed / len(batch),
                    batch,
                    model_seconds=elapsed,
                )
            rows.extend(
                {"id": i, "text": t, "label": _plain(y), "confidence": round(float(c), 6)}
                for i, t, y, c in zip(batch_ids, batch, labels, confidences, strict=True)
            )
            progress.advance(task, len(batch))
    return rows


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
