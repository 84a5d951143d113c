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

The modules, by concept: ``_workload`` (the configuration, texts and bodies), ``_schedule``
(the open-loop patterns), ``_wrk`` and ``_socket`` (the two clients), ``_sampler`` (the
server's CPU and RSS), ``_summary`` (latency figures, table, JSON) and ``_run`` (one run).
"""

from __future__ import annotations

from leanml.bench.http._run import run_bench
from leanml.bench.http._sampler import ServerSampler, find_server_pid
from leanml.bench.http._summary import print_table, write_json
from leanml.bench.http._workload import BenchConfig, load_texts

__all__ = [
    "BenchConfig",
    "ServerSampler",
    "find_server_pid",
    "load_texts",
    "print_table",
    "run_bench",
    "write_json",
]
