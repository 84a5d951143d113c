"""The bodies a load sends: formats, uniqueness and the duplicate fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanml.bench.http._workload import HOT, BenchConfig, Bodies, body_json, load_texts
from leanml.errors import ParameterError

TEXTS = ["buy cheap pills now", "meeting notes attached"]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [("leanml", {"inputs": ["x"]}), ("bentoml", {"texts": ["x"]}), ("plain", {"text": "x"})],
)
def test_body_formats(fmt: str, body: dict) -> None:
    assert json.loads(body_json(BenchConfig(url="http://h", body_format=fmt), "x")) == body


def test_bad_config_uses_the_parameter_message() -> None:
    with pytest.raises(ParameterError, match="The 'mode' parameter of BenchConfig must be"):
        BenchConfig(url="http://h", mode="sideways")


def test_unique_bodies_never_repeat() -> None:
    bodies = Bodies(BenchConfig(url="http://h"), TEXTS)
    sent = [bodies.next() for _ in range(500)]
    assert len(set(sent)) == 500


def test_duplicate_fraction_draws_from_the_hot_pool() -> None:
    bodies = Bodies(BenchConfig(url="http://h", duplicates=0.5), TEXTS)
    sent = [bodies.next() for _ in range(4000)]
    hot = [b for b in sent if b in set(bodies.hot)]
    assert len(bodies.hot) == HOT
    assert 0.45 < len(hot) / len(sent) < 0.55


def test_load_texts_from_a_file_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(f"text {i}") + "\n" for i in range(10)) + "\n")
    cfg = BenchConfig(url="http://h", texts_file=str(path), max_texts=4)
    assert load_texts(cfg) == ["text 0", "text 1", "text 2", "text 3"]
