"""Deep in-memory size of fitted models (numpy arrays, scipy sparse matrices, dicts, lists)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["deep_sizeof"]


def deep_sizeof(obj: Any) -> int:
    """Bytes held by ``obj`` and everything it references, each object counted once."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            total += sys.getsizeof(item)  # numpy counts the data when the array owns it
            if item.base is not None:  # a view (skops loads arrays so): count its memory once
                root = item.base
                while isinstance(root, np.ndarray) and root.base is not None:
                    root = root.base
                if isinstance(root, np.ndarray):
                    if id(root) not in seen:
                        seen.add(id(root))
                        total += root.nbytes
                else:
                    total += item.nbytes
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
            continue
        total += sys.getsizeof(item)
        if sp.issparse(item):
            stack.extend(
                getattr(item, a) for a in ("data", "indices", "indptr") if hasattr(item, a)
            )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack.append(vars(item))
        elif hasattr(item, "__slots__"):
            stack.extend(getattr(item, s) for s in item.__slots__ if hasattr(item, s))
    return total
