"""HTTP load generator for ``leanml serve`` (``leanml bench http``): closed and open loop.

* **closed loop**: ``concurrency`` connections, each sends its next request when the previous
  answer arrives (throughput at a fixed concurrency);
* **open loop**: requests are *scheduled* at a fixed rate (``constant``), in ``steps`` equal
  steps from ``rate`` to ``rate_to`` (``step``) or linearly between them (``ramp``); latency is
  measured from the scheduled send time, so a slow server cannot hide its queueing
  (no coordinated omission). Per-step figures are reported for ``step``.

Bodies are single-text predict requests. A ``duplicates`` fraction repeats one of 64 hot texts
(exercising the prediction cache); every other request carries a unique suffix so it can never
hit the cache.

The client must not be the bottleneck on a 2-core machine: closed-loop runs use ``wrk`` (the
Debian package; a Lua script builds the POST bodies and prints a JSON summary) when it is on
PATH, else a raw asyncio HTTP/1.1 keep-alive client (much lighter than an HTTP library).
Open-loop runs use the asyncio client. Reports throughput, p50/p95/p99/max latency, error
counts, the server's CPU (cores used) and RSS (psutil on its pid and children) and the
client's CPU, so a saturated client is visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psutil

from leanml._validation import check_choice, check_number

__all__ = ["BenchConfig", "load_texts", "print_table", "run_bench", "write_json"]

HOT = 64


@dataclasses.dataclass
class BenchConfig:
    url: str
    model: str = "email"
    mode: str = "closed"
    concurrency: int = 32
    rate: float = 500.0
    pattern: str = "constant"
    rate_to: float | None = None
    steps: int = 4
    duration_s: float = 10.0
    warmup_s: float = 1.0
    duplicates: float = 0.0
    server_pid: int | None = None
    client: str = "auto"
    texts_file: str | None = None
    texts: list[str] | None = None
    path: str | None = None  # default /v1/models/{model}/predict
    body_format: str = "leanml"  # or "bentoml" ({"texts": [...]}), "plain" ({"text": ...})
    max_texts: int = 400

    def __post_init__(self) -> None:
        o = "BenchConfig"
        check_choice(self.mode, "mode", o, ("closed", "open"))
        check_choice(self.pattern, "pattern", o, ("constant", "step", "ramp"))
        check_choice(self.client, "client", o, ("auto", "wrk", "python"))
        check_choice(self.body_format, "body_format", o, ("leanml", "bentoml", "plain"))
        check_number(self.concurrency, "concurrency", o, low=1, integer=True)
        check_number(self.rate, "rate", o, low=0, low_open=True)
        check_number(self.duration_s, "duration_s", o, low=0, low_open=True)
        check_number(self.duplicates, "duplicates", o, low=0, high=1)


def load_texts(cfg: BenchConfig) -> list[str]:
    if cfg.texts:
        return list(cfg.texts)[: cfg.max_texts]
    if cfg.texts_file:
        lines = Path(cfg.texts_file).read_text(encoding="utf-8").splitlines()
        return [json.loads(x) for x in lines if x.strip()][: cfg.max_texts]
    try:
        from leanml.datasets import load_dataset

        ds = load_dataset(cfg.model if cfg.model in ("email", "intent", "sentiment") else "email")
        return [str(x) for x in list(ds.X_test)[: cfg.max_texts]]
    except Exception:  # no dataset: synthetic texts
        rng = np.random.default_rng(0)
        words = ["meeting", "invoice", "free", "offer", "reply", "project", "cruise", "update"]
        return [" ".join(rng.choice(words, 40)) for _ in range(cfg.max_texts)]


def _body_json(cfg: BenchConfig, text: str) -> str:
    if cfg.body_format == "bentoml":
        return json.dumps({"texts": [text]})
    if cfg.body_format == "plain":
        return json.dumps({"text": text})
    return json.dumps({"inputs": [text]})


def _path(cfg: BenchConfig) -> str:
    return cfg.path or f"/v1/models/{cfg.model}/predict"


class _Bodies:
    """Unique bodies (text + counter suffix) and a hot pool for the duplicate fraction."""

    def __init__(self, cfg: BenchConfig, texts: list[str], seed: int = 0) -> None:
        self.cfg = cfg
        self.texts = texts
        self.rng = np.random.default_rng(seed)
        self.hot = [_body_json(cfg, f"{texts[i % len(texts)]} d{i}").encode() for i in range(HOT)]
        self.n = 0

    def next(self) -> bytes:
        if self.cfg.duplicates > 0 and self.rng.random() < self.cfg.duplicates:
            return self.hot[int(self.rng.integers(HOT))]
        self.n += 1
        t = self.texts[self.n % len(self.texts)]
        return _body_json(self.cfg, f"{t} u{self.n}").encode()


# ---------------------------------------------------------------------------- server sampling
def find_server_pid(url: str) -> int | None:
    port = urlsplit(url).port or 80
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class _ServerSampler:
    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss_max = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def _procs(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        try:
            p = psutil.Process(self.pid)
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def start(self) -> None:
        self.cpu0 = self.cpu()
        self.t0 = time.perf_counter()

        def loop() -> None:
            while not self._stop.wait(0.25):
                self.rss_max = max(self.rss_max, self.rss())

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        cpu = self.cpu() - self.cpu0
        self._stop.set()
        if self._t is not None:
            self._t.join()
        rss = self.rss()
        self.rss_max = max(self.rss_max, rss)
        if self.pid is None:
            return {"server_pid": None}
        return {
            "server_pid": self.pid,
            "server_cpu_s": round(cpu, 3),
            "server_cpu_cores": round(cpu / wall, 3) if wall else None,
            "server_rss_mb": round(rss / 2**20, 1),
            "server_rss_mb_max": round(self.rss_max / 2**20, 1),
        }


# ---------------------------------------------------------------------------- wrk
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


def _wrk_script(cfg: BenchConfig, texts: list[str]) -> str:
    lines = []
    for t in texts:
        body = _body_json(cfg, t + "\x00")
        head, _, tail = body.partition("\\u0000")
        lines.append(f"bodies[#bodies+1] = {{{_lua_str(head)}, {_lua_str(tail)}}}")
    for i in range(HOT):
        lines.append(f"hot[#hot+1] = {_lua_str(_body_json(cfg, f'{texts[i % len(texts)]} d{i}'))}")
    return _LUA % {"arrays": "\n".join(lines), "dup": repr(float(cfg.duplicates))}


def _run_wrk(cfg: BenchConfig, texts: list[str], sampler: _ServerSampler) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_wrk_script(cfg, texts))
        script = f.name
    url = cfg.url.rstrip("/") + _path(cfg)
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


# ---------------------------------------------------------------------------- asyncio client
class _Conn:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _rate_at(cfg: BenchConfig, t: float) -> float:
    if cfg.pattern == "constant" or cfg.rate_to is None:
        return cfg.rate
    frac = min(1.0, max(0.0, t / cfg.duration_s))
    if cfg.pattern == "ramp":
        return cfg.rate + (cfg.rate_to - cfg.rate) * frac
    k = min(cfg.steps - 1, int(frac * cfg.steps))
    return cfg.rate + (cfg.rate_to - cfg.rate) * (k / max(1, cfg.steps - 1))


async def _python_load(cfg: BenchConfig, bodies: _Bodies, seconds: float) -> dict[str, Any]:
    u = urlsplit(cfg.url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, _path(cfg)
    lat: list[float] = []
    starts: list[float] = []
    errors = {"non_2xx": 0, "socket": 0}
    t_start = time.perf_counter()
    t_end = t_start + seconds

    async def one(conn: _Conn, scheduled: float) -> None:
        try:
            status = await conn.request(bodies.next())
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors["socket"] += 1
            conn.close()
            return
        if not 200 <= status < 300:
            errors["non_2xx"] += 1
        lat.append(time.perf_counter() - scheduled)
        starts.append(scheduled - t_start)

    if cfg.mode == "closed":

        async def worker() -> None:
            conn = _Conn(host, port, path)
            while time.perf_counter() < t_end:
                await one(conn, time.perf_counter())
            conn.close()

        await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
    else:
        idle: list[_Conn] = []
        tasks: set[asyncio.Task[None]] = set()

        async def fire(scheduled: float) -> None:
            conn = idle.pop() if idle else _Conn(host, port, path)
            await one(conn, scheduled)
            if conn.writer is not None:
                idle.append(conn)

        nxt = t_start
        while nxt < t_end:
            now = time.perf_counter()
            if now < nxt:
                await asyncio.sleep(nxt - now)
            while nxt <= time.perf_counter() and nxt < t_end:
                if len(tasks) < 4096:  # bound in-flight requests; the rest count as errors
                    task = asyncio.create_task(fire(nxt))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    errors["socket"] += 1
                nxt += 1.0 / _rate_at(cfg, nxt - t_start)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for c in idle:
            c.close()
    elapsed = time.perf_counter() - t_start
    return {"lat": lat, "starts": starts, "errors": errors, "seconds": elapsed}


def _summ(lat_s: list[float] | np.ndarray) -> dict[str, float | None]:
    a = np.asarray(lat_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return dict.fromkeys(("p50", "p95", "p99", "max", "mean"))
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def _run_python(cfg: BenchConfig, texts: list[str], sampler: _ServerSampler) -> dict[str, Any]:
    bodies = _Bodies(cfg, texts)
    if cfg.warmup_s > 0:
        warm = dataclasses.replace(cfg, mode="closed")
        asyncio.run(_python_load(warm, bodies, cfg.warmup_s))
    me = psutil.Process()
    c0 = me.cpu_times()
    sampler.start()
    r = asyncio.run(_python_load(cfg, bodies, cfg.duration_s))
    server = sampler.stop()
    c1 = me.cpu_times()
    secs = r["seconds"]
    out: dict[str, Any] = {
        "client": "python",
        "requests": len(r["lat"]),
        "seconds": round(secs, 3),
        "rps": round(len(r["lat"]) / secs, 1) if secs else 0.0,
        "errors": r["errors"],
        "latency_ms": _summ(r["lat"]),
        "client_cpu_cores": round(((c1.user - c0.user) + (c1.system - c0.system)) / secs, 3),
        **server,
    }
    if cfg.mode == "open" and cfg.pattern == "step" and cfg.rate_to is not None:
        starts = np.asarray(r["starts"])
        lat = np.asarray(r["lat"])
        width = cfg.duration_s / cfg.steps
        out["steps"] = []
        for k in range(cfg.steps):
            sel = (starts >= k * width) & (starts < (k + 1) * width)
            out["steps"].append(
                {
                    "target_rps": round(_rate_at(cfg, k * width + 1e-9), 1),
                    "rps": round(int(sel.sum()) / width, 1),
                    "latency_ms": _summ(lat[sel]),
                }
            )
    return out


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    texts = load_texts(cfg)
    pid = cfg.server_pid if cfg.server_pid is not None else find_server_pid(cfg.url)
    sampler = _ServerSampler(pid)
    use_wrk = cfg.mode == "closed" and (
        cfg.client == "wrk" or (cfg.client == "auto" and shutil.which("wrk") is not None)
    )
    result = _run_wrk(cfg, texts, sampler) if use_wrk else _run_python(cfg, texts, sampler)
    result.update(
        url=cfg.url,
        model=cfg.model,
        mode=cfg.mode,
        duplicates=cfg.duplicates,
        concurrency=cfg.concurrency if cfg.mode == "closed" else None,
        rate=None if cfg.mode == "closed" else cfg.rate,
        rate_to=None if cfg.mode == "closed" else cfg.rate_to,
        pattern=None if cfg.mode == "closed" else cfg.pattern,
    )
    if result.get("server_cpu_cores") and result.get("client_cpu_cores") is not None:
        result["client_vs_server_cpu"] = round(
            result["client_cpu_cores"] / result["server_cpu_cores"], 3
        )
    return result


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def print_table(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"{result['mode']}-loop load on {result['url']} ({result['client']} client)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    lat = result["latency_ms"]
    rows = [
        ("requests", result["requests"]),
        ("throughput (req/s)", result["rps"]),
        (
            "p50 / p95 / p99 / max (ms)",
            f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']}",
        ),
        (
            "errors (non-2xx / socket)",
            f"{result['errors']['non_2xx']} / {result['errors']['socket']}",
        ),
        ("server CPU (cores)", result.get("server_cpu_cores")),
        ("server RSS max (MB)", result.get("server_rss_mb_max")),
        ("client CPU (cores)", result.get("client_cpu_cores")),
        ("duplicates", result["duplicates"]),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    for s in result.get("steps", []):
        console.print(
            f"  step {s['target_rps']} req/s -> {s['rps']} req/s, p99 {s['latency_ms']['p99']} ms"
        )
