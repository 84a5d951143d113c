"""Service: the served models of one process and everything around them (no web code).

Lifecycle (:meth:`Service.start`): open the monitor store (migrating it in place), load every
model (the compact variant when its guard passed, see :attr:`ServingConfig.variant`), warm each
up, register its id prefix, restore its monitor's accuracy windows from the durable ground-truth
log, start the feedback poller and the registry watcher, then ``gc.freeze()`` the loaded state
and report ready. :meth:`Service.stop` joins feedback still forwarded to this process, commits every
queued feedback write and closes each monitor (which flushes its buffers to the store), so no
acknowledged feedback is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

from leanml._logging import limited
from leanml._sizing import deep_sizeof
from leanml.config import ServingConfig, Settings
from leanml.errors import LeanMLError, ModelNotFoundError, ParameterError, ServingError
from leanml.groundtruth import FeedbackLog, parse_id
from leanml.monitor import MonitorConfig, MonitorStore, freeze_after_load
from leanml.registry import ModelRegistry
from leanml.serving._shared import SharedRegistryState
from leanml.serving.handle import ModelHandle
from leanml.serving.openapi import CHANGEABLE_MONITORING
from leanml.serving.shadow import clear_fallback

__all__ = ["SERVING_PROFILE", "FeedbackOutcome", "Service", "serving_profile"]

_log = limited("leanml.serving")  # failures repeat during a store outage

_REASONS = {
    "never_seen": "no prediction with this id was ever made by a process sharing this store",
    "expired": "the prediction is older than the monitor's pending-join age limit",
    "evicted": "the prediction was evicted from the bounded pending-join table "
    "(too many newer predictions)",
    "owner_gone": "the process that made this prediction has stopped; its pending predictions "
    "are gone",
    "duplicate": "already labeled (kept the first)",
}
_OK = {"joined", "duplicate", "stored"}


@dataclasses.dataclass
class FeedbackOutcome:
    id: str
    status: str
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in _OK

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out


#: The server's own monitor default: the flusher thread steps (every second, the library
#: default), not the event loop that records (``flush_on_record`` off: a step there would
#: hold every request in flight), pausing every 0.5 ms it holds the GIL. The pauses hand the
#: event loop the GIL (leanml.monitor._pace): a step of a second's records does not make a
#: request wait longer. They stay off elsewhere: in a CPU-bound loop calling a monitored model
#: the caller takes the GIL for up to CPython's 5 ms switch interval after each pause.
#: Anything the user sets in [monitor] wins.
SERVING_PROFILE = {
    "monitor.flush_on_record": False,
    "monitor.flush_hold_s": 0.0005,
}


def serving_profile(settings: Settings) -> Settings:
    """``settings`` with the server's monitor defaults where the user left the default."""
    return settings.with_profile("leanml serve", SERVING_PROFILE)


def _with_thresholds(rules: tuple[Any, ...], thresholds: Any) -> tuple[Any, ...]:
    """Alert rules with new warning/critical levels: ``{rule: {"warning": x, "critical": y}}``
    (or ``{rule: x}`` for the warning level)."""
    if not isinstance(thresholds, dict):
        raise ParameterError(
            "The 'thresholds' field of the monitoring config must be an object "
            f"{{rule: {{warning, critical}}}}, got {thresholds!r} instead."
        )
    by_name = {r.name: r for r in rules}
    for name, levels in thresholds.items():
        if name not in by_name:
            raise ParameterError(
                f"The 'thresholds.{name}' field names no alert rule; rules: "
                f"{', '.join(sorted(by_name))}."
            )
        if not isinstance(levels, dict):
            levels = {"warning": levels}
        bad = set(levels) - {"warning", "critical"}
        if bad:
            raise ParameterError(
                f"The 'thresholds.{name}' field accepts warning and critical, got {sorted(bad)}."
            )
        by_name[name] = dataclasses.replace(by_name[name], **levels)
    return tuple(by_name[r.name] for r in rules)


class Service:
    """The models served by one process (see module docstring)."""

    def __init__(
        self,
        settings: Settings,
        config: ServingConfig | None = None,
        monitor_config: MonitorConfig | None = None,
        *,
        admin_token: str | None = None,
    ) -> None:
        """``config`` and ``monitor_config`` default to the settings' sections (the monitor's
        with :data:`SERVING_PROFILE`), ``admin_token`` to ``settings.serving.admin_token``."""
        self.settings = settings
        self.config = config or settings.serving
        self.monitor_config = monitor_config or serving_profile(settings).monitor
        self.admin_token = admin_token or self.config.admin_token
        self.registry = ModelRegistry(settings.models_dir, trusted_types=settings.trusted_types)
        self.handles: dict[str, ModelHandle] = {}
        self.store: MonitorStore | None = None
        self.feedback_log: FeedbackLog | None = None
        self.ready = False
        self.started_at = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_stats_flush = 0.0
        self.http_counts: dict[tuple[str, int], int] = {}
        self._reports: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._reports_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        store = await asyncio.to_thread(MonitorStore, self.settings.store_url)
        self.store = store
        # promotions and variant switches reach every host sharing this store
        self.registry.shared_state = await asyncio.to_thread(
            SharedRegistryState, store.engine, store.prefix
        )
        self.feedback_log = FeedbackLog(
            store.engine,
            store.process_id,
            table_prefix=store.prefix,
            poll_interval_s=self.config.poll_interval_s,
            heartbeat_s=self.config.heartbeat_s,
        )
        names = list(self.config.models) or self.registry.list_models()
        for name in names:
            handle = ModelHandle(
                self.registry,
                name,
                config=self.config,
                monitor_config=self.monitor_config,
                store=store if self.config.monitoring else None,
            )
            try:
                loaded = await asyncio.to_thread(handle.load, handle.default_variant())
            except Exception:  # one model that cannot load must not take the others down
                _log.exception("model %s cannot be loaded; not serving it", name)
                continue
            if handle.shadow is not None:
                handle.shadow.switch = self._shadow_switcher(name)
            state = handle.install(loaded)
            prefix = handle.ground_truth.prefix
            await asyncio.to_thread(self.feedback_log.register_space, prefix, name)
            if state.monitor is not None:  # after a crash: the windows the log can rebuild
                await asyncio.to_thread(state.monitor.restore, self.feedback_log)
            self.handles[name] = handle
            _log.info(
                "serving %s v%s (%s%s)",
                name,
                loaded.version,
                loaded.variant,
                f", fell back: {loaded.fallback_reason}" if loaded.fallback_reason else "",
            )
        self.feedback_log.start(self._resolve_threadsafe)
        self._tasks.append(asyncio.create_task(self._watch_registry()))
        await asyncio.to_thread(self._wait_for_shadow_originals)
        freeze_after_load()
        self.ready = bool(self.handles)  # a server whose models all failed is not ready
        if not self.ready:
            _log.error("no model of %s could be loaded: not ready", self.registry.root)

    def _wait_for_shadow_originals(self, timeout: float = 300.0) -> None:
        """Before reporting ready: the originals the shadow checks load on their threads
        (loading one while requests arrive would stall them; loaded now, it is also frozen
        with the rest). A load that takes longer goes on in the background."""
        deadline = time.monotonic() + timeout
        for name, h in self.handles.items():
            if h.shadow is not None and not h.shadow.wait_loaded(deadline - time.monotonic()):
                _log.warning("%s: the shadow check's original is still loading", name)

    async def stop(self) -> None:
        self.ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.feedback_log is not None:
            await asyncio.to_thread(self.feedback_log.close, self._resolve_threadsafe)
        for h in self.handles.values():
            await asyncio.to_thread(h.close)
        if self.store is not None:
            self.store.close()

    def handle(self, name: str) -> ModelHandle:
        h = self.handles.get(name)
        if h is None:
            raise ModelNotFoundError(
                f"No served model named {name!r} (served: {', '.join(self.handles) or 'none'})."
            )
        return h

    # ------------------------------------------------------------------ admin
    async def switch_variant(self, name: str, variant: str) -> dict[str, Any]:
        h = self.handle(name)
        async with h.switching:
            await asyncio.to_thread(self.registry.set_active_variant, name, variant)
            st = h.state
            if variant == "compact" and st is not None and h.shadow is not None:
                # switching back after a shadow fallback: every process, through the store
                await asyncio.to_thread(clear_fallback, self.store, name, st.version)
                h.shadow.fallen_back, h.shadow.reason = False, None
            h.install(await asyncio.to_thread(h.load, variant))
        return h.info()

    def set_shadow(self, name: str, on: bool) -> dict[str, Any] | None:
        """Resume or pause the shadow check of ``name`` in this process: the model's info, its
        ``shadow`` figures included; None when this server runs without the check."""
        h = self.handle(name)
        if h.shadow is None:
            return None
        if on:
            h.shadow.resume()
        else:
            h.shadow.pause()
        return h.info()

    def set_monitoring(self, name: str, on: bool) -> dict[str, Any] | None:
        """Resume or pause the monitoring of ``name`` in this process: the model's info; None
        when this server runs without monitoring."""
        h = self.handle(name)
        return h.info() if h.pause_monitoring(not on) else None

    def _shadow_switcher(self, name: str) -> Any:
        """The callback a model's shadow check calls (from its thread) to change variant."""

        def switch(variant: str, reason: str | None) -> None:
            loop = self.loop
            if loop is None or loop.is_closed():
                return

            async def run() -> None:
                hh = self.handles.get(name)
                if hh is None:
                    return
                async with hh.switching:
                    hh.install(await asyncio.to_thread(hh.load_for_shadow, variant, reason))
                _log.warning(
                    "%s: shadow check: now serving the %s%s",
                    name,
                    variant,
                    f" ({reason})" if reason else "",
                )

            asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=120)

        return switch

    async def reload(self, name: str) -> dict[str, Any]:
        h = self.handle(name)
        async with h.switching:
            h.install(await asyncio.to_thread(h.load, h.default_variant()))
        return h.info()

    async def erase_details(self, ids: list[str], older_than_s: float | None) -> dict[str, Any]:
        """Erase stored input texts and hashes by prediction id and/or age (see
        :meth:`MonitorStore.erase_details`). This process's queued detail rows are written
        first; the request is recorded in the store, and every worker blanks the matching
        rows it writes afterwards, so a prediction another worker still queues is erased
        too."""
        if self.store is None:
            raise ServingError("the monitor store is not open")
        before = time.time() - older_than_s if older_than_s is not None else None
        for h in self.handles.values():
            await asyncio.to_thread(h.flush)
        store = self.store
        try:
            n = await asyncio.to_thread(store.erase_details, ids=ids, before=before)
        except Exception as exc:  # its text may name the store: logged, not answered
            _log.warning("erase failed: %s", exc)
            raise ServingError("the monitor store is unavailable") from exc
        return {"erased": n, "ids": len(ids), "before": before}

    def configure_monitoring(self, changes: dict[str, Any]) -> dict[str, Any]:
        allowed = set(CHANGEABLE_MONITORING)
        changes = dict(changes)
        thresholds = changes.pop("thresholds", None)
        for key in changes:
            if key not in allowed:
                raise ParameterError(
                    f"The {key!r} field of the monitoring config is unknown or not changeable "
                    f"at run time; changeable: {', '.join(sorted(allowed))}, thresholds."
                )
        if thresholds is not None:
            changes["alert_rules"] = _with_thresholds(self.monitor_config.alert_rules, thresholds)
        cfg = dataclasses.replace(self.monitor_config, **changes)  # validates
        self.monitor_config = cfg
        for h in self.handles.values():
            h.monitor_config = cfg
            for m in h.monitor_list():
                m.configure(**changes)
        return cfg.to_dict()

    async def _watch_registry(self) -> None:
        """Follow variant switches and promotions made by other workers or hosts."""
        while True:
            await asyncio.sleep(self.config.registry_watch_s)
            for name, h in list(self.handles.items()):
                try:
                    await self.follow_registry(name, h)
                except Exception:
                    _log.exception("registry watch of %s failed", name)

    async def follow_registry(self, name: str, h: ModelHandle) -> None:
        """Serve the registry's choice of version and variant when it is not what ``h``
        serves (one round of the registry watcher for one model)."""
        async with h.switching:  # what is served and the registry's choice, read together
            st = h.state
            if st is None:
                return
            want_variant = await asyncio.to_thread(h.default_variant)
            latest = await asyncio.to_thread(self.registry.serving_version, name)
            if (latest, want_variant) != (st.version, st.loaded.requested_variant):
                _log.info("%s: registry changed, reloading", name)
                h.install(await asyncio.to_thread(h.load, want_variant))

    # ------------------------------------------------------------------ feedback
    async def feedback(self, name: str, items: list[tuple[str, str]]) -> list[FeedbackOutcome]:
        """Join ground truth (here, or at its owner), store it durably, report each outcome.

        A label joined here is written to the log with its prediction before it is counted or
        acknowledged; if the write fails its prediction goes back to the ring (503).
        """
        h = self.handle(name)
        fl = self.feedback_log
        if fl is None:
            raise ServingError("the service is not started")
        statuses, joined = h.join_feedback(items)
        outcomes: list[FeedbackOutcome | None] = [None] * len(items)
        foreign: list[tuple[int, str, str, str]] = []
        for i, ((pid, label), status) in enumerate(zip(items, statuses, strict=True)):
            if status == "foreign":
                prefix = parse_id(pid)[0]  # type: ignore[index]
                row = await asyncio.to_thread(fl.owner, prefix)
                if row is None or row["model"] != name:
                    outcomes[i] = FeedbackOutcome(pid, "never_seen", _REASONS["never_seen"])
                elif not fl.owner_alive(row):
                    outcomes[i] = FeedbackOutcome(pid, "expired", _REASONS["owner_gone"])
                else:
                    foreign.append((i, pid, label, prefix))
            else:
                outcomes[i] = FeedbackOutcome(pid, status, _REASONS.get(status))
        rows = h.log_rows(joined) + [
            {"prediction_id": pid, "model": name, "label": lab, "owner": pre, "status": "forwarded"}
            for _, pid, lab, pre in foreign
        ]
        try:
            row_ids = await asyncio.wrap_future(fl.write(rows)) if rows else []
        except Exception:
            h.ground_truth.give_back(joined)
            raise
        h.count_joined(joined)
        if foreign:
            waiting = dict(zip(row_ids[len(joined) :], foreign, strict=True))
            await self._await_owners(waiting, outcomes)
        return [o for o in outcomes if o is not None]

    async def _await_owners(
        self, waiting: dict[int, tuple[int, str, str, str]], outcomes: list[FeedbackOutcome | None]
    ) -> None:
        """Wait (at most ``feedback_timeout_s``) for the owners to join forwarded labels."""
        fl = self.feedback_log
        if fl is None:
            return
        deadline = time.monotonic() + self.config.feedback_timeout_s
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(self.config.poll_interval_s)
            st = await asyncio.to_thread(fl.statuses, list(waiting))
            for rid, s in st.items():
                if s != "forwarded" and rid in waiting:
                    i, pid, _, _ = waiting.pop(rid)
                    outcomes[i] = FeedbackOutcome(pid, s, _REASONS.get(s))
        for i, pid, _, _ in waiting.values():
            outcomes[i] = FeedbackOutcome(
                pid, "stored", "stored durably; its owner process will join it"
            )

    def _resolve_on_loop(
        self, rows: list[tuple[int, str, str, str]]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Join labels other processes forwarded to us (the poller writes the outcomes)."""
        out: list[tuple[str, dict[str, Any] | None]] = []
        for _, pid, model, label in rows:
            h = self.handles.get(model)
            if h is None:
                out.append(("never_seen", None))
                continue
            (status,), joined = h.join_feedback([(pid, label)])
            if joined:
                h.count_joined(joined)
                out.append(("joined", h.prediction_fields(joined[0])))
            else:
                out.append(("never_seen" if status == "foreign" else status, None))
        return out

    def _resolve_threadsafe(
        self, rows: list[tuple[int, str, str, str]]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return self._resolve_on_loop(rows)

        async def run() -> list[tuple[str, dict[str, Any] | None]]:
            return self._resolve_on_loop(rows)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    # ------------------------------------------------------------------ reading
    def model_info(self, name: str) -> dict[str, Any]:
        """What ``GET /v1/models/{name}`` shows: the served model, its versions and, per
        variant of the served version, the manifest's figures; the served variant adds its
        load time and in-memory size. Built once per load (a lock makes concurrent callers
        wait for the one build) and never loads a model: an unauthenticated request cannot
        start unbounded work."""
        h = self.handle(name)
        st = h.state
        key = (h.loaded_at, self.registry.active_variant(name))
        with self._reports_lock:
            cached = self._reports.get(name)
            if cached is None or cached[0] != key:
                cached = (key, self._variant_facts(name, st))
                self._reports[name] = cached
        variants = cached[1]
        return {
            **h.info(),
            "versions": self.registry.versions(name),
            "active_variant": key[1],
            "variants": variants,
            "guard": (variants.get("compact") or {}).get("guard"),
            "health": h.health(),
        }

    def _variant_facts(self, name: str, st: Any) -> dict[str, Any]:
        """Per variant of the served version: manifest figures (+ load-time ones if served)."""
        version = st.version if st is not None else None
        out: dict[str, Any] = {}
        for variant in self.registry.variants(name, version):
            entry: dict[str, Any] = {}
            try:
                manifest = self.registry.manifest(name, version, variant)
            except LeanMLError:
                out[variant] = {"error": "unreadable manifest"}
                continue
            test = manifest.metrics.get("test", {})
            entry.update(
                artifact_bytes=manifest.payload_bytes,
                created=manifest.created,
                test_accuracy=test.get("accuracy"),
                test_macro_f1=test.get("macro_f1"),
            )
            if "guard" in manifest.extra:
                entry["guard"] = manifest.extra["guard"]
            if st is not None and st.variant == variant:
                entry["load_seconds"] = round(st.loaded.load_seconds, 4)
                entry["memory_bytes"] = deep_sizeof(st.loaded.model)
            out[variant] = entry
        return out

    def _merged(self, name: str) -> tuple[dict[str, Any] | None, bool | None]:
        """(the store's merged view of ``name``, whether the store answered); (None, False)
        during an outage, (None, None) without a store. Process ids become a count."""
        if self.store is None or not self.config.monitoring:
            return None, None
        try:
            merged = self.store.merged(model=name)
        except Exception:
            _log.warning("/stats: the monitor store cannot be read; serving local figures only")
            return None, False
        merged.pop("sketch", None)
        merged["processes"] = len(merged.get("processes") or ())
        return merged, True

    def stats(self, name: str) -> dict[str, Any]:
        """Local monitor stats, the store's merged view across processes, cache and batching."""
        h = self.handle(name)
        st = h.state
        now = time.monotonic()
        if now - self._last_stats_flush >= self.config.stats_flush_s:
            self._last_stats_flush = now
            h.flush()
        own = st.monitor.stats() if st is not None and st.monitor is not None else None
        local: dict[str, Any] | None = None  # without infrastructure: store URL, hostname:pid
        if own is not None:
            local = {k: v for k, v in own.items() if k not in ("store", "process")}
        merged, store_up = self._merged(name)
        out: dict[str, Any] = {
            "model": name,
            "version": st.version if st else None,
            "variant": st.variant if st else None,
            "store_up": store_up,
            "health": h.health(),
            "serving": {
                "predictions": h.predictions,
                "cached_predictions": h.cached_predictions,
                "errors": h.errors,
            },
            "cache": h.cache.stats(),
            "batching": h.batcher.stats(),
            "merged": merged,
            "local": local,
        }
        if local is not None:
            out["throughput"] = local["throughput"]
            out["latency"] = (merged or {}).get("latency") or local["latency"]
            acc = local["accuracy"]
            out["accuracy"] = {
                "realized": (merged or {}).get("realized_accuracy"),
                "realized_lower": (merged or {}).get("realized_accuracy_lower"),
                "realized_upper": (merged or {}).get("realized_accuracy_upper"),
                "realized_joined": (merged or {}).get("joined"),
                "realized_window": acc["realized"],
                "estimated": acc["estimated"],
                "estimated_lower": acc["estimated_lower"],
                "estimated_upper": acc["estimated_upper"],
                "estimated_n": acc["estimated_n"],
                "estimated_method": acc["estimated_method"],
            }
            out["drift"] = local["drift"]
            out["alerts"] = local["alerts"]["active"]
        out["shadow"] = h.shadow_stats()
        out["monitoring"] = h.monitoring_info()
        return out
