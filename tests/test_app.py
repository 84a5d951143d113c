"""leanml.app: the one module that mounts the dashboard into the serving app."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import leanml.app
from leanml.config import ServingConfig, Settings
from leanml.dashboard.data import batch_figures
from leanml.serving import MicroBatcher, create_app
from leanml.serving import server as serving_server
from leanml.serving.batching import WAIT_BUCKETS


def _get(app: Any, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get(path)

    return asyncio.run(go())


def test_full_app_serves_the_dashboard_and_the_api(tmp_path: Path) -> None:
    settings = Settings.load().replace(models_dir=str(tmp_path / "models"))
    serve_app = create_app(settings, ServingConfig(), admin_token="t0ken")
    app = leanml.app.full_app(serve_app, refresh_s=2.0)
    assert app.service is serve_app.service
    page = _get(app, "/dashboard/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert _get(app, "/v1/models").json() == {"models": []}  # the rest goes to the service
    assert _get(serve_app, "/dashboard/").status_code == 404  # serving alone has no dashboard


def test_app_from_env_builds_from_the_spec(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spec = {"models_dir": str(tmp_path / "m"), "store_url": f"sqlite:///{tmp_path / 's.db'}"}
    monkeypatch.setenv(serving_server.SPEC_ENV, json.dumps(spec))
    app = leanml.app.app_from_env()
    assert str(app.service.settings.models_dir) == spec["models_dir"]
    assert app.service.settings.store_url == spec["store_url"]
    assert _get(app, "/dashboard/").status_code == 200


@pytest.mark.parametrize(
    ("runner", "factory"),
    [
        (leanml.app.run, "leanml.app:app_from_env"),
        (serving_server.run, "leanml.serving.server:app_from_env"),
    ],
)
def test_workers_import_the_factory_by_name(runner, factory, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setenv(serving_server.SPEC_ENV, "{}")  # run() sets it: restored after the test
    runner(models_dir=str(tmp_path), workers=3)
    ((args, kw),) = calls
    assert args == (factory,) and kw["factory"] is True and kw["workers"] == 3
    module, _, name = factory.partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def _imports(package: str) -> set[tuple[str, str]]:
    """(module file, imported module) for every import in ``package``, in functions too."""
    root = Path(importlib.import_module(package).__file__ or "").parent
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(path.name, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((path.name, node.module))
    return found


@pytest.mark.parametrize(
    ("package", "other"),
    [("leanml.serving", "leanml.dashboard"), ("leanml.dashboard", "leanml.serving")],
)
def test_serving_and_dashboard_do_not_import_each_other(package: str, other: str) -> None:
    crossing = {(f, m) for f, m in _imports(package) if m == other or m.startswith(other + ".")}
    assert not crossing, f"{package} imports {other} (lazily or not): {sorted(crossing)}"
    assert any(m.startswith("leanml.") for _, m in _imports(package))  # the scan sees imports


def test_the_dashboard_reads_wait_bounds_from_the_batcher_stats() -> None:
    async def main() -> dict[str, Any]:
        b = MicroBatcher(lambda texts: list(texts), max_batch_size=4, max_wait_ms=0)
        await asyncio.gather(*(b.submit([f"t{i}"]) for i in range(10)))
        return b.stats()

    stats = asyncio.run(main())
    assert stats["wait_buckets"] == list(WAIT_BUCKETS)
    assert len(stats["wait_counts"]) == len(WAIT_BUCKETS) + 1
    p99 = batch_figures(stats)["queue_wait_p99_s"]
    assert p99 in WAIT_BUCKETS  # a bucket's upper bound, read from the figures themselves
    # the bounds travel with the data: other bounds give another answer
    moved = {**stats, "wait_buckets": [b * 10 for b in WAIT_BUCKETS]}
    assert batch_figures(moved)["queue_wait_p99_s"] == pytest.approx(p99 * 10)
    # figures without bounds (a server older than the key) give no p99, not a guess
    legacy = {k: v for k, v in stats.items() if k != "wait_buckets"}
    assert batch_figures(legacy)["queue_wait_p99_s"] is None
