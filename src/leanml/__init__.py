"""leanml: serve, monitor and compress scikit-learn models in production.

The top level stays light to import; ``leanml.monitored`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leanml._version import __version__
from leanml.errors import LeanMLError

if TYPE_CHECKING:
    from leanml.monitor import monitored

__all__ = ["LeanMLError", "__version__", "monitored"]


def __getattr__(name: str) -> Any:
    if name == "monitored":
        # lazily, only so that `import leanml` stays light (no numpy, SQLAlchemy...); nothing
        # below imports the root package, so this is no cycle (contract no-root-imports)
        from leanml.monitor import monitored

        return monitored
    raise AttributeError(f"module 'leanml' has no attribute {name!r}")
