"""The live admin dashboard: a Starlette app to mount at ``/dashboard``.

::

    from starlette.routing import Mount
    from leanml.dashboard.web import MonitorProvider, dashboard_app

    provider = MonitorProvider(monitors, registry=registry, extras=serving_figures,
                               switch=switch_variant)
    app.router.routes.append(Mount("/dashboard", app=dashboard_app(provider, admin_token=token)))

Routes (relative to the mount point): ``/`` the page, ``/data.json`` what it polls,
``/dashboard.js`` and ``/dashboard.css`` (served from the package: no CDN, works offline), and
``POST /variant`` (``{"model", "variant"}``) which calls the provider's switch behind the bearer
token (401 without a token, 403 when wrong or when no token is configured; compared in constant
time). Every error answer is JSON ``{"error", "detail", "field"}``, the dashboard's own 404s
and 405s (with ``Allow``) included. Charts are drawn in the browser as SVG by the page's own
~60-line script from the JSON series, so the serving process spends no CPU on rendering. The
page sends a strict Content-Security-Policy (scripts only from this server, no inline script)
and the script writes every value with ``textContent``: model names and labels cannot inject
markup.

The data comes from any object implementing :class:`DashboardProvider`; :class:`MonitorProvider`
builds it from :class:`~leanml.monitor.ModelMonitor` objects, a registry and the serving layer's
cache/batching figures. The app keeps the last ``history_s`` seconds of live points per model
(one per poll at most every ``sample_every_s``), seeded from the provider's ``history`` when it
has one (e.g. the store's merged windows).
"""

from __future__ import annotations

import hmac
import inspect
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from html import escape
from http import HTTPStatus
from typing import Any, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from leanml.dashboard import _assets
from leanml.dashboard.data import batch_figures, collect_windows, shadow_lines
from leanml.errors import LeanMLError
from leanml.monitor.drift import DRIFT_SCORES
from leanml.monitor.shadow import read_decision

__all__ = [
    "ERROR_HANDLERS",
    "DashboardProvider",
    "MonitorProvider",
    "dashboard_app",
    "error_response",
    "model_entry",
]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SERIES_KEYS = ("rps", "p50", "p95", "p99", "estimated", "realized", "hit_rate")
_RESOURCE_KEYS = ("rss_bytes", "cpu_percent", "threads", "gc_collections", "disk_bytes")


@runtime_checkable
class DashboardProvider(Protocol):
    """What the dashboard reads. ``snapshot()`` returns::

        {"models": {name: stats}, "resources": {...} | None}

    where ``stats`` has the shape of :meth:`ModelMonitor.stats` (missing keys are shown as
    "-") plus, when the serving layer has them: ``variants`` (list), ``active_variant``,
    ``cache`` ({"hits", "misses", "evictions", "entries", "max_entries", "enabled"}) and
    ``batching`` ({"batch_sizes": {size: count}, "mean_batch_size", "queue_wait_p99_s",
    "max_wait_ms", "max_batch_size"}). ``resources`` has the shape of
    :meth:`ResourceSampler.latest`. ``switch_variant`` is the admin action (raise
    ``KeyError`` for an unknown model, ``ValueError`` for a bad variant).
    An optional ``history(since) -> {name: [{"ts", "rps", "p50", ...}]}`` seeds the charts.
    """

    def snapshot(self) -> Mapping[str, Any]: ...

    def switch_variant(
        self, name: str, variant: str
    ) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]: ...


class MonitorProvider:
    """A :class:`DashboardProvider` over live monitors (and optionally registry and store).

    ``monitors``: name -> ModelMonitor, or a callable returning that mapping (so models loaded
    later appear). ``extras(name)`` adds serving figures (``cache``, ``batching``,
    ``variants``, ``active_variant``) to a model's stats. ``switch(name, variant)`` performs the
    admin switch; without it the registry's ``set_active_variant`` is used. ``store`` (a
    :class:`~leanml.monitor.MonitorStore`) seeds the charts with the last hour of windows merged
    across every process.
    """

    def __init__(
        self,
        monitors: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        registry: Any | None = None,
        store: Any | None = None,
        extras: Callable[[str], Mapping[str, Any] | None] | None = None,
        switch: Callable[[str, str], Mapping[str, Any]] | None = None,
    ) -> None:
        self._monitors = monitors
        self.registry = registry
        self.store = store
        self.extras = extras
        self.switch = switch

    def monitors(self) -> Mapping[str, Any]:
        return self._monitors() if callable(self._monitors) else self._monitors

    def snapshot(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        resources = None
        for name, mon in self.monitors().items():
            st = dict(mon.stats())
            resources = resources or st.get("resources")
            if self.registry is not None and name in self.registry.list_models():
                st.setdefault("variants", self.registry.variants(name))
                st.setdefault("active_variant", self.registry.active_variant(name))
            if self.extras is not None:
                st.update(self.extras(name) or {})
            if self.store is not None and "shadow" not in st:
                shadow = self._shadow(name, getattr(mon, "version", None))
                if shadow is not None:
                    st["shadow"] = shadow
            models[name] = st
        return {"models": models, "resources": resources}

    def _shadow(self, name: str, version: Any) -> dict[str, Any] | None:
        """The shadow check of ``name`` v``version`` as the store has it (None: none ran)."""
        if self.store is None or version in (None, ""):
            return None
        try:
            return read_decision(self.store, name, version)
        except Exception:  # an unreachable store must not break the page
            return None

    def switch_variant(self, name: str, variant: str) -> dict[str, Any]:
        if name not in self.monitors():
            raise KeyError(name)
        if self.switch is not None:
            return dict(self.switch(name, variant))
        if self.registry is None:
            raise ValueError("no registry to switch variants in")
        self.registry.set_active_variant(name, variant)
        return {"model": name, "variant": variant}

    def history(self, since: float) -> dict[str, list[dict[str, Any]]]:
        if self.store is None:
            return {}

        out: dict[str, list[dict[str, Any]]] = {}
        now = time.time()
        found = collect_windows(self.store, since=since, until=now, max_detail_rows=50_000)
        for name, md in found.items():
            out[name] = [
                {
                    "ts": w.start + w.width / 2,
                    "rps": w.throughput,
                    "p50": w.p50,
                    "p95": w.p95,
                    "p99": w.p99,
                    "estimated": w.estimated_accuracy,
                    "realized": w.realized_accuracy,
                }
                for w in md.windows
                if w.start + w.width <= now  # closed windows only: complete counts
            ]
        return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _rate(tp: Mapping[str, Any], uptime: Any) -> float | None:
    """Predictions per second over the last minute (or the uptime when shorter)."""
    per_min, up = _num(tp.get("per_min")), _num(uptime)
    if per_min is None:
        return _num(tp.get("per_s"))
    return per_min / max(1.0, min(60.0, up if up is not None else 60.0))


def _normalize(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both ModelMonitor.stats() and leanml serve's /stats shape (local + merged)."""
    st: dict[str, Any] = dict(stats.get("local") or {})
    st.update({k: v for k, v in stats.items() if k != "local" and v is not None})
    if isinstance(st.get("alerts"), list):
        st["alerts"] = {"active": st["alerts"]}
    acc = st.get("accuracy")
    if isinstance(acc, Mapping) and not isinstance(acc.get("realized"), Mapping | type(None)):
        st["accuracy"] = {
            **acc,
            "realized": {
                "accuracy": acc["realized"],
                "accuracy_lower": acc.get("realized_lower"),
                "accuracy_upper": acc.get("realized_upper"),
                "n": acc.get("realized_joined") or 0,
            },
        }
    merged = stats.get("merged") or {}
    if merged.get("count") is not None:
        st["counts"] = {**(st.get("counts") or {}), "predictions": merged["count"]}
    if merged.get("processes") is not None:  # every process (all workers, all hosts) merged
        st["processes"] = merged["processes"]
    return st


def model_entry(name: str, stats: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one model's stats into what the page shows (numbers or None, strings)."""
    st = _normalize(stats)
    lat = st.get("latency") or {}
    tp = st.get("throughput") or {}
    acc = st.get("accuracy") or {}
    real = acc.get("realized") or {}
    drift = st.get("drift") or {}
    cache = st.get("cache") or {}
    batching = st.get("batching") or {}
    hits, misses = _num(cache.get("hits")), _num(cache.get("misses"))
    hit_rate = _num(cache.get("hit_rate"))
    if hit_rate is None and hits is not None and misses is not None and hits + misses:
        hit_rate = hits / (hits + misses)
    batch = batch_figures(batching)
    alerts = (st.get("alerts") or {}).get("active") or []
    variants = st.get("variants") or []
    served, active = st.get("variant"), st.get("active_variant")
    shadow = st.get("shadow") if isinstance(st.get("shadow"), Mapping) else None
    # a server's stats carry the key (None: its shadow check is off); a monitor's do not
    knows_shadow = "shadow" in stats and served == "compact"
    return {
        "name": str(name),
        "health": str(st.get("health") or "unknown"),
        "paused": bool(st.get("paused")),  # recording paused (PUT /v1/models/NAME/monitoring)
        "reasons": [f"{a.get('rule')}: {a.get('level')} - {a.get('reason')}" for a in alerts],
        "version": str(st.get("version") or ""),
        "variant": str(served if served not in (None, "", "default") else active or ""),
        "variants": [str(v) for v in variants],
        "predictions": _num((st.get("counts") or {}).get("predictions")),
        "processes": _num(st.get("processes")),
        "per_s": _num(tp.get("per_s")),
        "rps": _rate(tp, st.get("uptime_s")),
        "per_min": _num(tp.get("per_min")),
        "p50": _num(lat.get("p50")),
        "p95": _num(lat.get("p95")),
        "p99": _num(lat.get("p99")),
        "realized": _num(real.get("accuracy")),
        "realized_lower": _num(real.get("accuracy_lower")),
        "realized_upper": _num(real.get("accuracy_upper")),
        "realized_n": int(real.get("n") or 0),
        "estimated": _num(acc.get("estimated")),
        "estimated_lower": _num(acc.get("estimated_lower")),
        "estimated_upper": _num(acc.get("estimated_upper")),
        "estimated_n": int(acc.get("estimated_n") or 0),
        "estimated_method": str(acc.get("estimated_method") or ""),
        **{key: _num(drift.get(key)) for key in DRIFT_SCORES},
        # 95% intervals of the sampled drift scores, and the samples behind them
        "drift_intervals": {
            str(k): [_num(v[0]), _num(v[1])]
            for k, v in (drift.get("intervals") or {}).items()
            if isinstance(v, list | tuple) and len(v) == 2
        },
        # a score without an interval: the samples it needs for one (class PSI, n too small)
        "drift_needed": {
            str(k): _num(v.get("needed"))
            for k, v in (drift.get("no_interval") or {}).items()
            if isinstance(v, dict)
        },
        "drift_n": _num(drift.get("n")),
        "confidence_n": _num(drift.get("confidence_n")),
        "error_rate": _num(st.get("error_rate")),
        "cache_hit_rate": hit_rate,
        "cache_entries": _num(cache.get("entries")),
        "batch_mean": _num(batch["mean"]),
        "queue_wait_p99": _num(batch["queue_wait_p99_s"]),
        "dropped": int(sum(v for v in (st.get("drops") or {}).values() if isinstance(v, int))),
        # the online shadow check: sentences (nothing when none ran), and whether its test failed
        "shadow": shadow_lines(shadow, serving_compact=knows_shadow),
        "shadow_agreement": _num((shadow or {}).get("agreement")),
        "shadow_failed": bool((shadow or {}).get("alarm") or (shadow or {}).get("fallen_back")),
    }


class _Series:
    """The last ``history_s`` seconds of points per model, bounded in entries."""

    def __init__(self, history_s: float, sample_every_s: float) -> None:
        self.history_s = history_s
        self.every = sample_every_s
        self.max_points = int(history_s / sample_every_s) + 120
        self.points: dict[str, deque[tuple[float, dict[str, float | None]]]] = {}
        self.last = 0.0

    def add(self, ts: float, name: str, point: Mapping[str, float | None]) -> None:
        d = self.points.setdefault(name, deque(maxlen=self.max_points))
        if d and ts <= d[-1][0]:
            return
        d.append((ts, {k: point.get(k) for k in _SERIES_KEYS}))

    def trim(self, now: float) -> None:
        lo = now - self.history_s
        for d in self.points.values():
            while d and d[0][0] < lo:
                d.popleft()

    def as_json(self, names: list[str]) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {}
        for name in names:
            pts = list(self.points.get(name, ()))
            out[name] = {"t": [p[0] for p in pts]}
            for k in _SERIES_KEYS:
                out[name][k] = [p[1][k] for p in pts]
        return out


def error_response(
    status: int,
    detail: str,
    field: str | None = None,
    error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer ``{"error", "detail", "field"}`` (``error`` defaults to the status's
    phrase in snake case: ``not_found``, ``method_not_allowed``...)."""
    code = error or HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    body = {"error": code, "detail": detail, "field": field}
    return JSONResponse(body, status, headers=dict(headers or {}) or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # a set's order: sorted, so the header is stable
        headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
    return error_response(exc.status_code, str(exc.detail), headers=headers)


#: Starlette's own 404/405 (with its ``Allow`` header) as JSON errors.
ERROR_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: _http_error
}


def _page(root: str, title: str, refresh_s: float) -> str:
    r = escape(root, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{r}/dashboard.css">
</head>
<body data-base="{r}" data-refresh="{refresh_s:g}">
<header><h1>{escape(title)}</h1><span id="status">loading…</span>
<form id="admin-box" hidden><label>admin token
<input id="token" type="password" autocomplete="off" size="18"></label></form></header>
<main>
<h2>Models</h2><div id="models" class="grid"></div>
<h2>Active alerts</h2>
<div class="card"><table><thead><tr><th>model</th><th>rule</th><th>level</th><th>value</th>
<th>reason</th></tr></thead><tbody id="alerts"></tbody></table></div>
<h2>Live charts (last hour)</h2><div id="charts"></div>
<h2>Process resources</h2><div class="card"><table><tbody id="resources"></tbody></table></div>
</main>
<script src="{r}/dashboard.js"></script>
</body></html>
"""


def dashboard_app(
    provider: DashboardProvider,
    *,
    admin_token: str | Callable[[], str | None] | None = None,
    title: str = "leanml dashboard",
    refresh_s: float = 2.0,
    history_s: float = 3600.0,
    sample_every_s: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The dashboard as an ASGI app (mount it at ``/dashboard``); see the module docstring."""

    def token() -> str | None:
        return admin_token() if callable(admin_token) else admin_token

    live = _LiveData(provider, token, _Series(history_s, sample_every_s), clock)

    async def page(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(
            _page(root, title, refresh_s),
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
        )

    async def data(request: Request) -> Response:
        body = await run_in_threadpool(live.collect)
        return Response(
            json.dumps(body, allow_nan=False, default=str),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def script(request: Request) -> Response:
        return Response(_assets.JS, media_type="text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return Response(_assets.CSS, media_type="text/css; charset=utf-8")

    async def switch(request: Request) -> Response:
        return await _switch_variant(request, provider, token())

    return Starlette(
        routes=[
            Route("/", page),
            Route("/data.json", data),
            Route("/dashboard.js", script),
            Route("/dashboard.css", style),
            Route("/variant", switch, methods=["POST"]),
        ],
        exception_handlers=ERROR_HANDLERS,
    )


class _LiveData:
    """What ``/data.json`` answers: the provider's snapshot flattened, plus the live series.

    The series is seeded once from the provider's ``history`` (when it has one), then gains one
    point per model at most every ``sample_every_s`` seconds of polling.
    """

    def __init__(
        self,
        provider: DashboardProvider,
        token: Callable[[], str | None],
        series: _Series,
        clock: Callable[[], float],
    ) -> None:
        self.provider = provider
        self.token = token
        self.series = series
        self.clock = clock
        self.seeded = False

    def collect(self) -> dict[str, Any]:
        now = self.clock()
        if not self.seeded:
            self.seeded = True
            self._seed(now)
        snap = self.provider.snapshot()
        stats = snap.get("models") or {}
        models = [model_entry(n, st) for n, st in stats.items()]
        self._sample(now, models)
        res = snap.get("resources") or {}
        return {
            "ts": now,
            "admin": bool(self.token()),
            "models": models,
            "alerts": _active_alerts(stats),
            "series": self.series.as_json([m["name"] for m in models]),
            "resources": {k: res.get(k) for k in _RESOURCE_KEYS},
        }

    def _seed(self, now: float) -> None:
        hist = getattr(self.provider, "history", None)
        if callable(hist):
            for name, pts in hist(now - self.series.history_s).items():
                for p in pts:
                    self.series.add(float(p["ts"]), name, p)

    def _sample(self, now: float, models: list[dict[str, Any]]) -> None:
        if now - self.series.last < self.series.every:
            return
        self.series.last = now
        for m in models:
            point = {k: m[k] for k in _SERIES_KEYS if k != "hit_rate"}
            self.series.add(now, m["name"], {**point, "hit_rate": m["cache_hit_rate"]})
        self.series.trim(now)


def _active_alerts(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every model's active alerts, one row each, the value a finite number or None (``leanml
    serve``'s /stats shape lists them under ``alerts``, a monitor's under ``alerts.active``)."""
    return [
        {
            "model": n,
            "rule": a.get("rule"),
            "level": a.get("level"),
            "value": _num(a.get("value")),
            "reason": a.get("reason"),
        }
        for n, st in stats.items()
        for a in ((_normalize(st).get("alerts") or {}).get("active") or [])
    ]


async def _switch_variant(
    request: Request, provider: DashboardProvider, expected: str | None
) -> Response:
    """``POST /variant``: the bearer check, the JSON body, then the provider's switch."""
    denied = _check_bearer(request.headers.get("authorization", ""), expected)
    if denied is not None:
        return denied
    try:
        payload = await request.json()
        name, variant = str(payload["model"]), str(payload["variant"])
    except (ValueError, KeyError, TypeError):
        return error_response(422, "expected JSON {'model': ..., 'variant': ...}", "body")
    try:
        result = provider.switch_variant(name, variant)  # may be a coroutine
        if inspect.isawaitable(result):
            result = await result
    except KeyError:
        return error_response(404, f"unknown model {name!r}", "model")
    except ValueError as exc:
        return error_response(422, str(exc), "variant")
    except LeanMLError as exc:  # e.g. the model is not served
        return error_response(404 if "No " in str(exc) else 422, str(exc), "model")
    return JSONResponse({"model": name, "variant": variant, **dict(result or {})})


def _check_bearer(auth: str, expected: str | None) -> Response | None:
    """401 without a bearer token, 403 when wrong or when no token is configured, else None."""
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        return error_response(
            401, "missing bearer token", "authorization", headers={"WWW-Authenticate": "Bearer"}
        )
    given = auth[7:].strip().encode()
    if not expected or not hmac.compare_digest(given, expected.encode()):
        return error_response(403, "invalid token or admin disabled", "authorization")
    return None
