from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from leanml.cli import main
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


def test_erase_by_id_and_by_age(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = MonitorConfig(sampling_rate=1.0, store_inputs="text")
    with ModelMonitor("email", store=url, config=cfg, sinks=[]) as m:
        for i in range(10):
            m.record(f"i{i}", "ham", 0.9, 0.001, f"call me at +44 20 7946 09{i:02d}")
    runner = CliRunner()
    ids = tmp_path / "ids.txt"
    ids.write_text("i2\n\ni3\n")
    r = runner.invoke(
        _app(), ["monitor", "erase", "--store", url, "--id", "i0", "--id", "i1", "--ids-file", ids]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["erased"] == 4
    r = runner.invoke(_app(), ["monitor", "erase", "--store", url, "--older-than", "30d"])
    assert r.exit_code == 0 and json.loads(r.output)["erased"] == 0  # all made just now
    r = runner.invoke(_app(), ["monitor", "erase", "--store", url, "--older-than", "0s"])
    assert r.exit_code == 0 and json.loads(r.output)["erased"] == 6
    r = runner.invoke(_app(), ["monitor", "stats", "--store", url, "--model", "email"])
    assert json.loads(r.output)["count"] == 10  # counts stay
    r = runner.invoke(_app(), ["monitor", "series", "--store", url, "predictions"])
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert len(rows) == 10 and not any(x["input_text"] or x["input_hash"] for x in rows)


def test_erase_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["monitor", "erase", "--store", url]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert main(["monitor", "erase", "--store", url, "--older-than", "soon"]) == 2
    assert "duration such as 30d" in capsys.readouterr().err
    assert main(["monitor", "erase", "--store", url, "--id", "x"]) == 1  # no store there
    assert "cannot erase" in capsys.readouterr().err
