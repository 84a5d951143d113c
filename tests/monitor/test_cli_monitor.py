from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from leanml.cli.monitor import register
from leanml.monitor import ModelMonitor, MonitorConfig


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_stats_retention_series(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = MonitorConfig(sampling_rate=1.0)
    with ModelMonitor("email", store=url, config=cfg, sinks=[]) as m:
        for i in range(100):
            m.record(f"i{i}", "ham", 0.9, 0.001)
    runner = CliRunner()
    r = runner.invoke(_app(), ["monitor", "stats", "--store", url, "--model", "email"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["count"] == 100 and out["latency"]["p99"] == 0.001
    r = runner.invoke(_app(), ["monitor", "retention", "--store", url, "--max-rows", "5"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["deleted"]["leanml_predictions"] == 95
    r = runner.invoke(_app(), ["monitor", "series", "--store", url, "predictions"])
    assert r.exit_code == 0
    assert len(r.output.strip().splitlines()) == 5
