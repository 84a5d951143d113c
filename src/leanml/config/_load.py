"""The one loader: read a TOML file and the environment into sections, with one coercion.

Every value is kept with its :class:`Source` (default, file and line, environment variable, or
argument), so errors and ``leanml config show`` can say where a value came from. A section is a
frozen dataclass with a ``SECTION`` name and an ``ENV_PREFIX``; its own ``__post_init__``
validates ranges and choices, and a :class:`~leanml.errors.ParameterError` it raises is turned
into a :class:`~leanml.errors.ConfigError` naming the key, the source and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leanml.errors import ConfigError, ParameterError

__all__ = ["Source", "build_section", "env_values", "load_toml", "parse_bool", "read_file"]

Values = dict[str, tuple[Any, "Source"]]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a setting's value came from."""

    kind: str  # "default" | "file" | "environment" | "argument" | "profile"
    where: str = ""

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file {self.where}"
        if self.kind == "environment":
            return f"environment variable {self.where}"
        if self.kind == "profile":
            return f"profile {self.where}"
        return self.kind


DEFAULT = Source("default")
ARGUMENT = Source("argument")


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict, or a :class:`ConfigError` naming the file."""
    return _parse(Path(path), _read_text(Path(path)))


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


def fields_of(section: type) -> dict[str, dataclasses.Field[Any]]:
    """The settable fields of a section (sub-sections and bookkeeping excluded)."""
    return {f.name: f for f in dataclasses.fields(section) if "doc" in f.metadata}


def read_file(path: Path, sections: Mapping[str, type]) -> dict[str, Values]:
    """The file's values per section name; keys at top level belong to ``leanml``."""
    text = _read_text(path)
    data = _parse(path, text)
    lines = _key_lines(text)
    out: dict[str, Values] = {name: {} for name in sections}

    def put(section: str, key: str, value: Any) -> None:
        line = lines.get((section, key)) or lines.get(("" if section == "leanml" else section, key))
        where = f"{path} line {line}" if line else str(path)
        if key in out[section]:
            raise ConfigError(
                f"The setting {key!r} is given twice in {path} (at top level and in [leanml])."
            )
        out[section][key] = (value, Source("file", where))

    for key, value in data.items():
        if isinstance(value, dict) and key in sections:
            for sub_key, sub_value in value.items():
                put(key, sub_key, sub_value)
        elif isinstance(value, dict) and key not in fields_of(sections["leanml"]):
            hint = _nearest(key, list(sections))
            raise ConfigError(
                f"Unknown section [{key}] in {path}; known sections: "
                f"{', '.join(f'[{s}]' for s in sections)}{hint}."
            )
        else:
            put("leanml", key, value)
    return out


def env_values(section: type, env: Mapping[str, str]) -> Values:
    """The section's values found in ``env`` (``ENV_PREFIX + KEY``, then the field's alias)."""
    out: Values = {}
    for name, field in fields_of(section).items():
        for var in (section.ENV_PREFIX + name.upper(), field.metadata.get("env_alias")):  # type: ignore[attr-defined]
            if var and var in env:
                out[name] = (env[var], Source("environment", var))
                break
    return out


def build_section(
    section: type, values: Values, all_sections: Mapping[str, type]
) -> tuple[Any, dict[str, Source]]:
    """An instance of ``section`` from ``values`` (coerced), and the source of every field."""
    known = fields_of(section)
    hints = typing.get_type_hints(section)
    kwargs: dict[str, Any] = {}
    for key, (value, source) in values.items():
        if key not in known:
            raise _unknown_key(section, key, source, all_sections)
        kwargs[key] = coerce(hints[key], value, section.SECTION, key, source)  # type: ignore[attr-defined]
    try:
        instance = section(**kwargs)
    except ParameterError as exc:
        if exc.param is None or exc.param not in values:
            raise ConfigError(f"[{section.SECTION}]: {exc}") from None  # type: ignore[attr-defined]
        value, source = values[exc.param]
        raise ConfigError(
            f"The setting {_label(section, exc.param)} from {source} is invalid ({value!r}): {exc}"
        ) from None
    sources = {name: values[name][1] if name in values else DEFAULT for name in known}
    return instance, sources


def coerce(kind: Any, value: Any, section: str, key: str, source: Source) -> Any:
    """``value`` (from TOML or a string from the environment) as the field's declared type."""
    try:
        return _coerce(kind, value)
    except (TypeError, ValueError) as exc:
        label = key if section == "leanml" else f"[{section}] {key}"
        detail = f" ({exc})" if str(exc) and str(exc) != repr(value) else ""
        raise ConfigError(
            f"The setting {label!r} from {source} must be {_describe(kind)}, "
            f"got {value!r} instead{detail}."
        ) from None


def _coerce(kind: Any, value: Any) -> Any:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none"}):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value)
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, Sequence):
            raise TypeError(value)
        item_kind = args[0]
        if item_kind is str:
            return tuple(str(i).strip() for i in items if str(i).strip())
        return tuple(_item(item_kind, i) for i in items)
    if kind is bool:
        flag = parse_bool(value)
        if flag is None:
            raise ValueError(value)
        return flag
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is Path:
        if not isinstance(value, str | Path) or str(value) == "":
            raise ValueError(value)
        return Path(os.path.expanduser(str(value)))
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    raise TypeError(f"no coercion to {kind!r}")  # pragma: no cover - every field type is handled


def _item(kind: type, value: Any) -> Any:
    """A tuple item: a table (dict) becomes ``kind(**table)`` (e.g. an alert rule)."""
    if isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ValueError(value)
    try:
        return kind(**value)
    except (TypeError, ParameterError) as exc:
        raise ValueError(str(exc)) from None


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _describe(inner[0]) + ' (or "none")'
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if item is str:
            return "a list of strings (comma-separated in the environment)"
        return f"a list of {item.__name__} tables"
    return {
        bool: "a boolean (true/false, 1/0, yes/no, on/off)",
        int: "an integer",
        float: "a number",
        Path: "a path",
        str: "a string",
    }.get(kind, str(kind))


def _label(section: type, key: str) -> str:
    name = section.SECTION  # type: ignore[attr-defined]
    return repr(key) if name == "leanml" else repr(f"[{name}] {key}")


def _unknown_key(
    section: type, key: str, source: Source, all_sections: Mapping[str, type]
) -> ConfigError:
    here = section.SECTION  # type: ignore[attr-defined]
    elsewhere = [name for name, cls in all_sections.items() if key in fields_of(cls)]
    if elsewhere:
        hint = f"; did you mean [{elsewhere[0]}] {key}?"
    else:
        hint = _nearest(key, list(fields_of(section)))
    if not hint:  # a typo of a key that lives in another section
        others = {k: name for name, cls in all_sections.items() for k in fields_of(cls)}
        close = difflib.get_close_matches(key, list(others), n=1, cutoff=0.6)
        hint = f"; did you mean [{others[close[0]]}] {close[0]}?" if close else ""
    where = "" if here == "leanml" else f" in [{here}]"
    return ConfigError(f"Unknown setting {key!r}{where} from {source}{hint}")


def _nearest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"The config file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The config file {str(path)!r} cannot be read: {exc}") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {str(path)!r} is not valid TOML: {exc}") from None


_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\"']+)\s*=")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(table, key) -> the line (1-based) that sets it; dotted keys are split into their table."""
    out: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _TABLE.match(line):
            table = m.group(1).replace('"', "").replace("'", "").strip()
            continue
        if m := _KEY.match(line):
            parts = [p.strip("\"' ") for p in m.group(1).split(".")]
            owner = ".".join([table, *parts[:-1]]).strip(".") if len(parts) > 1 else table
            out.setdefault((owner, parts[-1]), number)
    return out
