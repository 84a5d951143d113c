"""The registry state shared through the monitor store (issue #21): hosts with their own
models directories follow one another's variant switches and promotions."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from leanml.registry import ModelRegistry
from leanml.serving._shared import SharedRegistryState


def _url(backend: str, tmp) -> str:  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'state.db'}"
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set")
    return url


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_models_dirs_share_switches_and_promotions(backend, tmp_path, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    engine = sa.create_engine(_url(backend, tmp_path))
    prefix = f"t{uuid.uuid4().hex[:8]}_"  # fresh rows even in a shared PostgreSQL database
    regs = []
    for host in ("a", "b"):
        reg = ModelRegistry(tmp_path / host)
        reg.register("m", tiny_pipeline, task="email", metrics={})
        reg.register("m", tiny_pipeline, task="email", metrics={})
        reg.shared_state = SharedRegistryState(engine, prefix)
        regs.append(reg)
    a, b = regs
    try:
        assert b.serving_version("m") == 2 and b.active_variant("m") == "original"
        a.promote("m", 1)
        a.set_active_variant("m", "compact")
        assert (b.serving_version("m"), b.active_variant("m")) == (1, "compact")
        # b's own state.json never said so: a registry without the shared state disagrees
        alone = ModelRegistry(tmp_path / "b")
        assert (alone.serving_version("m"), alone.active_variant("m")) == (2, "original")
        # a later local choice (the CLI on host b, file only) wins on b, being newer
        alone.set_active_variant("m", "original")
        assert b.active_variant("m") == "original"
        assert a.active_variant("m") == "compact"  # host a never saw b's local file
        # b (serving v2 from its newer file) rolls back to v1 through the shared state: a fresh
        # process on host a follows b's whole state
        assert b.rollback("m") == 1
        fresh = ModelRegistry(tmp_path / "a")
        fresh.shared_state = SharedRegistryState(engine, prefix)
        assert (fresh.serving_version("m"), fresh.active_variant("m")) == (1, "original")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}registry_state"))
        engine.dispose()


class _DownStore:
    def read(self, name: str) -> None:
        raise ConnectionError("store down")


def test_a_store_outage_serves_the_local_state(tmp_path, tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    reg = ModelRegistry(tmp_path / "m")
    reg.register("m", tiny_pipeline, task="email", metrics={})
    reg.set_active_variant("m", "original")
    reg.shared_state = _DownStore()
    assert (reg.serving_version("m"), reg.active_variant("m")) == (1, "original")
