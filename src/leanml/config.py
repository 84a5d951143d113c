"""One settings object for leanml: defaults < a TOML file < ``LEANML_*`` environment variables.

>>> settings = Settings.load()                     # defaults, then LEANML_CONFIG's file, then env
>>> settings = Settings.load("leanml.toml", env={})  # a file only

The file holds the same keys as the dataclass fields, at top level or under ``[leanml]``.
Every key maps to the environment variable ``LEANML_<KEY upper-cased>``; for example
``LEANML_DATA_DIR=../shared/datasets``. A bad value raises :class:`~leanml.errors.ConfigError`
naming the key, where it came from and the value.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leanml.errors import ConfigError

__all__ = ["Settings", "load_toml", "parse_bool"]

_ENV_PREFIX = "LEANML_"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leanml"


@dataclasses.dataclass(frozen=True)
class Settings:
    """leanml's settings. Paths are resolved relative to the working directory."""

    #: Folder holding the demo datasets (``spamassassin/``, ``clinc150/``),
    #: e.g. ``../shared/datasets``.
    data_dir: Path | None = None
    #: Where downloaded datasets are cached.
    cache_dir: Path = dataclasses.field(default_factory=_default_cache_dir)
    #: The model registry's root folder.
    models_dir: Path = Path("leanml-models")
    #: Monitoring store (SQLAlchemy URL); SQLite by default.
    store_url: str = "sqlite:///leanml-monitor.db"
    #: Fraction of predictions persisted in detail.
    sampling_rate: float = 0.2
    #: Allow network downloads of datasets when no local copy exists.
    allow_download: bool = True
    #: Seconds before a dataset download gives up.
    download_timeout_s: float = 30.0

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from defaults, then ``file`` (or ``$LEANML_CONFIG``), then ``env``."""
        env = os.environ if env is None else env
        values: dict[str, tuple[Any, str]] = {}
        path = file if file is not None else env.get(_ENV_PREFIX + "CONFIG")
        if path:
            for key, value in _read_file(Path(path)).items():
                values[key] = (value, f"file {path}")
        for field in dataclasses.fields(cls):
            name = _ENV_PREFIX + field.name.upper()
            if name in env:
                values[field.name] = (env[name], f"environment variable {name}")
        kwargs = {key: _coerce(key, value, source) for key, (value, source) in values.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated like loaded values)."""
        return dataclasses.replace(
            self, **{k: _coerce(k, v, "argument") for k, v in changes.items()}
        )


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A leanml TOML file as a dict, or a :class:`ConfigError` naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"The config file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {str(path)!r} is not valid TOML: {exc}") from None


def parse_bool(value: Any) -> bool | None:
    """True/False for a bool or the usual words (1/0, true/false, yes/no, on/off), else None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    return None


def _read_file(path: Path) -> dict[str, Any]:
    data = load_toml(path)
    section = data.get("leanml", data)
    if not isinstance(section, dict):
        raise ConfigError(f"The [leanml] section of {str(path)!r} must be a table.")
    return section


def _coerce(key: str, value: Any, source: str) -> Any:
    field = _FIELDS.get(key)
    if field is None:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigError(f"Unknown setting {key!r} from {source}; known settings: {known}.")
    kind = str(field.type)

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"The setting {key!r} from {source} must be {expected}, got {value!r} instead."
        )

    if "Path" in kind:
        if value is None or value == "":
            if "None" in kind:
                return None
            raise bad("a path")
        return Path(os.path.expanduser(str(value)))
    if kind == "bool":
        flag = parse_bool(value)
        if flag is None:
            raise bad("a boolean (true/false, 1/0, yes/no, on/off)")
        return flag
    if kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if key == "sampling_rate" and not 0.0 <= number <= 1.0:
            raise bad("a number in the range [0, 1]")
        if key.endswith("_s") and number <= 0:
            raise bad("a positive number of seconds")
        return number
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    return value  # pragma: no cover - every field type is handled above
