"""The one Prometheus text exposition writer (format 0.0.4), without a registry (ground floor).

:class:`Exposition` collects families and samples and gives the text: ``# HELP`` and ``# TYPE``
once per family name (families must be written grouped, as the format requires), label values
escaped (``\\``, newline, ``"``), numbers formatted by :func:`format_value` (``None`` is ``NaN``,
integers as integers, floats by ``repr``, infinities as ``+Inf``/``-Inf``). The monitor's
families (:mod:`leanml.monitor.prometheus`) and the service's (:mod:`leanml.serving.metrics`)
both write through it, so both escape and format alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

__all__ = ["CONTENT_TYPE", "Exposition", "escape_label", "format_value"]

#: the media type of the text exposition format 0.0.4
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: object) -> str:
    """A label value as the format writes it between double quotes."""
    s = value if type(value) is str else str(value)
    if "\\" in s or "\n" in s or '"' in s:
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return s


def format_value(value: float | None) -> str:
    """A sample value: ``NaN`` for None and NaN, integers (numpy's too) as integers, floats by
    repr, infinities as ``+Inf`` / ``-Inf``."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value - value == 0 else _special(value)  # type: ignore[operator,arg-type]
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    v = float(value)
    return repr(v) if v - v == 0 else _special(v)


def _special(v: float) -> str:
    """inf, -inf, nan as the format writes them."""
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "NaN"


class Exposition:
    """Lines of one exposition; :meth:`text` joins them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def family(self, name: str, kind: str, help_: str) -> None:
        """``# HELP`` and ``# TYPE`` of ``name`` (written once, at its first call)."""
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, object], value: float | None) -> None:
        self.lines.append(f"{name}{{{self.labels(labels)}}} {format_value(value)}")

    @staticmethod
    def labels(labels: Mapping[str, object]) -> str:
        """The label pairs of ``labels`` as a sample writes them between braces."""
        return ",".join([f'{k}="{escape_label(v)}"' for k, v in labels.items()])

    def sample_raw(self, name: str, labels: str, value: float | None) -> None:
        """A sample whose label pairs are already written (by :meth:`labels`)."""
        self.lines.append(f"{name}{{{labels}}} {format_value(value)}")

    def histogram(
        self,
        name: str,
        labels: Mapping[str, object],
        bounds: Iterable[float],
        cumulative: Iterable[int],
        count: int,
        total: float,
    ) -> None:
        """``_bucket`` samples (one per bound, then ``+Inf`` = ``count``), ``_count``, ``_sum``.

        ``cumulative[i]`` counts the observations ``<= bounds[i]``."""
        base = self.labels(labels)
        sep = "," if base else ""
        bucket = f"{name}_bucket{{{base}{sep}le="
        add = self.lines.append
        for le, n in zip(bounds, cumulative, strict=True):
            add(f'{bucket}"{float(le)!r}"}} {format_value(n)}')
        add(f'{bucket}"+Inf"}} {format_value(count)}')
        add(f"{name}_count{{{base}}} {format_value(count)}")
        add(f"{name}_sum{{{base}}} {format_value(total)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
