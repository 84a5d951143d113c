"""How a setting is declared: a dataclass field with a one-line doc, and optional flags.

>>> max_inputs: int = setting(256, "Most texts in one predict request (413 beyond).")

``secret=True`` masks the value wherever settings are shown; ``env_alias`` names an extra
environment variable that is read when the section's own one is absent (for the few names users
already know, such as ``LEANML_ADMIN_TOKEN``); ``from_file=False`` for a value that only code
can set (a callable, say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["setting"]


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
    env_alias: str | None = None,
) -> Any:
    """A dataclass field carrying the setting's doc and flags in its metadata."""
    metadata = {"doc": doc, "secret": secret, "env_alias": env_alias}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
