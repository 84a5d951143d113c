"""Parameter checks with one message shape, in the style of scikit-learn:

The 'x' parameter of Y must be <constraint>, got <value> instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from leanml.errors import ParameterError


def param_error(name: str, owner: str, constraint: str, value: Any) -> ParameterError:
    return ParameterError(
        f"The {name!r} parameter of {owner} must be {constraint}, got {value!r} instead.",
        param=name,
    )


def check_number(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a number within [low, high] (bounds optional, open or closed)."""
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise param_error(name, owner, _range_text(kind, low, high, low_open, high_open), value)
    if value != value:  # NaN
        raise param_error(name, owner, _range_text(kind, low, high, low_open, high_open), value)
    if low is not None and (value < low or (low_open and value == low)):
        raise param_error(name, owner, _range_text(kind, low, high, low_open, high_open), value)
    if high is not None and (value > high or (high_open and value == high)):
        raise param_error(name, owner, _range_text(kind, low, high, low_open, high_open), value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: Iterable[Any]) -> Any:
    options = list(choices)
    if value not in options:
        raise param_error(name, owner, "one of " + ", ".join(repr(c) for c in options), value)
    return value


def _range_text(
    kind: str, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> str:
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if low is None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{kind} in the range {left}{low}, {high}{right}"


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
#: What :func:`parse_duration` accepts (also the OpenAPI ``pattern`` of such fields).
DURATION_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?[smhdw]$"


def parse_duration(value: Any, name: str, owner: str) -> float:
    """Seconds in a duration such as ``30d``, ``12h``, ``90m``, ``45s`` or ``2w``."""
    if not isinstance(value, str) or not re.fullmatch(DURATION_PATTERN, value.strip()):
        raise param_error(
            name, owner, "a duration such as 30d, 12h, 90m, 45s or 2w (digits and one unit)", value
        )
    text = value.strip()
    return float(text[:-1]) * _DURATION_UNITS[text[-1]]
