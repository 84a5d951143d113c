"""ModelHandle: one served model in one process (no web code).

It owns the loaded model (the registry's :class:`~leanml.registry.LoadedModel`), a
:class:`~leanml.serving.cache.PredictionCache`, a :class:`~leanml.serving.batching.MicroBatcher`,
one :class:`~leanml.monitor.ModelMonitor` per (version, variant) it has served, and an
:class:`IdSpace` that issues prediction ids and remembers enough about each to answer feedback.

Threading: every method except :meth:`ModelHandle.load` runs on the event-loop thread; ``load``
reads the artifact (slow) anywhere and :meth:`ModelHandle.install` swaps it in on the loop thread,
so a batch never sees half a switch. A batch predicted by the old model is answered (and
monitored) as the old model's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from leanml._predict import predict_top, predict_with_confidence
from leanml.config import ServingConfig
from leanml.errors import ServingError
from leanml.monitor import ModelMonitor, MonitorConfig, MonitorStore
from leanml.registry import LoadedModel, ModelRegistry
from leanml.serving.batching import MicroBatcher
from leanml.serving.cache import PredictionCache

__all__ = ["IdSpace", "ModelHandle", "ServedState", "parse_id"]

_PENDING, _LABELED = 1, 2
_log = logging.getLogger("leanml.serving")


def parse_id(prediction_id: Any) -> tuple[str, int] | None:
    """``"<prefix>-<hex counter>"`` -> (prefix, counter), or None when malformed."""
    if not isinstance(prediction_id, str) or len(prediction_id) > 64:
        return None
    prefix, sep, tail = prediction_id.rpartition("-")
    if not sep or not prefix or not tail:
        return None
    try:
        return prefix, int(tail, 16)
    except ValueError:
        return None


class IdSpace:
    """Prediction ids ``<prefix>-<hex counter>`` and the last ``capacity`` predictions.

    This is the server's pending-join table: a ring indexed by the id's counter holding each
    prediction's time, class index, confidence and monitor code (numpy arrays: no id string or
    dict entry lives on, which kept the monitor's own table of 100k ids from slowing the event
    loop). It uses the monitor's pending-join bounds (entries and age), so it can say why a
    feedback id cannot be joined: ``never_seen`` (not issued here), ``evicted`` (more than
    ``capacity`` newer predictions since), ``expired`` (older than ``max_age_s``) or
    ``duplicate`` (already labeled). Costs a few slice assignments per issued batch.
    """

    def __init__(
        self,
        prefix: str | None = None,
        capacity: int = 100_000,
        max_age_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix or secrets.token_hex(4)
        self.capacity = int(capacity)
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self.issued = 0
        self._ts = np.zeros(self.capacity, dtype=np.float64)
        self._state = np.zeros(self.capacity, dtype=np.int8)
        self._code = np.zeros(self.capacity, dtype=np.int16)
        self._pred = np.zeros(self.capacity, dtype=np.int32)  # index into the served classes
        self._conf = np.zeros(self.capacity, dtype=np.float64)
        self._fmt = (self.prefix + "-%x").__mod__

    def issue(self, n: int, code: int, pred: Any = 0, conf: Any = math.nan) -> list[str]:
        """``n`` new ids for predictions of class indices ``pred`` with confidences ``conf``
        (arrays of ``n``, or one value for all) by the monitor ``code``."""
        start = self.issued
        self.issued = start + n
        cap = self.capacity
        now = self._clock()
        if n == 1:
            i = start % cap
            self._ts[i] = now
            self._state[i] = _PENDING
            self._code[i] = code
            many = (list, tuple, np.ndarray)  # isinstance: np.ndim would build an array
            self._pred[i] = pred[0] if isinstance(pred, many) else pred
            self._conf[i] = conf[0] if isinstance(conf, many) else conf
            return [self._fmt(start)]
        pred = np.broadcast_to(pred, (n,))
        conf = np.broadcast_to(conf, (n,))
        for a in range(start, start + n, cap):
            b = min(start + n, a + cap)
            i, j = a % cap, (b - 1) % cap + 1
            if j <= i:  # wraps around the ring
                k = a - start + cap - i
                self._mark(i, cap, now, code, pred[a - start : k], conf[a - start : k])
                self._mark(0, j, now, code, pred[k : b - start], conf[k : b - start])
            else:
                lo, hi = a - start, b - start
                self._mark(i, j, now, code, pred[lo:hi], conf[lo:hi])
        fmt = self._fmt
        return [fmt(c) for c in range(start, start + n)]

    def _mark(
        self, i: int, j: int, now: float, code: int, pred: np.ndarray, conf: np.ndarray
    ) -> None:
        self._ts[i:j] = now
        self._state[i:j] = _PENDING
        self._code[i:j] = code
        self._pred[i:j] = pred
        self._conf[i:j] = conf

    def prediction(self, counter: int) -> tuple[int, float, float]:
        """(class index, confidence, time) of a prediction still in the ring."""
        i = counter % self.capacity
        return int(self._pred[i]), float(self._conf[i]), float(self._ts[i])

    def pending(self, code: int) -> int:
        """How many predictions of monitor ``code`` wait for a label (not expired)."""
        live = min(self.issued, self.capacity)
        cutoff = self._clock() - self.max_age_s
        return int(
            np.count_nonzero(
                (self._state[:live] == _PENDING)
                & (self._code[:live] == code)
                & (self._ts[:live] >= cutoff)
            )
        )

    def status(self, counter: int) -> tuple[str, int]:
        """(status, monitor code) of an id's counter; status ``pending`` means joinable."""
        if counter < 0 or counter >= self.issued:
            return "never_seen", -1
        if counter < self.issued - self.capacity:
            return "evicted", -1
        i = counter % self.capacity
        if self._clock() - self._ts[i] > self.max_age_s:
            return "expired", -1
        if self._state[i] == _LABELED:
            return "duplicate", int(self._code[i])
        return "pending", int(self._code[i])

    def mark_labeled(self, counter: int) -> None:
        self._state[counter % self.capacity] = _LABELED


@dataclasses.dataclass(eq=False)
class ServedState:
    """What is served right now: the model, its monitor and its monitor code."""

    loaded: LoadedModel
    monitor: ModelMonitor | None
    code: int
    classes: list[Any]
    generation: int
    class_index: dict[Any, int] = dataclasses.field(init=False)
    classes_array: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.classes_array = np.asarray(self.loaded.model.classes_)

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
        id_prefix: str | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.config = config
        self.monitor_config = monitor_config or MonitorConfig()
        self.store = store
        mc = self.monitor_config
        self.ids = IdSpace(id_prefix, mc.pending_max_entries, mc.pending_max_age_s)
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
        self.state: ServedState | None = None
        self.cached_predictions = 0
        self.predictions = 0
        self.errors = 0
        self.loaded_at = 0.0

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
        texts = ["warm up the model", "hello world, this is a test message"]
        for _ in range(max(1, self.config.warmup // 2)):
            for batch in (texts[:1], texts):
                _, conf, proba = predict_with_confidence(loaded.model, batch)
                if proba.shape != (len(batch), len(loaded.model.classes_)):
                    raise ServingError(f"predict_proba returned shape {proba.shape}")

    def default_variant(self) -> str:
        if self.config.variant != "auto":
            return self.config.variant
        if (self.registry.root / self.name / "state.json").is_file():
            return self.registry.active_variant(self.name)
        return "compact" if "compact" in self.registry.variants(self.name) else "original"

    def install(self, loaded: LoadedModel) -> ServedState:
        """Serve ``loaded`` from now on (loop thread); invalidates the cache."""
        old = self.state
        if old is not None and (old.version, old.variant) == (loaded.version, loaded.variant):
            monitor, code = old.monitor, old.code
        else:
            monitor = self._make_monitor(loaded)
            self.monitors.append(monitor)
            code = len(self.monitors) - 1
            self.code_classes.append(list(np.asarray(loaded.model.classes_).tolist()))
            if monitor is not None:
                monitor.pending_count = lambda: self.ids.pending(code)
        self.cache.invalidate()
        self.state = ServedState(
            loaded, monitor, code, self.code_classes[code], self.cache.generation
        )
        self.loaded_at = time.time()
        return self.state

    def _make_monitor(self, loaded: LoadedModel) -> ModelMonitor | None:
        if not self.config.monitoring:
            return None
        reference = loaded.manifest.extra.get("reference")
        return ModelMonitor(
            self.name,
            version=str(loaded.version),
            variant=loaded.variant,
            # feedback is joined here, in the id space, and across processes by the FeedbackLog
            config=dataclasses.replace(
                self.monitor_config, pending_join=False, forward_unknown_ground_truth=False
            ),
            store=self.store,
            reference=reference,
        )

    # ------------------------------------------------------------------ predicting
    def _predict_batch(
        self, texts: list[str], starts: np.ndarray | None = None
    ) -> tuple[ServedState, list[Any], list[float], Any, list[str]]:
        """Predict one micro-batch, issue its ids and monitor it with one ``record_batch``."""
        state = self.state
        if state is None:
            raise ServingError(f"model {self.name!r} is not loaded yet")
        top, confidences_a, proba = predict_top(state.loaded.model, texts)
        labels, confs = state.classes_array[top].tolist(), confidences_a.tolist()
        ids = self.ids.issue(len(texts), state.code, top, confidences_a)
        mon = state.monitor
        if mon is not None:
            latency = time.perf_counter() - starts if starts is not None else 0.0
            mon.record_batch(ids, labels, confs, latency, texts)
        return state, labels, confs, proba, ids

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
                if state.monitor is not None:
                    state.monitor.record_error(len(miss_idx))
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
        ids = self.ids.issue(
            len(hit_idx), state.code, [index[e[0]] for e in entries], [e[1] for e in entries]
        )
        latency = time.perf_counter() - t0
        mon = state.monitor
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
    def feedback_status(self, prediction_id: Any) -> tuple[str, int]:
        """(status, monitor code) for an id this process issued; ``foreign`` otherwise."""
        return self._lookup(prediction_id)[:2]

    def _lookup(self, prediction_id: Any) -> tuple[str, int, int]:
        """(status, monitor code, counter) of an id; the counter is -1 when not ours."""
        parsed = parse_id(prediction_id)
        if parsed is None:
            return "never_seen", -1, -1
        prefix, counter = parsed
        if prefix != self.ids.prefix:
            return "foreign", -1, -1
        return (*self.ids.status(counter), counter)

    def record_feedback(self, items: Sequence[tuple[str, Any]]) -> list[str]:
        """Join ``(id, true label)`` items to their predictions (loop thread).

        Returns each item's outcome: ``joined``, or the :meth:`feedback_status` that stopped it
        (``duplicate`` when another request labeled the id first, ``evicted`` or ``expired``
        when it left the id space meanwhile, ``never_seen`` / ``foreign``).
        """
        out: list[str] = []
        by_code: dict[int, list[tuple[str, Any, Any, float, float]]] = {}
        ids = self.ids
        for pid, label in items:
            status, code, counter = self._lookup(pid)
            out.append("joined" if status == "pending" else status)
            if status != "pending":
                continue
            ids.mark_labeled(counter)
            pred, conf, ts = ids.prediction(counter)
            row = (pid, label, self.code_classes[code][pred], conf, ts)
            by_code.setdefault(code, []).append(row)
        for code, rows in by_code.items():
            mon = self.monitors[code]
            if mon is not None:
                pids, labels, preds, confs, pred_ts = zip(*rows, strict=True)
                mon.record_joined(pids, labels, preds, confs, pred_ts)
        return out

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
            "id_prefix": self.ids.prefix,
        }

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
        for m in self.monitor_list():
            m.close()
