"""The public surface of leanml.dashboard and the report command's argument parsing."""

from __future__ import annotations

import pytest

import leanml.dashboard as dashboard
from leanml.cli.report import parse_duration, parse_size
from leanml.errors import ParameterError


def test_public_names_match_all():
    public = {n for n in vars(dashboard) if not n.startswith("_")}
    modules = {"charts", "data", "insights", "report", "service", "suggest", "web", "annotations"}
    assert public - modules == set(dashboard.__all__)
    for name in dashboard.__all__:
        assert getattr(dashboard, name) is not None


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
