"""ModelHandle: one served model in one process (no web code).

It owns the loaded model (the registry's :class:`~leanml.registry.LoadedModel`), a
:class:`~leanml.serving.cache.PredictionCache`, a :class:`~leanml.serving.batching.MicroBatcher`,
one :class:`~leanml.monitor.ModelMonitor` per (version, variant) it has served (its "monitor
code"), and one :class:`~leanml.groundtruth.GroundTruth` (the same ground-truth path as the
in-process wrapper) that issues unguessable prediction ids and holds each prediction's class,
confidence, time and monitor code in its ring until its label comes.

Threading: every method except :meth:`ModelHandle.load` runs on the event-loop thread; ``load``
reads the artifact (slow) anywhere and :meth:`ModelHandle.install` swaps it in on the loop thread,
so a batch never sees half a switch. A batch predicted by the old model is answered (and
monitored) as the old model's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from leanml._native import take_at
from leanml._predict import predict_top, predict_with_confidence
from leanml._text import oov_inputs
from leanml.config import ServingConfig
from leanml.errors import ServingError
from leanml.groundtruth import GroundTruth, Joined
from leanml.monitor import ModelMonitor, MonitorConfig, MonitorStore
from leanml.registry import LoadedModel, ModelRegistry
from leanml.serving.batching import MicroBatcher
from leanml.serving.cache import PredictionCache
from leanml.serving.shadow import ShadowGuard

__all__ = ["ModelHandle", "ServedState"]

_log = logging.getLogger("leanml.serving")
#: the handle times its ``record_batch`` call on one batch in this many (a power of two)
_TIME_EVERY = 64
_TIME_MASK = _TIME_EVERY - 1


@dataclasses.dataclass(eq=False)
class ServedState:
    """What is served right now: the model, its monitor and its monitor code."""

    loaded: LoadedModel
    monitor: ModelMonitor | None
    code: int
    classes: list[Any]
    generation: int
    class_index: dict[Any, int] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.class_index = {c: i for i, c in enumerate(self.classes)}

    @property
    def version(self) -> int:
        return self.loaded.version

    @property
    def variant(self) -> str:
        return self.loaded.variant


class ModelHandle:
    """One served model (see module docstring)."""

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        *,
        config: ServingConfig,
        monitor_config: MonitorConfig | None = None,
        store: MonitorStore | None = None,
        ground_truth: GroundTruth | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.config = config
        self.monitor_config = monitor_config or MonitorConfig()
        self.store = store
        mc = self.monitor_config
        self.ground_truth = ground_truth or GroundTruth(
            mc.pending_max_entries, mc.pending_max_age_s
        )
        self.cache = PredictionCache(
            config.cache_max_entries,
            config.cache_max_bytes,
            config.cache_ttl_s,
            config.cache_normalize,
        )
        self.batcher = MicroBatcher(
            self._predict_batch,
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            pass_starts=True,
        )
        self.monitors: list[ModelMonitor | None] = []  # index: the monitor code
        self.code_classes: list[list[Any]] = []  # the classes each monitor code predicts
        self.code_served: list[tuple[str, str]] = []  # (version, variant) of each monitor code
        self.state: ServedState | None = None
        #: held (on the loop) by whatever changes what is served (an admin switch, a reload, the
        #: shadow check's decision, the registry watcher) from reading what to serve to
        #: installing it: a slow load begun on an older choice never installs over a newer one
        self.switching = asyncio.Lock()
        self.cached_predictions = 0
        self._monitored_batches = 0
        #: monitoring paused by the admin API (PUT /v1/models/NAME/monitoring) in this process,
        #: and the predictions served unrecorded meanwhile
        self.monitoring_paused = False
        self.unmonitored = 0
        self.predictions = 0
        self.errors = 0
        self.loaded_at = 0.0
        self.shadow: ShadowGuard | None = (
            ShadowGuard(registry, name, config, store) if config.shadow == "on" else None
        )

    # ------------------------------------------------------------------ loading
    def load(self, variant: str | None = None, version: int | None = None) -> LoadedModel:
        """Read the model from the registry and check it predicts (slow; any thread).

        A compact variant that loads but fails a warm-up prediction (single row and batch) is
        not served: the original is loaded instead and the reason recorded, as the registry
        does for a missing or corrupt compact variant.
        """
        loaded = self.registry.load(self.name, version=version, variant=variant)
        try:
            self._check(loaded)
        except Exception as exc:
            if loaded.variant != "compact":
                raise ServingError(f"model {self.name!r} cannot predict: {exc!r}") from exc
            reason = f"compact variant failed its warm-up prediction: {exc!r}"
            _log.warning("model %s: serving the original: %s", self.name, reason)
            loaded = self.registry.load(self.name, version=loaded.version, variant="original")
            loaded.requested_variant = "compact"
            loaded.fallback_reason = reason
            self._check(loaded)
        return loaded

    def _check(self, loaded: LoadedModel) -> None:
        # the long text takes a compact text model's batch tokenizer (built on first use) past
        # its size threshold, the "é" its Unicode table: both built here, not in a request
        texts = ["warm up the model", "hello world, this is a test message é " * 40]
        for _ in range(max(1, self.config.warmup // 2)):
            for batch in (texts[:1], texts):
                _, conf, proba = predict_with_confidence(loaded.model, batch)
                if proba.shape != (len(batch), len(loaded.model.classes_)):
                    raise ServingError(f"predict_proba returned shape {proba.shape}")
                fused = getattr(loaded.model, "predict_fused", None)
                if fused is not None:  # what the batcher calls (see _predict_batch)
                    proba = fused(batch, True)[2]
                    if proba.shape != (len(batch), len(loaded.model.classes_)):
                        raise ServingError(f"predict_fused returned shape {proba.shape}")

    def default_variant(self) -> str:
        if self.config.variant != "auto":
            return self.config.variant
        chosen = self.registry.chosen_variant(self.name)
        if chosen is not None:
            return chosen
        return "compact" if "compact" in self.registry.variants(self.name) else "original"

    def install(self, loaded: LoadedModel) -> ServedState:
        """Serve ``loaded`` from now on (loop thread); invalidates the cache."""
        old = self.state
        served = (str(loaded.version), loaded.variant)
        if old is not None and (old.version, old.variant) == (loaded.version, loaded.variant):
            monitor, code = old.monitor, old.code
        elif served in self.code_served:  # switched back: the same monitor counts on (a second
            code = self.code_served.index(served)  # one would overwrite its window rows)
            monitor = self.monitors[code]
        else:
            monitor = self._make_monitor(loaded)
            self.monitors.append(monitor)
            code = len(self.monitors) - 1
            self.code_classes.append(list(np.asarray(loaded.model.classes_).tolist()))
            self.code_served.append((str(loaded.version), loaded.variant))
            if monitor is not None:
                monitor.ground_truth, monitor.ground_truth_code = self.ground_truth, code
        if monitor is not None:
            monitor.set_paused(self.monitoring_paused)
        self.cache.invalidate()
        self.state = ServedState(
            loaded, monitor, code, self.code_classes[code], self.cache.generation
        )
        self.loaded_at = time.time()
        if self.shadow is not None:
            self.shadow.follow(loaded.version, loaded.variant, loaded.requested_variant)
        return self.state

    def _make_monitor(self, loaded: LoadedModel) -> ModelMonitor | None:
        if not self.config.monitoring:
            return None
        reference = loaded.manifest.extra.get("reference")
        model = loaded.model
        # a compact text model counts its tokens in its one pass; another pipeline's sampled
        # inputs are tokenized again, within monitor.overhead_budget
        text = {} if hasattr(model, "predict_fused") else oov_inputs(model)
        return ModelMonitor(
            self.name,
            version=str(loaded.version),
            variant=loaded.variant,
            config=self.monitor_config,  # labels come joined, by self.ground_truth
            store=self.store,
            reference=reference,
            **text,
        )

    # ------------------------------------------------------------------ predicting
    def _predict_batch(
        self, texts: list[str], starts: np.ndarray | None = None
    ) -> tuple[ServedState, list[Any], list[float], Any, list[str]]:
        """Predict one micro-batch, issue its ids and monitor it with one ``record_batch``.

        A compact text model predicts in one pass (``predict_fused``): probabilities plus each
        text's word-token and known-token counts, which the monitor scores out-of-vocabulary
        drift from without tokenizing the texts again."""
        state = self.state
        if state is None:
            raise ServingError(f"model {self.name!r} is not loaded yet")
        shadow = self.shadow
        model = state.loaded.model
        fused = getattr(model, "predict_fused", None)  # compact text models: one pass
        counts = None
        t_model = time.perf_counter()
        if fused is not None:
            top, confidences_a, proba, counts = fused(texts, True)
        else:
            top, confidences_a, proba = predict_top(model, texts)
        model_s = time.perf_counter() - t_model
        # the class objects themselves (hot, their hashes cached), not new strings: the response
        # and the monitor's label lookups share them
        labels = take_at(state.classes, top.astype(np.int64, copy=False))
        confs = confidences_a.tolist()
        ids = self.ground_truth.issue(len(texts), state.code, top, confidences_a)
        if shadow is not None and shadow.serving_compact and state.variant == "compact":
            shadow.offer(texts, ids, labels, confidences_a, model_s)
        mon = self._recording(state, len(texts))
        if mon is not None:
            latency = time.perf_counter() - starts if starts is not None else 0.0
            batches = self._monitored_batches = self._monitored_batches + 1
            if batches & _TIME_MASK:
                mon.record_batch(ids, labels, confs, latency, texts, counts, model_s)
            else:  # one batch in _TIME_EVERY times the caller's share of the monitor's cost
                t1 = time.perf_counter_ns()
                mon.record_batch(ids, labels, confs, latency, texts, counts, model_s)
                mon.note_caller_cost(time.perf_counter_ns() - t1, _TIME_EVERY)
        return state, labels, confs, proba, ids

    def _recording(self, state: ServedState, n: int) -> ModelMonitor | None:
        """The monitor that records these ``n`` predictions; None when monitoring is off, or
        paused (then they count in ``unmonitored``)."""
        if self.monitoring_paused:
            self.unmonitored += n
            return None
        return state.monitor

    def pause_monitoring(self, paused: bool) -> bool:
        """Pause or resume the recording of this model's predictions in this process (ids
        are still issued and labels still join); False when this server runs without
        monitoring."""
        if not self.config.monitoring:
            return False
        self.monitoring_paused = paused
        for m in self.monitor_list():
            m.set_paused(paused)
        return True

    def monitoring_info(self) -> dict[str, Any]:
        """``state``: on, paused or off (this server's configuration), and ``unmonitored``: the
        predictions served while it was paused."""
        state = "paused" if self.monitoring_paused else "on"
        return {
            "state": state if self.config.monitoring else "off",
            "unmonitored": self.unmonitored,
        }

    def cache_keys(self, texts: Sequence[str]) -> list[bytes] | None:
        """The prediction-cache keys of ``texts`` (None when the cache is off)."""
        cache = self.cache
        if not cache.enabled:
            return None
        key = cache.key
        return [key(t) for t in texts]

    def predict_cached(
        self, texts: Sequence[str], want_proba: bool, t0: float, keys: list[bytes]
    ) -> tuple[ServedState, list[dict[str, Any]]] | None:
        """Answer ``texts`` from the cache alone (monitored, with new ids), or None.

        None when a text is not cached or nothing is served yet; then nothing was counted
        and :meth:`predict` does the whole job.
        """
        state = self.state
        if state is None:
            return None
        hits = self.cache.get_all(keys)
        if hits is None:
            return None
        out: list[dict[str, Any]] = [{} for _ in texts]
        self._answer_hits(state, texts, want_proba, t0, list(range(len(texts))), hits, out)
        self.predictions += len(texts)
        return state, out

    async def predict(
        self,
        texts: Sequence[str],
        want_proba: bool,
        t0: float,
        keys: list[bytes] | None = None,
    ) -> tuple[ServedState, list[dict[str, Any]]]:
        """Predict ``texts`` through the cache and the batcher; monitor every prediction.

        ``t0`` is the request's ``perf_counter()`` at arrival (latency is measured from it);
        ``keys`` are the texts' :meth:`cache_keys` when the caller has them already.
        """
        cache = self.cache
        use_cache = cache.enabled
        n = len(texts)
        hits: list[Any] = [None] * n
        miss_idx: list[int] = []
        if use_cache:
            if keys is None:
                keys = self.cache_keys(texts) or []
            get = cache.get
            for i, k in enumerate(keys):
                e = get(k)
                if e is None:
                    miss_idx.append(i)
                else:
                    hits[i] = e
        else:
            miss_idx = list(range(n))
        state = self.state
        if state is None:
            raise ServingError(f"model {self.name!r} is not loaded yet")
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        if miss_idx:
            miss_texts = [texts[i] for i in miss_idx] if len(miss_idx) < n else list(texts)
            try:
                result, a, b, _wait = await self.batcher.submit(miss_texts, t0)
            except Exception:
                self.errors += len(miss_idx)
                mon = self._recording(state, 0)
                if mon is not None:
                    mon.record_error(len(miss_idx))
                raise
            state, labels, confs, proba, ids = result  # issued and monitored per batch
            labels, confs, ids = labels[a:b], confs[a:b], ids[a:b]
            rows = proba[a:b]
            put = cache.put if use_cache and state.generation == cache.generation else None
            classes = state.classes
            for j, i in enumerate(miss_idx):
                item: dict[str, Any] = {"id": ids[j], "label": labels[j], "confidence": confs[j]}
                if want_proba:
                    item["probabilities"] = dict(zip(classes, rows[j].tolist(), strict=True))
                out[i] = item
                if put is not None and keys is not None:
                    put(keys[i], labels[j], confs[j], rows[j].copy())
        if len(miss_idx) < n:
            hit_idx = [i for i in range(n) if hits[i] is not None]
            self._answer_hits(
                state, texts, want_proba, t0, hit_idx, [hits[i] for i in hit_idx], out
            )
        self.predictions += n
        return state, out

    def _answer_hits(
        self,
        state: ServedState,
        texts: Sequence[str],
        want_proba: bool,
        t0: float,
        hit_idx: list[int],
        entries: list[Any],
        out: list[dict[str, Any]],
    ) -> None:
        """Fill ``out[i]`` for cache hits: new ids, one monitored prediction each."""
        index = state.class_index
        ids = self.ground_truth.issue(
            len(hit_idx), state.code, [index[e[0]] for e in entries], [e[1] for e in entries]
        )
        latency = time.perf_counter() - t0
        mon = self._recording(state, len(hit_idx))
        classes = state.classes
        for j, i in enumerate(hit_idx):
            label, conf, row, _, _ = entries[j]
            if mon is not None:
                mon.record(ids[j], label, conf, latency, texts[i])
            item = {"id": ids[j], "label": label, "confidence": conf, "cached": True}
            if want_proba:
                item["probabilities"] = dict(zip(classes, row.tolist(), strict=True))
            out[i] = item
        self.cached_predictions += len(hit_idx)

    # ------------------------------------------------------------------ feedback
    def join_feedback(self, items: Sequence[tuple[str, Any]]) -> tuple[list[str], list[Joined]]:
        """Join ``(id, true label)`` items in the ring (loop thread): each item's outcome
        (``joined``, ``duplicate``, ``evicted``, ``expired``, ``never_seen`` for a malformed or
        forged id, ``foreign`` for another process's prefix) and the joined ones. Store the
        joined ones (:meth:`log_rows`), then :meth:`count_joined` them; or ``give_back``."""
        return self.ground_truth.join(items)

    def predicted(self, j: Joined) -> Any:
        """The class a joined prediction predicted."""
        return self.code_classes[j.code][j.pred]

    def prediction_fields(self, j: Joined) -> dict[str, Any]:
        """What the durable log keeps of a joined label's prediction."""
        version, variant = self.code_served[j.code]
        return {
            "predicted": str(self.predicted(j)),
            "predicted_index": j.pred,
            "confidence": None if math.isnan(j.confidence) else j.confidence,
            "pred_ts": j.pred_ts,
            "variant": variant,
            "version": version,
        }

    def log_rows(self, joined: Sequence[Joined]) -> list[dict[str, Any]]:
        """Durable-log rows of labels joined here."""
        prefix = self.ground_truth.prefix
        return [
            {
                "prediction_id": j.id,
                "model": self.name,
                "label": str(j.label),
                "owner": prefix,
                "status": "joined",
                **self.prediction_fields(j),
            }
            for j in joined
        ]

    def count_joined(self, joined: Sequence[Joined]) -> None:
        """Hand stored joined labels to the monitor of the code that predicted them."""
        if self.shadow is not None:
            self.shadow.joined([(j.id, j.label) for j in joined])
        by_code: dict[int, list[Joined]] = {}
        for j in joined:
            by_code.setdefault(j.code, []).append(j)
        for code, rows in by_code.items():
            mon = self.monitors[code]
            if mon is not None:
                # feedback labels are strings: the class they name, for int or bool classes too
                names = {str(c): c for c in self.code_classes[code]}
                mon.record_joined(
                    [j.id for j in rows],
                    [names.get(j.label, j.label) for j in rows],
                    [self.predicted(j) for j in rows],
                    [j.confidence for j in rows],
                    [j.pred_ts for j in rows],
                )

    # ------------------------------------------------------------------ reading
    def info(self) -> dict[str, Any]:
        st = self.state
        return {
            "name": self.name,
            "version": st.version if st else None,
            "variant": st.variant if st else None,
            "requested_variant": st.loaded.requested_variant if st else None,
            "fallback_reason": st.loaded.fallback_reason if st else None,
            "classes": st.classes if st else [],
            "load_seconds": round(st.loaded.load_seconds, 4) if st else None,
            "task": st.loaded.manifest.task if st else None,
            "shadow": self.shadow_stats(),
            "monitoring": self.monitoring_info(),
        }

    def shadow_stats(self) -> dict[str, Any] | None:
        """The shadow check's live figures, or None when it is off or never ran here."""
        sh = self.shadow
        if sh is None or sh.version is None:
            return None
        return sh.stats()

    def load_for_shadow(self, variant: str, reason: str | None) -> LoadedModel:
        """What the shadow check's decision serves (any thread): the original of the served
        version with ``reason`` recorded, or its compact variant again."""
        st = self.state
        version = st.version if st is not None else None
        if variant == "original":
            loaded = self.registry.load(self.name, version=version, variant="original")
            loaded.requested_variant = "compact"
            loaded.fallback_reason = reason
            return loaded
        return self.load("compact", version=version)

    def monitor_list(self) -> list[ModelMonitor]:
        return [m for m in self.monitors if m is not None]

    def health(self) -> str:
        st = self.state
        if st is None:
            return "loading"
        return st.monitor.health() if st.monitor is not None else "healthy"

    def flush(self) -> None:
        for m in self.monitor_list():
            m.flush()

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        for m in self.monitor_list():
            m.close()
