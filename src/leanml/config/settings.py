"""The one settings object: a core section and the ``[serving]`` and ``[monitor]`` sections.

One precedence for every key: defaults < a TOML file (``--config FILE`` or ``$LEANML_CONFIG``)
< environment variables < explicit arguments (command-line flags)::

    settings = Settings.load()                      # defaults, $LEANML_CONFIG's file, env
    settings = Settings.load("leanml.toml", env={})  # a file only
    settings.models_dir, settings.serving.max_inputs, settings.monitor.sampling_rate
    settings.sources["monitor.sampling_rate"]        # Source("file", "leanml.toml line 4")

Core keys sit at the file's top level or under ``[leanml]`` and map to ``LEANML_<KEY>``;
``[serving]`` keys to ``LEANML_SERVING_<KEY>`` and ``[monitor]`` keys to
``LEANML_MONITOR_<KEY>`` (the admin token also to ``LEANML_ADMIN_TOKEN``). A bad value or an
unknown key raises :class:`~leanml.errors.ConfigError` naming the key, where it came from (file
and line, or variable) and the value; an unknown key names the nearest known one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from leanml._validation import check_number
from leanml.config._load import (
    ARGUMENT,
    Source,
    Values,
    build_section,
    env_values,
    fields_of,
    read_file,
)
from leanml.config._spec import setting
from leanml.config.monitor import MonitorConfig
from leanml.config.serving import ServingConfig
from leanml.errors import ConfigError

__all__ = ["SECTIONS", "SettingRow", "Settings", "markdown_table"]

_CONFIG_ENV = "LEANML_CONFIG"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leanml"


@dataclasses.dataclass(frozen=True)
class SettingRow:
    """One setting as shown by ``leanml config show``."""

    section: str
    key: str
    value: Any
    source: str
    env: str
    default: Any
    doc: str
    secret: bool


@dataclasses.dataclass(frozen=True)
class Settings:
    """leanml's settings. Paths are resolved relative to the working directory."""

    SECTION: ClassVar[str] = "leanml"
    ENV_PREFIX: ClassVar[str] = "LEANML_"

    data_dir: Path | None = setting(
        None, "Folder with the demo datasets (spamassassin/, clinc150/)."
    )
    cache_dir: Path = setting(
        doc="Where downloaded datasets are cached.", factory=_default_cache_dir
    )
    models_dir: Path = setting(Path("leanml-models"), "The model registry's root folder.")
    store_url: str = setting(
        "sqlite:///leanml-monitor.db", "Monitoring store (SQLite or PostgreSQL URL)."
    )
    allow_download: bool = setting(True, "Allow downloading a dataset with no local copy.")
    download_timeout_s: float = setting(30.0, "Seconds before a dataset download gives up.")
    trusted_types: tuple[str, ...] = setting(
        (),
        "Types a registered skops model may hold beyond leanml's allow-list (the operator's "
        "list, comma-separated in the environment; never read from an artifact).",
    )
    validation_sample_rows: int = setting(
        5000,
        "Rows of the validation split kept (compressed) with each registered version, for "
        "compression and the guard.",
    )
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    #: Where each value came from, by ``key`` (core) or ``section.key``.
    sources: Mapping[str, Source] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        check_number(
            self.download_timeout_s, "download_timeout_s", "Settings", low=0, low_open=True
        )
        check_number(
            self.validation_sample_rows, "validation_sample_rows", "Settings", low=1, integer=True
        )
        if not self.store_url:
            raise ConfigError("The setting 'store_url' must be a non-empty URL.")

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Defaults < ``file`` (or ``$LEANML_CONFIG``) < ``env`` < ``overrides``.

        ``overrides`` maps ``key`` (core) or ``section.key`` to a value; ``None`` values are
        ignored (an unset command-line flag)."""
        env = os.environ if env is None else env
        _refuse_renamed(env)
        values: dict[str, Values] = {name: {} for name in SECTIONS}
        path = file if file is not None else env.get(_CONFIG_ENV)
        if path:
            for name, found in read_file(Path(path), SECTIONS).items():
                values[name].update(found)
        for name, section in SECTIONS.items():
            values[name].update(env_values(section, env))
        for dotted, value in (overrides or {}).items():
            if value is not None:
                name, key = _split(dotted)
                values[name][key] = (value, ARGUMENT)
        return _assemble(values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with some values given as arguments (``key`` or ``section.key``)."""
        values: dict[str, Values] = {name: {} for name in SECTIONS}
        for row in self.rows():
            if row.source != "default":
                values[row.section][row.key] = (
                    _section_of(self, row.section).__getattribute__(row.key),
                    self.sources[_dotted(row.section, row.key)],
                )
        for dotted, value in overrides.items():
            if value is not None:
                name, key = _split(dotted)
                values[name][key] = (value, ARGUMENT)
        return _assemble(values)

    def with_profile(self, name: str, values: Mapping[str, Any]) -> Settings:
        """A copy where ``values`` (``key`` or ``section.key``) replace the settings still at
        their default: a context's own defaults (``leanml serve``'s monitor flushes more often),
        below anything the user set. Their source reads ``profile NAME``."""
        kept: dict[str, Any] = {}
        for dotted, value in values.items():
            if str(self.sources.get(dotted, "default")) == "default":
                kept[dotted] = value
        if not kept:
            return self
        changed = self.with_overrides(kept)
        sources = dict(changed.sources)
        sources.update({dotted: Source("profile", name) for dotted in kept})
        return dataclasses.replace(changed, sources=sources)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some core settings changed (validated like loaded values)."""
        return self.with_overrides(changes)

    def rows(self) -> Iterator[SettingRow]:
        """Every setting with its effective value (secrets masked), source and doc."""
        for name, section in SECTIONS.items():
            instance = _section_of(self, name)
            for key, field in fields_of(section).items():
                secret = bool(field.metadata.get("secret"))
                value = getattr(instance, key)
                default = _default(field)
                source = self.sources.get(_dotted(name, key))
                env = section.ENV_PREFIX + key.upper()  # type: ignore[attr-defined]
                if field.metadata.get("env_alias"):
                    env += f" (or {field.metadata['env_alias']})"
                yield SettingRow(
                    section=name,
                    key=key,
                    value=_mask(value) if secret else _plain(value),
                    source=str(source) if source else "default",
                    env=env,
                    default=_plain(default),
                    doc=field.metadata.get("doc", ""),
                    secret=secret,
                )

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{section: {key: {"value", "source"}}}``, secrets masked."""
        out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SECTIONS}
        for row in self.rows():
            out[row.section][row.key] = {"value": row.value, "source": row.source}
        return out


#: The sections of a settings file, by table name.
SECTIONS: dict[str, type] = {"leanml": Settings, "serving": ServingConfig, "monitor": MonitorConfig}


def markdown_table() -> str:
    """The README's Configuration table, generated from the settings object."""
    lines = [
        "| key | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for row in Settings().rows():
        key = row.key if row.section == "leanml" else f"{row.section}.{row.key}"
        env = " ".join(
            f"`{part}`" if part.startswith("LEANML") else part for part in _env_parts(row.env)
        )
        default = "unset" if row.default is None else f"`{_show_default(row)}`"
        lines.append(f"| `{key}` | {env} | {default} | {row.doc} |")
    return "\n".join(lines)


def _env_parts(env: str) -> list[str]:
    if " (or " not in env:
        return [env]
    own, alias = env.split(" (or ", 1)
    return [own, "or", alias.rstrip(")")]


def _show_default(row: SettingRow) -> str:
    if row.key == "cache_dir":
        return "~/.cache/leanml"
    if isinstance(row.default, list):
        return ",".join(map(str, row.default)) if row.default else "(empty)"
    if isinstance(row.default, bool):
        return str(row.default).lower()
    return str(row.default)


def _assemble(values: dict[str, Values]) -> Settings:
    serving, serving_src = build_section(ServingConfig, values["serving"], SECTIONS)
    monitor, monitor_src = build_section(MonitorConfig, values["monitor"], SECTIONS)
    core, core_src = build_section(Settings, values["leanml"], SECTIONS)
    sources: dict[str, Source] = dict(core_src)
    sources.update({f"serving.{k}": v for k, v in serving_src.items()})
    sources.update({f"monitor.{k}": v for k, v in monitor_src.items()})
    return dataclasses.replace(core, serving=serving, monitor=monitor, sources=sources)


#: Variables of earlier releases, refused with their new name rather than silently ignored.
_RENAMED_PREFIX = ("LEANML_SERVE_", "LEANML_SERVING_")
_RENAMED = {"LEANML_SAMPLING_RATE": "LEANML_MONITOR_SAMPLING_RATE"}
_INTERNAL = {"LEANML_SERVE_SPEC"}  # how `leanml serve` hands its arguments to its workers


def _refuse_renamed(env: Mapping[str, str]) -> None:
    for var in env:
        new = _RENAMED.get(var)
        old_prefix, new_prefix = _RENAMED_PREFIX
        if new is None and var.startswith(old_prefix) and var not in _INTERNAL:
            new = new_prefix + var.removeprefix(old_prefix)
        if new is not None:
            raise ConfigError(
                f"The environment variable {var} is no longer read; set {new} instead."
            )


def _split(dotted: str) -> tuple[str, str]:
    name, _, key = dotted.rpartition(".")
    name = name or "leanml"
    if name not in SECTIONS:
        raise ConfigError(
            f"Unknown settings section {name!r} in {dotted!r}; known: {', '.join(SECTIONS)}."
        )
    return name, key


def _dotted(section: str, key: str) -> str:
    return key if section == "leanml" else f"{section}.{key}"


def _section_of(settings: Settings, name: str) -> Any:
    return settings if name == "leanml" else getattr(settings, name)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None  # pragma: no cover - every setting has a default


def _mask(value: Any) -> Any:
    return None if value is None else "****"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [getattr(v, "name", v) for v in value]
    return value
