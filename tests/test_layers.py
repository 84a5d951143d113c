"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they catch a bad import.

Each check runs ``lint-imports`` in a subprocess on a copy of ``src/leanml`` (so an added import
never touches the real tree), with the copy first on ``PYTHONPATH`` and no cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pyproject.toml"
_LINT = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def _contracts() -> dict[str, str]:
    """Contract id -> name, as declared."""
    declared = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    return {c["id"]: c["name"] for c in declared}


def _lint(src: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", _LINT, str(CONFIG), "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        args, cwd=src, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture()
def copy_of_src(tmp_path: Path) -> Path:
    """A copy of src/ whose package may be edited."""
    target = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", target, ignore=skip)
    return target


def _add_import(src: Path, module: str, statement: str) -> None:
    path = src / Path(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        path = src / Path(*module.split(".")) / "__init__.py"
    text = path.read_text()
    # after the module docstring and `from __future__`, before everything else
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + statement + "  # noqa: F401\n" + rest)


@pytest.mark.parametrize(
    ("module", "statement", "contract", "expected"),
    [
        pytest.param(
            "leanml.compress._base", "import leanml.serving", "compress-is-a-library",
            "leanml.compress._base -> leanml.serving", id="compress-imports-serving",
        ),
        pytest.param(
            "leanml.config", "import leanml.registry", "layers",
            "leanml.config is not allowed to import leanml.registry", id="upward-layer-import",
        ),
        pytest.param(
            "leanml.artifacts", "import leanml.compress.compact", "store-without-compress",
            "leanml.artifacts -> leanml.compress.compact", id="store-imports-compress",
        ),
        pytest.param(
            "leanml.compress.report", "from leanml import __version__", "no-root-imports",
            "leanml.compress.report -> leanml", id="root-package-import",
        ),
        pytest.param(
            "leanml.errors", "import leanml.config", "no-cycles",
            (".errors -> .config", ".config -> .errors"), id="cycle",
        ),
    ],
)  # fmt: skip
def test_an_added_forbidden_import_breaks_its_contract(
    copy_of_src, module, statement, contract, expected
):
    named = (expected,) if isinstance(expected, str) else expected  # what the report names
    before = _lint(copy_of_src, contract)
    # (the layers and no-cycles contracts may be broken elsewhere until issue #12 is merged)
    assert before.returncode in (0, 1), before.stdout + before.stderr
    assert not any(n in before.stdout for n in named), before.stdout
    _add_import(copy_of_src, module, statement)
    broken = _lint(copy_of_src, contract)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"{_contracts()[contract]} BROKEN" in " ".join(broken.stdout.split())
    assert any(n in broken.stdout for n in named), broken.stdout


def test_the_tree_keeps_every_contract():
    done = _lint(REPO / "src")
    assert done.returncode == 0, done.stdout + done.stderr
