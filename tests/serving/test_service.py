"""The serving layer's settings (serving/service.py): the server's own monitor defaults."""

from __future__ import annotations

from leanml.config.settings import Settings
from leanml.monitor import ModelMonitor
from leanml.serving.service import serving_profile


def test_the_server_flushes_every_half_second_and_pauses_unless_the_user_says_otherwise() -> None:
    served = serving_profile(Settings.load(env={})).monitor
    assert (served.flush_interval_s, served.flush_hold_s, served.alert_interval_s) == (
        0.5,
        0.0005,
        5.0,
    )
    m = ModelMonitor("email", config=served, start=False, sinks=[])
    assert m.state.pace.every_s == 0.0005  # the monitors the server builds pause
    m.close()
    off = serving_profile(Settings.load(env={"LEANML_MONITOR_FLUSH_HOLD_S": "none"})).monitor
    assert off.flush_hold_s is None and off.flush_interval_s == 0.5
    assert Settings.load(env={}).monitor.flush_hold_s is None  # outside the server: no pauses
