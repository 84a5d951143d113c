"""The full ``leanml serve`` application: the serving app with the live dashboard mounted.

This is the one module that knows both :mod:`leanml.serving` and :mod:`leanml.dashboard`
(neither imports the other). ``leanml serve`` runs :func:`run`; each uvicorn worker imports
:data:`FACTORY` (``leanml.app:app_from_env``) by name and builds its app from
``$LEANML_SERVE_SPEC``::

    from leanml.app import full_app
    app = full_app(create_app(settings))   # ServeApp + /dashboard

The dashboard's variant switch uses the service's admin token (``LEANML_ADMIN_TOKEN``).
"""

from __future__ import annotations

from typing import Any

from leanml.dashboard import with_dashboard
from leanml.serving import ServeApp
from leanml.serving import server as _server

__all__ = ["FACTORY", "app_from_env", "full_app", "run"]

#: The uvicorn factory workers import (``--workers N`` starts processes that import it by name).
FACTORY = "leanml.app:app_from_env"


def full_app(app: ServeApp, **dashboard_options: Any) -> Any:
    """``app`` with the live dashboard at ``/dashboard`` (options go to
    :func:`leanml.dashboard.with_dashboard`: ``prefix``, ``refresh_s``, ``title``...)."""
    return with_dashboard(app, **dashboard_options)


def app_from_env() -> Any:
    """uvicorn factory: the app described by ``$LEANML_SERVE_SPEC``, with the live dashboard
    mounted at ``/dashboard``."""
    return full_app(_server.app_from_env())


def run(**options: Any) -> None:
    """:func:`leanml.serving.server.run` (same keywords: host, port, workers, config_file, ...)
    with the dashboard mounted in every worker."""
    _server.run(**options, factory=FACTORY)
