"""Run the service under uvicorn (httptools + uvloop when installed), one or several workers.

Workers are separate processes (uvicorn's supervisor); each imports the app factory named by
``run(factory=...)`` (default :func:`app_from_env`, the service alone; ``leanml serve`` passes
:func:`leanml.app.app_from_env`, which mounts the dashboard), builds its own app from the spec
passed in ``LEANML_SERVE_SPEC`` (JSON), loads the models, and shares the monitor store and the
registry with the others. The connection bounds of ``[serving]`` (``max_connections``,
``keep_alive_s``, ``max_header_bytes``, ``header_timeout_s``, ``body_timeout_s``) apply to every
worker. SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests,
then the lifespan shutdown flushes feedback and monitors (see :class:`Service`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from typing import Any

from leanml.config import Settings
from leanml.serving.app import ServeApp, create_app
from leanml.serving.service import serving_profile

__all__ = ["FACTORY", "SPEC_ENV", "app_from_env", "app_from_spec", "build", "run"]

SPEC_ENV = "LEANML_SERVE_SPEC"
#: The uvicorn factory of the service alone, as workers import it.
FACTORY = "leanml.serving.server:app_from_env"


def build(
    *,
    config_file: str | os.PathLike[str] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    store_url: str | None = None,
    serving: dict[str, Any] | None = None,
) -> Settings:
    """The server's settings, read once through the one loader: defaults < ``config_file`` (or
    ``$LEANML_CONFIG``) < environment < these arguments (``serving`` holds [serving] keys), with
    the server's monitor profile where the user left the default."""
    overrides: dict[str, Any] = {"models_dir": models_dir, "store_url": store_url}
    overrides.update({f"serving.{key}": value for key, value in (serving or {}).items()})
    return serving_profile(Settings.load(config_file, overrides=overrides))


def app_from_spec(spec: dict[str, Any]) -> ServeApp:
    """The service's ASGI app for a spec (:func:`build`'s keywords), with the protocol's
    cache-hit answer registered when the protocol is importable."""
    settings = build(**spec)
    app = create_app(settings)
    with contextlib.suppress(ImportError):  # uvicorn internals may move: then no fast path
        from leanml.serving import _protocol

        _protocol.use_fast_answer(app.answer_cached)
        _protocol.use_limits(settings.serving)
    return app


def app_from_env() -> ServeApp:
    """uvicorn factory: the app described by ``$LEANML_SERVE_SPEC`` (no dashboard: see
    :func:`leanml.app.app_from_env`)."""
    return app_from_spec(json.loads(os.environ.get(SPEC_ENV, "{}")))


def _http_protocol() -> str:
    """The coalescing httptools protocol when httptools is installed, else h11."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    try:
        from leanml.serving import _protocol  # noqa: F401 - uvicorn internals may move
    except ImportError:
        return "httptools"
    return "leanml.serving._protocol:CoalescingHttpToolsProtocol"


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    config_file: str | None = None,
    models_dir: str | None = None,
    store_url: str | None = None,
    serving: dict[str, Any] | None = None,
    log_level: str = "info",
    factory: str = FACTORY,
) -> None:
    """Serve with uvicorn; ``factory`` is the ``module:function`` each worker imports to build
    its app from ``$LEANML_SERVE_SPEC``."""
    import uvicorn  # only when serving: keeps uvicorn off the library import path

    spec: dict[str, Any] = {
        "config_file": config_file,
        "models_dir": models_dir,
        "store_url": store_url,
        "serving": serving or {},
    }
    cfg = build(**spec).serving  # fail fast on bad settings, before any worker starts
    os.environ[SPEC_ENV] = json.dumps(spec)
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=_http_protocol(),
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        # the connection bounds of [serving] that uvicorn enforces itself (h11's header bound
        # when httptools is missing; with httptools the protocol enforces max_header_bytes and
        # the read timeouts, see leanml.serving._protocol)
        limit_concurrency=cfg.max_connections,
        timeout_keep_alive=round(cfg.keep_alive_s) or 1,  # uvicorn takes whole seconds
        h11_max_incomplete_event_size=cfg.max_header_bytes,
    )
