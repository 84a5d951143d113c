"""leanml: serve, monitor and compress scikit-learn models in production.

The top level stays light to import; ``leanml.monitored`` and ``leanml.register`` are loaded on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leanml._version import __version__
from leanml.errors import LeanMLError

if TYPE_CHECKING:
    from leanml.monitor import monitored
    from leanml.workflows import register

__all__ = ["LeanMLError", "__version__", "monitored", "register"]


def __getattr__(name: str) -> Any:
    # lazily, only so that `import leanml` stays light (no numpy, SQLAlchemy...); nothing
    # below imports the root package, so this is no cycle (contract no-root-imports)
    if name == "monitored":
        from leanml.monitor import monitored

        return monitored
    if name == "register":
        from leanml.workflows import register

        return register
    raise AttributeError(f"module 'leanml' has no attribute {name!r}")
