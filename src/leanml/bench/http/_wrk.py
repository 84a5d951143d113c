"""The ``wrk`` client (the Debian package) for closed-loop runs.

A Lua script built here holds the POST bodies (unique ones get a per-run, per-thread counter
suffix; the duplicate fraction draws from the hot pool) and prints a JSON summary that
:func:`run_wrk` reads back. The client's CPU is wrk's own (``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from typing import Any

from leanml.bench.http._sampler import ServerSampler
from leanml.bench.http._workload import HOT, BenchConfig, body_json, request_path

__all__ = ["run_wrk", "wrk_script"]

_LUA = r"""
local bodies = {}
local hot = {}
%(arrays)s
local dup = %(dup)s
local n = 0
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function setup(thread) counter = counter + 1; thread:set("tid", counter) end
local nonce = ""
function init(args)
  nonce = args[1] or ""
  math.randomseed(tonumber(tid or 1) * 7919 + #nonce)
end
request = function()
  if dup > 0 and math.random() < dup then
    return wrk.format(nil, nil, nil, hot[math.random(#hot)])
  end
  n = n + 1
  local b = bodies[(n %% #bodies) + 1]
  return wrk.format(nil, nil, nil, b[1] .. " u" .. nonce .. tid .. "x" .. n .. b[2])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50":%%d,"p95":%%d,"p99":%%d,"max":%%d,"mean":%%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _lua_str(s: str) -> str:
    eq = "="
    while f"]{eq}]" in s:
        eq += "="
    return f"[{eq}[{s}]{eq}]"


def wrk_script(cfg: BenchConfig, texts: list[str]) -> str:
    lines = []
    for t in texts:
        body = body_json(cfg, t + "\x00")
        head, _, tail = body.partition("\\u0000")
        lines.append(f"bodies[#bodies+1] = {{{_lua_str(head)}, {_lua_str(tail)}}}")
    for i in range(HOT):
        lines.append(f"hot[#hot+1] = {_lua_str(body_json(cfg, f'{texts[i % len(texts)]} d{i}'))}")
    return _LUA % {"arrays": "\n".join(lines), "dup": repr(float(cfg.duplicates))}


def run_wrk(cfg: BenchConfig, texts: list[str], sampler: ServerSampler) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(cfg, texts))
        script = f.name
    url = cfg.url.rstrip("/") + request_path(cfg)
    threads = 1 if cfg.concurrency < 64 else 2
    base = [wrk, f"-t{threads}", f"-c{cfg.concurrency}", "--timeout", "10s", "-s", script]
    try:
        if cfg.warmup_s > 0:
            subprocess.run(
                [*base, f"-d{max(1, round(cfg.warmup_s))}s", url, "--", "w" + uuid.uuid4().hex[:8]],
                capture_output=True,
                check=False,
                timeout=cfg.warmup_s + 30,
            )
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler.start()
        proc = subprocess.run(
            [*base, f"-d{max(1, round(cfg.duration_s))}s", url, "--", "m" + uuid.uuid4().hex[:8]],
            capture_output=True,
            text=True,
            check=False,
            timeout=cfg.duration_s + 60,
        )
        server = sampler.stop()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script)
    line = next((x for x in proc.stdout.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    s = json.loads(line)
    secs = s["duration_us"] / 1e6
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    errors = s["connect"] + s["read"] + s["write"] + s["timeout"]
    return {
        "client": "wrk",
        "requests": s["requests"],
        "seconds": round(secs, 3),
        "rps": round(s["requests"] / secs, 1) if secs else 0.0,
        "errors": {"non_2xx": s["status"], "socket": errors},
        "latency_ms": {k: round(s[k] / 1000.0, 3) for k in ("p50", "p95", "p99", "max", "mean")},
        "client_cpu_cores": round(client_cpu / secs, 3) if secs else None,
        **server,
    }
