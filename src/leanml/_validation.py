"""Parameter checks with one message shape, in the style of scikit-learn:

The 'x' parameter of Y must be <constraint>, got <value> instead.
"""

from __future__ import annotations

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
