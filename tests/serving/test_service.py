"""The serving layer (serving/service.py): the server's own monitor defaults; variant switches."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from leanml.config.settings import Settings
from leanml.monitor import ModelMonitor
from leanml.serving.service import Service, serving_profile


def test_the_server_flushes_every_second_and_pauses_unless_the_user_says_otherwise() -> None:
    served = serving_profile(Settings.load(env={})).monitor
    assert (served.flush_interval_s, served.flush_hold_s, served.alert_interval_s) == (
        1.0,
        0.0005,
        5.0,
    )
    # the flusher thread steps, not the event loop that records
    assert not served.flush_on_record and Settings.load(env={}).monitor.flush_on_record
    m = ModelMonitor("email", config=served, start=False, sinks=[])
    assert m.state.pace.every_s == 0.0005  # the monitors the server builds pause
    m.close()
    off = serving_profile(Settings.load(env={"LEANML_MONITOR_FLUSH_HOLD_S": "none"})).monitor
    assert off.flush_hold_s is None and off.flush_interval_s == 1.0
    assert Settings.load(env={}).monitor.flush_hold_s is None  # outside the server: no pauses


def test_a_slow_load_of_an_older_choice_never_installs_over_a_newer_switch(
    models_dir: Path, tmp_path: Path
) -> None:
    """The registry watcher starts loading the variant another worker chose; an admin switch
    to the other variant arrives while that load is slow. The switch must win: the watcher's
    older choice is installed first, the admin's after it (they once raced, and the stale
    load was installed last, so predictions went to the variant the admin had switched
    away from)."""
    models = shutil.copytree(models_dir, tmp_path / "models")
    settings = Settings.load(
        env={},
        overrides={
            "models_dir": str(models),
            "store_url": f"sqlite:///{tmp_path / 'monitor.db'}",
            "serving.models": ["intent"],
            "serving.registry_watch_s": 3600.0,  # rounds run by hand below
            "serving.warmup": 1,
        },
    )
    service = Service(settings)
    installed: list[str] = []

    async def scenario() -> str:
        await service.start()
        try:
            h = service.handles["intent"]
            assert h.state is not None and h.state.variant == "original"
            load, install = h.load, h.install

            def slow_compact_load(variant: str | None = None, version: int | None = None):  # type: ignore[no-untyped-def]
                if variant == "compact":
                    time.sleep(0.5)  # the slow read of the watcher's choice
                return load(variant, version)

            def recording_install(loaded):  # type: ignore[no-untyped-def]
                installed.append(loaded.variant)
                return install(loaded)

            h.load, h.install = slow_compact_load, recording_install  # type: ignore[method-assign]
            # another worker chose the compact variant: the watcher follows it
            await asyncio.to_thread(service.registry.set_active_variant, "intent", "compact")
            watcher = asyncio.create_task(service.follow_registry("intent", h))
            await asyncio.sleep(0.1)  # the watcher is inside its slow load now
            await service.switch_variant("intent", "original")
            await watcher
            assert h.state is not None
            return h.state.variant
        finally:
            await service.stop()

    served = asyncio.run(scenario())
    assert installed == ["compact", "original"]
    assert served == "original"
    assert service.registry.chosen_variant("intent") == "original"
