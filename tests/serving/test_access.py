"""The structured access log: JSON lines, sampled, off by default, never the text."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from leanml.config import ServingConfig, Settings
from leanml.monitor import MonitorConfig
from leanml.serving import create_app
from leanml.serving._access import AccessLog

from .conftest import make_registry

SECRET = "please wire 500 EUR to my friend Bob"


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "leanml.access"]


def test_access_lines_carry_ids_status_latency_and_never_the_text(
    tmp_path: Path, intent_models: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.load().replace(
        models_dir=str(make_registry(tmp_path / "reg", intent_models)),
        store_url=f"sqlite:///{tmp_path / 'monitor.db'}",
    )
    app = create_app(settings, ServingConfig(access_log=True), MonitorConfig())
    logger = logging.getLogger("leanml.access")
    logger.addHandler(caplog.handler)  # the app's own stderr handler is not added then

    async def main() -> list[str]:
        await app.service.start()
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        try:
            r = await c.post("/v1/models/intent/predict", json={"inputs": [SECRET, "hi"]})
            ids = [p["id"] for p in r.json()["predictions"]]
            await c.post("/v1/models/intent/feedback", json={"id": ids[0], "label": "reply"})
            await c.get("/v1/models/nope%2Fsecret/stats")  # matches no route
            await c.get("/health")
            await c.get("/v1/models/nosuch/stats")
            return ids
        finally:
            await c.aclose()
            await app.service.stop()

    with caplog.at_level(logging.INFO, logger="leanml.access"):
        ids = asyncio.run(main())
    logger.removeHandler(caplog.handler)
    lines = _lines(caplog)
    assert [(x["route"], x["status"]) for x in lines] == [
        ("/v1/models/{name}/predict", 200),
        ("/v1/models/{name}/feedback", 200),
        ("<unmatched>", 404),
        ("/health", 200),
        ("/v1/models/{name}/stats", 404),
    ]
    assert lines[0]["ids"] == ids and lines[1]["ids"] == [ids[0]]
    assert lines[0]["model"] == "intent" and lines[2]["model"] is None
    assert lines[4]["model"] is None  # not a served model: not logged
    assert all(x["latency_ms"] >= 0 for x in lines)
    assert SECRET not in caplog.text and "reply" not in caplog.text and "secret" not in caplog.text


def test_off_by_default_and_sampled() -> None:
    assert not AccessLog(ServingConfig(), {}).wants(200)
    draws = iter([0.05, 0.5])
    log = AccessLog(
        ServingConfig(access_log=True, access_log_sample=0.1), {}, rand=lambda: next(draws)
    )
    assert log.wants(200) and not log.wants(200)
    assert log.wants(503)  # every 5xx
