"""What the CLI modules share: consoles, the settings, common options."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from leanml.config import Settings
from leanml.errors import MonitorError, ParameterError
from leanml.registry import ModelRegistry

__all__ = [
    "EncodingOption",
    "LabelColumnOption",
    "ModelsDirOption",
    "StoreUrlOption",
    "TextColumnOption",
    "check_store_exists",
    "console",
    "err_console",
    "load_settings",
    "parse_duration",
    "parse_time",
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, name: str = "since", command: str = "leanml report") -> float:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` (or a bare number of seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ParameterError(
            f"The {name!r} parameter of {command} must be a duration such as 30m, 1h or 2d, "
            f"got {text!r} instead.",
            param=f"--{name}",
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_time(text: str, now: float, name: str, command: str) -> float:
    """A duration ago (``1h``) or an ISO time (``2026-11-28T10:00``, UTC unless it says)."""
    try:
        return now - parse_duration(text, name, command)
    except ParameterError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ParameterError(
            f"The {name!r} parameter of {command} must be a duration (30m, 24h, 7d) or an ISO "
            f"time (2026-11-28T10:00, UTC unless it names its zone), got {text!r} instead.",
            param=f"--{name}",
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def check_store_exists(url: str) -> None:
    """Refuse a SQLite store that does not exist: opening it would create an empty file."""
    import sqlalchemy as sa  # heavy: every command imports this module at start-up

    try:
        u = sa.engine.make_url(url)
    except Exception as exc:
        raise ParameterError(f"cannot parse the store URL {url!r}: {exc}", param="--store") from exc
    db = u.database
    if u.get_backend_name() == "sqlite" and db and db != ":memory:" and not Path(db).exists():
        raise MonitorError(f"no monitor store at {db} (from {url!r})")
