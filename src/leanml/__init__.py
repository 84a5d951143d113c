"""leanml: serve, monitor and compress scikit-learn models in production."""

from __future__ import annotations

from leanml.errors import LeanMLError

__version__ = "0.1.0"

__all__ = ["LeanMLError", "__version__"]
