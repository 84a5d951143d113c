"""ServingConfig: every knob of ``leanml serve``, validated in one place.

Sources, later wins: defaults < the ``[serving]`` table of a TOML file < ``LEANML_SERVE_<KEY>``
environment variables < explicit arguments. The admin token is read from ``LEANML_ADMIN_TOKEN``
only (never from a file that might be committed). The same file may hold a ``[leanml]`` table
(:class:`~leanml.config.Settings`) and a ``[monitor]`` table (fields of
:class:`~leanml.monitor.MonitorConfig`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from leanml._validation import check_choice, check_number, param_error
from leanml.config import load_toml, parse_bool
from leanml.errors import ConfigError

__all__ = ["ServingConfig", "read_config_file"]

_ENV = "LEANML_SERVE_"


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Settings of the HTTP service (defaults for production)."""

    #: Largest request body in bytes (413 beyond).
    max_body_bytes: int = 1_048_576
    #: Most texts in one predict request (413 beyond).
    max_inputs: int = 256
    #: Longest text in characters (413 beyond).
    max_text_chars: int = 100_000
    #: Most items in one feedback request (413 beyond).
    max_feedback_items: int = 1_000
    #: Prediction cache per model; 0 entries disables it.
    cache_max_entries: int = 10_000
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_ttl_s: float = 3600.0
    cache_normalize: str = "none"
    #: Micro-batching; a max_batch_size of 1 disables it.
    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    #: Monitor every prediction (ModelMonitor per model variant).
    monitoring: bool = True
    #: "auto": the registry's active variant when one was chosen, else compact (the registry
    #: falls back to the original when compact is missing or failed its guard).
    variant: str = "auto"
    #: Only these models (comma-separated in env/CLI); empty = every registered model.
    models: tuple[str, ...] = ()
    #: Cross-process feedback: how long a worker waits for the prediction's owner to join it.
    feedback_timeout_s: float = 2.0
    poll_interval_s: float = 0.2
    heartbeat_s: float = 1.0
    #: How often a worker checks the registry for a variant / version change by another worker.
    registry_watch_s: float = 2.0
    #: Number of warm-up predictions per model before readiness.
    warmup: int = 8
    #: Minimum seconds between the monitor flushes that /stats triggers.
    stats_flush_s: float = 0.5

    def __post_init__(self) -> None:
        owner = "ServingConfig"
        for name in ("max_body_bytes", "max_inputs", "max_text_chars", "max_feedback_items"):
            check_number(getattr(self, name), name, owner, low=1, integer=True)
        for name in ("cache_max_entries", "cache_max_bytes", "warmup"):
            check_number(getattr(self, name), name, owner, low=0, integer=True)
        check_number(self.max_batch_size, "max_batch_size", owner, low=1, integer=True)
        check_number(self.max_wait_ms, "max_wait_ms", owner, low=0)
        for name in (
            "cache_ttl_s",
            "feedback_timeout_s",
            "poll_interval_s",
            "heartbeat_s",
            "registry_watch_s",
        ):
            check_number(getattr(self, name), name, owner, low=0, low_open=True)
        check_number(self.stats_flush_s, "stats_flush_s", owner, low=0)
        check_choice(self.cache_normalize, "cache_normalize", owner, ("none", "strip", "nfc"))
        check_choice(self.variant, "variant", owner, ("auto", "original", "compact"))
        if not isinstance(self.monitoring, bool):
            raise param_error("monitoring", owner, "a bool", self.monitoring)
        object.__setattr__(self, "models", tuple(self.models))

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ServingConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if file is not None:
            for k, v in read_config_file(file).get("serving", {}).items():
                values[k] = _coerce(k, v, f"file {file}")
        for f in dataclasses.fields(cls):
            key = _ENV + f.name.upper()
            if key in env:
                values[f.name] = _coerce(f.name, env[key], f"environment variable {key}")
        for k, v in overrides.items():
            if v is not None:
                values[k] = _coerce(k, v, "argument")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(ServingConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    field = _FIELDS.get(key)
    if field is None:
        raise ConfigError(
            f"Unknown serving setting {key!r} from {source}; known: {', '.join(sorted(_FIELDS))}."
        )
    kind = str(field.type)
    try:
        if kind == "bool":
            flag = parse_bool(value)
            if flag is None:
                raise ValueError(value)
            return flag
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"The serving setting {key!r} from {source} must be of type {kind}, "
            f"got {value!r} instead."
        ) from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tables of a leanml TOML file: ``leanml`` (settings), ``serving``, ``monitor``."""
    data = load_toml(path)
    out: dict[str, Any] = {}
    for table in ("leanml", "serving", "monitor"):
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"The [{table}] section of {str(path)!r} must be a table.")
        out[table] = section
    return out
