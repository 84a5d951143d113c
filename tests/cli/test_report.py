"""``leanml report``'s argument parsing (the report itself: tests/dashboard/test_report.py)."""

from __future__ import annotations

import pytest

from leanml.cli.report import parse_duration, parse_size
from leanml.errors import ParameterError


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172_800), ("30", 30)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "-1h", "0", "h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ParameterError, match="'since' parameter of leanml report"):
        parse_duration(text)


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1GiB") == 2**30
    assert parse_size("500 mb") == 500_000_000 and parse_size("1024") == 1024
    with pytest.raises(ParameterError, match="store_budget"):
        parse_size("lots")


def test_until_before_since_is_a_parameter_error(tmp_path, capsys):
    from leanml.cli import main

    store = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["report", "--since", "1h", "--until", "2h", "--store", store]) == 2
    assert "'until' parameter of leanml report must be after --since" in capsys.readouterr().err


def test_missing_sqlite_store_is_reported_not_created(tmp_path, capsys):
    from leanml.cli import main

    db = tmp_path / "typo.db"
    assert main(["report", "--store", f"sqlite:///{db}", "--out", str(tmp_path / "r")]) == 1
    assert "no monitor store at" in capsys.readouterr().err and not db.exists()
