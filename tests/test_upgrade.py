"""A registry and a monitoring store written by leanml 0.1.0 are upgraded in place, then served
and reported from with this code (fixtures: tests/fixtures/v0_1_0, written by its
make_fixtures.py with the 0.1.0 sources)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from leanml.artifacts import FORMAT_VERSION, MANIFEST_UPGRADES, Manifest, read_manifest
from leanml.config import ServingConfig, Settings
from leanml.errors import UnsupportedFormatError
from leanml.monitor import MonitorConfig, MonitorStore
from leanml.monitor._migrate import SCHEMA_VERSION
from leanml.registry import ModelRegistry
from leanml.serving import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A private copy of the 0.1.0 registry and store (the test upgrades them in place)."""
    shutil.copytree(FIXTURES / "registry", tmp_path / "registry")
    shutil.copy(FIXTURES / "monitor.db", tmp_path / "monitor.db")
    return tmp_path


def _tables(engine: sa.engine.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_the_fixtures_are_a_0_1_0_store(old: Path) -> None:
    assert json.loads((FIXTURES / "fixtures.json").read_text())["leanml"] == "0.1.0"
    engine = sa.create_engine(f"sqlite:///{old / 'monitor.db'}")
    assert {"leanml_serving_feedback", "leanml_gt_inbox"} <= _tables(engine)
    assert "leanml_schema_version" not in _tables(engine)
    engine.dispose()


def test_store_upgrades_in_place_and_keeps_its_counts(old: Path) -> None:
    url = f"sqlite:///{old / 'monitor.db'}"
    store = MonitorStore(url)
    assert store.migrated_from == 1
    names = _tables(store.engine)
    assert {"leanml_feedback", "leanml_idspaces", "leanml_schema_version"} <= names
    assert not {"leanml_serving_feedback", "leanml_serving_idspaces", "leanml_gt_inbox"} & names
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT label, predicted, confidence, pred_ts, variant FROM leanml_feedback")
        ).all()
    # every joined label got its prediction back from the 0.1.0 label rows
    assert len(rows) == 20 and all(r[1] is not None and r[3] is not None for r in rows)
    assert {r[4] for r in rows} == {"compact"}
    merged = store.merged("intent")
    assert (merged["joined"], merged["correct"], merged["count"]) == (20, 10, 30)
    assert merged["ground_truth_source"] == "log"
    # the 0.1.0 detail rows moved into blocks, in order, every column kept (schema 2 -> 3)
    assert "leanml_predictions" not in names and "leanml_detail_blocks" in names
    engine = sa.create_engine(f"sqlite:///{FIXTURES / 'monitor.db'}")
    with engine.connect() as conn:
        before = [
            dict(r._mapping)
            for r in conn.execute(sa.text("SELECT * FROM leanml_predictions ORDER BY id"))
        ]
    engine.dispose()
    after = store.read_table("predictions")
    assert len(after) == len(before) == 6
    assert [{k: r[k] for k in after[0]} for r in before] == after
    store.close()
    again = MonitorStore(url)  # opening an upgraded store is a no-op
    assert again.migrated_from == SCHEMA_VERSION
    assert again.merged("intent")["joined"] == 20
    again.close()


@pytest.mark.postgres
def test_store_upgrades_in_place_on_postgresql(old: Path) -> None:
    url = os.environ.get("LEANML_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LEANML_TEST_POSTGRES_URL is not set (PostgreSQL tests need a server)")
    prefix = f"u{uuid.uuid4().hex[:8]}_"
    src = sa.create_engine(f"sqlite:///{old / 'monitor.db'}")
    dst = sa.create_engine(url)
    md = sa.MetaData()
    md.reflect(src)
    copy = sa.MetaData()
    try:
        for t in md.sorted_tables:  # the 0.1.0 tables and rows, under a fresh prefix
            name = prefix + t.name.removeprefix("leanml_")
            cols = [
                sa.Column(c.name, c.type.as_generic(), primary_key=c.primary_key) for c in t.columns
            ]
            new = sa.Table(name, copy, *cols)
            copy.create_all(dst, tables=[new])
            with src.connect() as a, dst.begin() as b:
                rows = [dict(r._mapping) for r in a.execute(sa.select(t))]
                if rows:
                    b.execute(new.insert(), rows)
        store = MonitorStore(url, table_prefix=prefix)
        assert store.migrated_from == 1
        merged = store.merged("intent")
        assert (merged["joined"], merged["correct"], merged["count"]) == (20, 10, 30)
        store.drop_all()
        store.close()
    finally:
        with dst.begin() as conn:
            for name in _tables(dst):
                if name.startswith(prefix):
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
        src.dispose()
        dst.dispose()


def test_registry_of_0_1_0_loads_every_variant(old: Path) -> None:
    reg = ModelRegistry(old / "registry")
    for variant in ("original", "compact"):
        loaded = reg.load("intent", variant=variant)
        assert loaded.manifest.format_version == FORMAT_VERSION
        assert list(loaded.model.predict(["refund my invoice please"])) == ["billing"]


def test_manifest_reader_upgrades_every_earlier_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = FIXTURES / "registry" / "intent" / "1" / "original"
    data = json.loads((src / "manifest.json").read_text())
    # a leanml whose format is 3 still reads 1 through each step, in order
    monkeypatch.setattr("leanml.artifacts.FORMAT_VERSION", 3)
    monkeypatch.setitem(MANIFEST_UPGRADES, 1, lambda d: {**d, "extra": {**d["extra"], "s1": 1}})
    monkeypatch.setitem(MANIFEST_UPGRADES, 2, lambda d: {**d, "metrics": {"steps": d["extra"]}})
    m = Manifest.from_dict(dict(data), src)
    assert m.format_version == 3 and m.metrics == {"steps": {"s1": 1}}
    assert read_manifest(src).format_version == 3
    for bad in (4, None, "1", True):
        with pytest.raises(UnsupportedFormatError, match="format_version"):
            Manifest.from_dict({**data, "format_version": bad}, src)
    monkeypatch.delitem(MANIFEST_UPGRADES, 2)
    with pytest.raises(UnsupportedFormatError, match="cannot upgrade"):
        Manifest.from_dict(dict(data), src)


def test_serve_and_report_from_the_0_1_0_files(old: Path) -> None:
    store = f"sqlite:///{old / 'monitor.db'}"
    settings = Settings.load().replace(models_dir=str(old / "registry"), store_url=store)
    app = create_app(settings, ServingConfig(warmup=1), MonitorConfig(flush_interval_s=0.05))

    async def run() -> dict[str, Any]:
        await app.service.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as c:
                r = await c.post("/v1/models/intent/predict", json={"inputs": ["cheap prize"]})
                pred = r.json()["predictions"][0]
                fb = await c.post(
                    "/v1/models/intent/feedback", json={"id": pred["id"], "label": pred["label"]}
                )
                assert fb.status_code == 200 and fb.json()["status"] == "joined", fb.text
                return (await c.get("/v1/models/intent/stats")).json()
        finally:
            await app.service.stop()

    stats = asyncio.run(run())
    assert stats["variant"] == "compact"
    assert (stats["merged"]["joined"], stats["merged"]["correct"]) == (21, 11)
    assert stats["local"]["ground_truth"]["restored"] == 20  # rebuilt from the upgraded log
    out = old / "report"
    res = subprocess.run(
        [sys.executable, "-m", "leanml.cli", "report", "--store", store, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg", "LEANML_MODELS_DIR": str(old / "registry")},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    html = (out / "report.html").read_text()
    assert "intent" in html
