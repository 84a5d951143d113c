"""Each public module's ``__all__`` is exactly its public names.

The modules: ``leanml`` and every module and package under it found by
:func:`pkgutil.walk_packages`, except private ones (any dotted part starting with ``_``).

A module's *public names*, read from its source (top-level statements, including those inside
top-level ``if``/``try`` blocks such as ``if TYPE_CHECKING:``):

* every name it defines (``def``, ``class``, assignment) not starting with ``_``;
* in a package's ``__init__``, every name it imports from its own modules (a package presents
  their API: ``from leanml.dashboard.web import dashboard_app``; for ``leanml`` itself, any
  leanml module); names it imports from elsewhere in leanml are uses;
* in a plain module, a name imported from another leanml module is a use, not part of its API,
  unless ``__all__`` lists it (an explicit re-export, e.g. a name kept where it used to live).

Never public: imported modules, names imported from outside leanml (``Any``, ``np``,
``annotations``), names starting with ``_``. Dunder names listed in ``__all__``
(``__version__``) are metadata: only their existence is checked.

So ``set(__all__)`` must equal the public names, and every name in ``__all__`` must exist.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import leanml


def _public_modules() -> list[str]:
    found = ["leanml"]
    for info in pkgutil.walk_packages(leanml.__path__, "leanml."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return sorted(found)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _top_level(block)
            for handler in node.handlers:
                yield from _top_level(handler.body)
        else:
            yield node


def _names(module: ModuleType) -> tuple[set[str], dict[str, str]]:
    """(names the module defines, {name it imports from leanml: source module}); no modules."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    defined: set[str] = set()
    imported: dict[str, str] = {}
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leanml"):
            for alias in node.names:
                name = alias.asname or alias.name
                if not isinstance(getattr(module, name, None), ModuleType):
                    imported[name] = node.module or ""
    return defined - {"__all__"}, imported


def _public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", _public_modules())
def test_all_equals_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "__all__ lists a name twice"
    missing_attrs = sorted(n for n in exported if not hasattr(module, n))
    assert not missing_attrs, f"in __all__ but not defined: {missing_attrs}"

    defined, imported = _names(module)
    own = name if name == "leanml" else name + "."
    presented = {n for n, source in imported.items() if source.startswith(own)}
    is_package = hasattr(module, "__path__")
    public = _public(defined) | (_public(presented) if is_package else set())
    reexported = exported & set(imported)  # explicit re-exports
    listed = _public(exported)
    assert sorted(listed - public - reexported) == [], "in __all__ but not a public name"
    assert sorted(public - listed) == [], "public but not in __all__"


def test_the_walk_finds_packages_and_modules_and_skips_private_ones() -> None:
    names = _public_modules()
    assert {"leanml", "leanml.monitor", "leanml.demo", "leanml.bench.http"} <= set(names)
    assert "leanml.dashboard.web" in names and "leanml.demo.monitoring" in names
    assert not [n for n in names if "._" in n]


def test_names_read_definitions_and_leanml_imports_only(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING, Any\n"
        "import numpy as np\n"
        "from leanml import errors\n"
        "from leanml.errors import LeanMLError as Root\n"
        "if TYPE_CHECKING:\n"
        "    from leanml.config import Settings\n"
        "LIMIT: int = 3\n"
        "a, (b, _c) = 1, (2, 3)\n"
        "def f() -> Any: ...\n"
        "class K: ...\n"
        "_hidden = 1\n"
    )
    path = tmp_path / "planted.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("planted", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defined, imported = _names(module)
    assert _public(defined) == {"LIMIT", "a", "b", "f", "K"}
    assert imported == {"Root": "leanml.errors", "Settings": "leanml.config"}


def test_every_error_derives_from_the_root() -> None:
    errors = importlib.import_module("leanml.errors")
    for attr in errors.__all__:
        assert issubclass(getattr(errors, attr), errors.LeanMLError)


def test_monitored_is_reachable_from_the_top_level() -> None:
    from leanml.monitor import monitored

    assert leanml.monitored is monitored
    assert "monitored" in leanml.__all__
