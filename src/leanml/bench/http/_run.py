"""One load run: pick the client, sample the server meanwhile, describe the run in the result."""

from __future__ import annotations

import shutil
from typing import Any

from leanml.bench.http._sampler import ServerSampler, find_server_pid
from leanml.bench.http._socket import run_python
from leanml.bench.http._workload import BenchConfig, load_texts
from leanml.bench.http._wrk import run_wrk

__all__ = ["run_bench"]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the load ``cfg`` describes; throughput, latency, errors and CPU/RSS as a plain dict."""
    texts = load_texts(cfg)
    pid = cfg.server_pid if cfg.server_pid is not None else find_server_pid(cfg.url)
    sampler = ServerSampler(pid)
    use_wrk = cfg.mode == "closed" and (
        cfg.client == "wrk" or (cfg.client == "auto" and shutil.which("wrk") is not None)
    )
    result = run_wrk(cfg, texts, sampler) if use_wrk else run_python(cfg, texts, sampler)
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
