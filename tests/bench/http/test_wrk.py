"""The Lua script handed to wrk: every body survives Lua's long-string quoting."""

from __future__ import annotations

import json
import re

from leanml.bench.http._workload import HOT, BenchConfig
from leanml.bench.http._wrk import _lua_str, wrk_script


def _unquote(lua: str) -> str:
    m = re.fullmatch(r"\[(=*)\[(.*)\]\1\]", lua, re.S)
    assert m is not None
    return m.group(2)


def test_lua_long_strings_pick_a_level_the_text_does_not_close() -> None:
    for text in ["plain", "has ]] inside", "has ]=] and ]] inside"]:
        assert _unquote(_lua_str(text)) == text


def test_script_splits_each_body_around_the_unique_suffix() -> None:
    cfg = BenchConfig(url="http://h", duplicates=0.25)
    script = wrk_script(cfg, ['say "hi"', "second ]] text"])
    bodies = re.findall(r"bodies\[#bodies\+1\] = \{(\[=*\[.*?\]=*\]), (\[=*\[.*?\]=*\])\}", script)
    assert len(bodies) == 2
    head, tail = (_unquote(x) for x in bodies[1])
    assert json.loads(head + " u1" + tail) == {"inputs": ["second ]] text u1"]}
    assert script.count("hot[#hot+1]") == HOT
    assert "local dup = 0.25" in script
