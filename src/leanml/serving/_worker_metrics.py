"""Per-worker ``/metrics`` listeners (``[serving] worker_metrics_port``).

The workers of one ``leanml serve`` share its port, so a scrape of that port reaches whichever
worker accepts it (and Prometheus keeps its connection alive: always the same one). With
``worker_metrics_port`` set, each worker also serves ``/metrics`` on the first free port from
it (tried in order, up to 256 ports), so Prometheus can scrape every worker and
``sum(rate(leanml_predictions_total[1m]))`` counts every prediction once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from leanml.errors import ServingError
from leanml.monitor import PROMETHEUS_CONTENT_TYPE

__all__ = ["WorkerMetrics"]

_TRIES = 256


class WorkerMetrics:
    """A threaded HTTP listener answering ``GET /metrics`` with ``render()``."""

    def __init__(self, render: Callable[[], str], host: str, first_port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        last: OSError | None = None
        for port in range(first_port, min(first_port + _TRIES, 65536)):
            try:
                self.server = ThreadingHTTPServer((host, port), Handler)
                break
            except OSError as exc:
                last = exc
        else:
            raise ServingError(
                f"no free port for the worker /metrics listener in {first_port}.."
                f"{first_port + _TRIES - 1} on {host}: {last}"
            )
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="leanml-worker-metrics", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
