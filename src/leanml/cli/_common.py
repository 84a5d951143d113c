"""What the CLI modules share: consoles, the settings, common options."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from leanml.config import Settings
from leanml.registry import ModelRegistry

__all__ = [
    "EncodingOption",
    "LabelColumnOption",
    "ModelsDirOption",
    "StoreUrlOption",
    "TextColumnOption",
    "console",
    "err_console",
    "load_settings",
    "registry_of",
    "settings_of",
]

# Tables stay readable when the output is a pipe or a CI log (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 132)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 132)

ModelsDirOption = Annotated[
    Path | None,
    typer.Option("--models-dir", help="Registry folder (default: settings models_dir)."),
]

# The options of the commands that read the user's data files (train, register, predict).
TextColumnOption = Annotated[str, typer.Option(help="Column of the texts.")]
LabelColumnOption = Annotated[str, typer.Option(help="Column of the labels.")]
EncodingOption = Annotated[
    str | None, typer.Option(help="Text encoding of the files (default: UTF-8).")
]
StoreUrlOption = Annotated[
    str | None, typer.Option("--store", help="Monitor store URL (default: settings store_url).")
]


def load_settings(config: Path | None) -> Settings:
    return Settings.load(config)


def settings_of(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else Settings.load()


def registry_of(
    ctx: typer.Context, models_dir: Path | None, trust: Sequence[str] = ()
) -> ModelRegistry:
    """The registry of ``--models-dir`` (else the setting), trusting the operator's
    ``trusted_types`` setting plus ``trust`` (``--trust`` of this command)."""
    settings = settings_of(ctx)
    return ModelRegistry(
        models_dir or settings.models_dir, trusted_types=(*settings.trusted_types, *trust)
    )
