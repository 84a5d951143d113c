"""The live dashboard over a ``leanml serve`` service, ready to mount into its app.

This module never imports :mod:`leanml.serving`; :mod:`leanml.app` is the one place that mounts
it, and the way to get the full application::

    from leanml.app import full_app
    from leanml.serving import create_app

    app = full_app(create_app(settings, config, monitor_config))   # ServeApp -> ASGI app

:class:`ServiceProvider` reads a :class:`leanml.serving.service.Service` through its public
surface (``handles``, ``stats(name)`` with the local and store-merged figures, cache and
batching, ``registry``, ``store``, ``switch_variant``); :func:`with_dashboard` sends
``/dashboard`` and everything under it to :func:`~leanml.dashboard.web.dashboard_app` and every
other request and the lifespan to the wrapped app. The admin token is the service's own
(``LEANML_ADMIN_TOKEN``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from leanml.dashboard.web import ERROR_HANDLERS, MonitorProvider, dashboard_app
from leanml.errors import LeanMLError
from leanml.registry import VARIANTS

__all__ = ["ServiceProvider", "with_dashboard"]


class ServiceProvider:
    """A :class:`~leanml.dashboard.web.DashboardProvider` over a serving ``Service``."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def snapshot(self) -> dict[str, Any]:
        svc = self.service
        models: dict[str, Any] = {}
        resources = None
        for name in list(svc.handles):
            st = dict(svc.stats(name))
            try:
                st["variants"] = svc.registry.variants(name)
                st["active_variant"] = svc.registry.active_variant(name)
            except LeanMLError:
                pass
            local = st.get("local") or {}
            resources = resources or local.get("resources")
            models[name] = st
        return {"models": models, "resources": resources}

    def switch_variant(self, name: str, variant: str) -> Awaitable[Mapping[str, Any]]:
        if name not in self.service.handles:
            raise KeyError(name)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return self.service.switch_variant(name, variant)

    def history(self, since: float) -> dict[str, list[dict[str, Any]]]:
        store = getattr(self.service, "store", None)
        return MonitorProvider({}, store=store).history(since) if store is not None else {}


def with_dashboard(app: Any, *, prefix: str = "/dashboard", **options: Any) -> Any:
    """Wrap a ``ServeApp`` (it must have ``.service``) so ``prefix`` serves the dashboard.

    ``options`` go to :func:`~leanml.dashboard.web.dashboard_app` (``refresh_s``, ``title``...).
    """
    service = app.service
    options.setdefault("admin_token", lambda: service.admin_token)
    dash = Starlette(
        routes=[Mount(prefix, app=dashboard_app(ServiceProvider(service), **options))],
        exception_handlers=ERROR_HANDLERS,
    )

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            await dash(scope, receive, send)
        else:
            await app(scope, receive, send)

    asgi.service = service  # type: ignore[attr-defined]
    return asgi
