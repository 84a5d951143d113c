"""The shadow check: the original re-scores a sample of what a compact variant served.

While a compact variant serves, :class:`ShadowGuard` loads the original once per process (its
in-memory size is reported) and re-scores in batches, off the request path, a sample of the
served texts: every served prediction is sampled with probability ``shadow_rate`` (default
1%); the first 0.5% always, the rest only while the CPU budget (:class:`OverheadBudget`,
``shadow_budget`` times the model's time) allows. It counts label agreement, the difference of
the top-class probability and, where ground truth joins, both variants' realized accuracy.

When: once every ``shadow_interval_s`` (a tick) everything sampled since the last tick is
re-scored, then the guard's thread merges the counts and decides. One pass a tick rather than
one per 32 texts queued: a call on cold caches (the scorer's tables pushed out by serving since
its last pass) costs ~0.5 ms more than a hot one whatever its size (e-mail conversion: +42 us a
text in batches of 10, +5 us in batches of 100), so fewer, larger passes pay it less often.

Where: on the event loop that serves, between its batches. The thread asks it at each tick
(``call_soon_threadsafe``) and waits; the loop re-scores in steps of ~2 ms of CPU (as many texts
as the scorer's measured cost allows: ~40 on the e-mail model's conversion, 5 on its
scikit-learn original), and requests that arrived meanwhile go before the next step. Without an
event loop (the guard used on its own, as in tests) the thread re-scores, in predict calls of
at most 256 texts. Why not the thread: re-scoring beside the serving thread costs more than
the same re-scoring between its batches (GIL hand-overs; each side's tables pushed out of the
caches by the other). ``benchmarks/shadow_where.py``, in-process: the compact e-mail model
serving batches of 10, 10% of them re-scored by the conversion every 0.5 s: process CPU per
served text +16.3% with the thread re-scoring (the re-scoring itself 6.1 us a text, and the
serving thread 6% slower), +11.7% with the loop re-scoring (5.3 us).

What re-scores: the original's *lossless* conversion (:func:`leanml.compress.to_compact` with
the default recipe: the same features, float32 weights, no pruning), once it gave the original's
labels, and its probabilities within ``1e-4``, on the first 32 shadowed texts or more (the
first ticks' batches), which both score; otherwise (a model it cannot convert, or any
difference) the original itself. On the demo's e-mail model the conversion re-scores 5x
faster (71 against 370 us a text, batches of 32), with the same labels and probabilities within
6e-7 on 400 test e-mails.

Pausing (``PUT /v1/models/NAME/shadow``, admin): :meth:`ShadowGuard.pause` stops the sampling
and re-scoring in this process and releases the original and its conversion; the thread still
reads the decision row every tick, so a fallback decided elsewhere is followed.
:meth:`ShadowGuard.resume` loads the original again; the counts and the test carry on.

Across workers and hosts the counts go to the shared monitor store (one row per process), and
the decision is made on the merged counts by :class:`leanml._sequential.AgreementTest` (an
always-valid test: checked every ``shadow_interval_s`` without inflating its false-alarm rate).
A decision is a row of the store's ``shadow_state`` table, which every process reads: with
``fallback = "auto"`` each one switches the model to its original and reports the reason; the
alert history gets one ``shadow_agreement`` row. Switching back (``PUT /v1/models/NAME/variant``
with the admin token) starts a new epoch: fresh counts, a fresh test. The store side (the tables,
the merged counts, the figures and the decision as any reader sees them) is
:mod:`leanml.monitor.shadow`; ``shadow_tables``, ``read_decision`` and ``clear_fallback`` are
re-exported here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from leanml._intervals import wilson
from leanml._predict import predict_top
from leanml._sequential import AgreementTest
from leanml._sizing import deep_sizeof
from leanml.compress import to_compact
from leanml.config import ServingConfig
from leanml.monitor import MonitorStore
from leanml.monitor.budget import OverheadBudget
from leanml.monitor.shadow import (
    COUNTS,
    clear_fallback,
    default_threshold,
    fallback_reason,
    merged_counts,
    read_decision,
    shadow_figures,
    shadow_tables,
)
from leanml.registry import LoadedModel, ModelRegistry

__all__ = ["FLOOR_RATE", "ShadowGuard", "clear_fallback", "read_decision", "shadow_tables"]

_log = logging.getLogger("leanml.serving.shadow")

#: The share of served predictions always re-scored, whatever the budget.
FLOOR_RATE = 0.005
_CHECK = 32  # shadowed texts the lossless conversion must match before it re-scores alone
_BATCH = 256  # the most texts one predict call of the scorer takes (a tick's are chunked)
#: CPU seconds one re-scoring step on the event loop aims at (then waiting requests go first):
#: as many texts as the scorer's measured cost a text allows, at least one; 4 until measured
_STEP_S = 0.002
_QUEUE = 4096
_JOIN_MEMORY = 20_000  # shadowed ids remembered for the ground-truth join
_COUNTS = COUNTS  # the store schema: leanml.monitor.shadow


class ShadowGuard:
    """The shadow check of one served model in one process (see the module docstring).

    ``switch(variant, reason)`` is called from the guard's thread when every process must serve
    another variant: ``("original", reason)`` on a fallback, ``("compact", None)`` once the
    fallback was cleared elsewhere.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        config: ServingConfig,
        store: MonitorStore | None,
        switch: Callable[[str, str | None], None] | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.config = config
        self.store = store
        self.switch = switch
        self.rng = np.random.default_rng(seed)
        self.budget = OverheadBudget(config.shadow_budget)
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[str, str, Any, float]] = collections.deque(
            maxlen=_QUEUE
        )
        self._shadowed: collections.OrderedDict[str, tuple[Any, Any]] = collections.OrderedDict()
        self.version: int | None = None
        self.original: LoadedModel | None = None
        self.original_bytes: int | None = None
        #: what re-scores: the original, or its lossless conversion once checked (see above)
        self._scorer: Any = None
        self._candidate: Any = None  # the conversion, until checked on _CHECK texts
        self.scorer = "original"
        self.scorer_bytes: int | None = None
        self._checked = 0  # shadowed texts on which the conversion matched the original so far
        #: paused in this process (``PUT /v1/models/NAME/shadow``): nothing sampled or
        #: re-scored, the original released; decisions taken elsewhere are still followed
        self.paused = False
        self.threshold: float | None = None
        self.test: AgreementTest | None = None
        self.epoch = 0
        self.local = dict.fromkeys(_COUNTS, 0.0)
        self.merged = dict.fromkeys(_COUNTS, 0.0)
        self.diff_max = 0.0
        self.dropped = 0
        self.fallen_back = False
        self.reason: str | None = None
        self.serving_compact = False
        self._last_sync = 0.0
        self.thread_cpu_s = 0.0
        self.sync_cpu_s = 0.0  # of which merging counts through the store and deciding
        self.loop_cpu_s = 0.0  # re-scoring on the event loop
        #: the event loop that serves (seen in offer): it re-scores, asked by the thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scored = threading.Event()  # the loop re-scored what the thread asked for
        self._skip = self._gap()
        self._published: tuple[float, ...] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: set once the thread tried to load the original of the version it follows
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def follow(self, version: int, variant: str, requested: str) -> None:
        """The handle serves ``version``/``variant`` now (loop thread)."""
        self.serving_compact = variant == "compact"
        if requested != "compact":
            return
        if self.version != version:
            self.version = version
            self.original = None  # loaded on the guard's thread
            self.epoch, self.fallen_back, self.reason, self.test = 0, False, None, None
            self._loaded.clear()
            self._reset_counts()
            self._wake.set()  # load it now, not at the next tick
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"leanml-shadow-{self.name}", daemon=True
            )
            self._thread.start()

    def wait_loaded(self, timeout: float) -> bool:
        """Wait until the original of the followed version is loaded (or failed to load);
        whether it was, within ``timeout`` seconds. The server waits so at start: a load
        holds the GIL for seconds (~3 s for the e-mail model's skops file), which stalls the
        requests that arrive meanwhile."""
        return self._thread is None or self._loaded.wait(timeout)

    def pause(self) -> None:
        """Stop sampling and re-scoring in this process and release the original (its thread
        does, at once); a fallback decided by another process is still followed."""
        self.paused = True
        self._wake.set()

    def resume(self) -> None:
        """Sample and re-score again: the original loads again on the guard's thread (the
        counts and the test of the served version carry on)."""
        self.paused = False
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._scored.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _reset_counts(self) -> None:
        with self._lock:
            self.local = dict.fromkeys(_COUNTS, 0.0)
            self.merged = dict.fromkeys(_COUNTS, 0.0)
            self.diff_max = 0.0
            self._queue.clear()
            self._shadowed.clear()

    # ------------------------------------------------------------------ request path
    def _gap(self) -> int:
        """Predictions to skip before the next sampled one: geometric, so each prediction is
        sampled with probability ``shadow_rate`` independently, at one draw per sample."""
        rate = self.config.shadow_rate
        return 0 if rate >= 1 else int(self.rng.geometric(rate)) - 1

    def offer(
        self, texts: list[str], ids: list[str], labels: list[Any], confs: Any, model_s: float
    ) -> None:
        """A served batch (loop thread): sample it, queue the sample (a subtraction when none)."""
        if self.paused or not self.serving_compact or (self.fallen_back and self._auto()):
            # with fallback = "off" the compact serves on after an alarm: keep its figures live
            return
        n = len(texts)
        self.budget.credit(model_s)
        if n <= self._skip:  # the common case: one subtraction per batch
            self._skip -= n
            return
        picked: list[int] = []
        i = self._skip
        while i < n:
            picked.append(i)
            i += 1 + self._gap()
        self._skip = i - n
        rng, floor_share = self.rng, FLOOR_RATE / self.config.shadow_rate
        keep = [i for i in picked if rng.random() < floor_share]
        extra = [i for i in picked if i not in keep]
        self.budget.always(len(keep))
        if extra:  # until the first scored batch measures the cost, the queue bounds it
            allowed = self.budget.allowed(len(extra))
            keep += extra if self.budget.cost is None else extra[:allowed]
        if self._loop is None:
            with contextlib.suppress(RuntimeError):  # None outside an event loop
                self._loop = asyncio.get_running_loop()
        q = self._queue
        if len(q) + len(keep) > _QUEUE:
            self.dropped += len(q) + len(keep) - _QUEUE
        for i in keep:
            q.append((texts[i], ids[i], labels[i], float(confs[i])))

    def joined(self, rows: list[tuple[str, Any]]) -> None:
        """``(id, true label)`` pairs joined here (loop thread): realized accuracies."""
        if not self._shadowed:
            return
        with self._lock:
            for pid, truth in rows:
                pair = self._shadowed.pop(pid, None)
                if pair is None:
                    continue
                compact, original = pair
                self.local["joined"] += 1
                self.local["correct_compact"] += str(compact) == str(truth)
                self.local["correct_original"] += str(original) == str(truth)

    # ------------------------------------------------------------------ guard thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._until_due())
            self._wake.clear()
            try:
                if self.paused:
                    self._release()
                elif self.original is None and self.version is not None:
                    try:
                        self._load_original()
                    finally:
                        self._loaded.set()
                if self._until_due() <= 0:  # a tick: score what was sampled since, then decide
                    self._last_sync = time.monotonic()
                    if not self._score_on_loop():  # no event loop serves: this thread scores
                        for _ in range(-(-len(self._queue) // _BATCH)):  # none until loaded
                            self._score_batch()
                    t0 = time.thread_time()
                    if self.paused:
                        self._follow_store()
                    else:
                        self.sync()
                    self.sync_cpu_s += time.thread_time() - t0
            except Exception:
                _log.exception("shadow check of %s failed", self.name)
                self._stop.wait(1.0)
            self.thread_cpu_s = time.thread_time()  # everything this thread did, syncs too

    def _score_on_loop(self) -> bool:
        """Have the serving event loop re-score the queue (see the module docstring: on this
        thread the same texts cost more) and wait until it did, at most one interval; False
        when no event loop serves (none seen, stopped or closed)."""
        loop = self._loop
        if loop is not None and loop.is_closed():
            self._loop = loop = None  # the next offer from a running loop sets it again
        if loop is None or not loop.is_running():
            return False
        if not self._queue or self.original is None:
            return True
        self._scored.clear()
        try:
            loop.call_soon_threadsafe(self._loop_step)
        except RuntimeError:  # closed meanwhile: this thread scores
            self._loop = None
            return False
        self._scored.wait(timeout=self.config.shadow_interval_s)
        return True

    def _step(self) -> int:
        """Texts in the next re-scoring step on the loop: ~:data:`_STEP_S` of CPU at the
        scorer's measured cost (half as many while the conversion is checked beside it), so a
        slow original (a large forest, a long pipeline) blocks the loop no longer than a fast
        one; 4 before the first step measured it."""
        cost = self.budget.cost
        if not cost or cost <= 0:
            return 4
        n = int(_STEP_S / cost)
        return max(1, n // 2 if self._candidate is not None else n)

    def _loop_step(self) -> None:
        """On the event loop: re-score one step of the queue (:meth:`_step`), then let the
        requests that arrived meanwhile through before the next step."""
        t0 = time.thread_time()
        more = False
        try:
            more = self._score_batch(self._step()) > 0 and bool(self._queue)
            more = more and not self._stop.is_set()
        except Exception:  # as on the thread: logged, the rest waits for the next tick
            _log.exception("shadow check of %s failed", self.name)
        finally:
            self.loop_cpu_s += time.thread_time() - t0
        if more:
            asyncio.get_running_loop().call_soon(self._loop_step)
        else:
            self._scored.set()

    def _until_due(self) -> float:
        """Seconds to the next tick (0 when it is due)."""
        return max(0.0, self._last_sync + self.config.shadow_interval_s - time.monotonic())

    def _release(self) -> None:
        """Paused: drop the original, its conversion and what waits to be re-scored."""
        if self.original is None and not self._queue:
            return
        self.original = self._scorer = self._candidate = None
        self.original_bytes = self.scorer_bytes = None
        self.scorer = "original"
        self._queue.clear()
        _log.info("%s: shadow check paused in this process (original released)", self.name)

    def _load_original(self) -> None:
        version = self.version
        assert version is not None
        loaded = self.registry.load(self.name, version=version, variant="original")
        self.original = loaded
        self.original_bytes = deep_sizeof(loaded.model)
        self._scorer, self.scorer, self.scorer_bytes = loaded.model, "original", None
        self._checked = 0
        try:
            self._candidate = to_compact(loaded.model)[0]
        except Exception as exc:  # any model leanml cannot convert: the original scores
            self._candidate = None
            _log.info("%s: the shadow check scores with the original (%s)", self.name, exc)
        if self.test is not None:  # loaded again after a pause: the same test carries on
            return
        guard = None
        if self.config.shadow_threshold is None:
            try:
                guard = self.registry.manifest(self.name, version, "compact").extra.get("guard")
            except Exception:
                guard = None
        threshold = default_threshold(self.config.shadow_threshold, guard)
        self.threshold = threshold
        self.test = AgreementTest(threshold, self.config.shadow_alpha)
        _log.info(
            "%s: shadow check on (original v%s loaded, %d bytes; threshold %g)",
            self.name,
            version,
            self.original_bytes,
            threshold,
        )

    def _score_batch(self, size: int = _BATCH) -> int:
        """Re-score up to ``size`` queued texts and count them; how many (0: none queued, or
        no original loaded)."""
        original, model = self.original, self._scorer
        if original is None or model is None:
            return 0
        batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
        if not batch:
            return 0
        texts = [b[0] for b in batch]

        def work() -> tuple[Any, Any, Any]:
            top, conf, proba = predict_top(model, texts)
            return np.asarray(original.model.classes_)[top], conf, proba

        labels, conf, proba = self.budget.run(work, len(batch))
        if self._candidate is not None:
            self._check_candidate(texts, labels, proba)
        with self._lock:
            for (_, pid, label, c), olab, oconf in zip(batch, labels.tolist(), conf, strict=True):
                self.local["n"] += 1
                self.local["agree"] += str(label) == str(olab)
                d = abs(c - float(oconf))
                self.local["diff_sum"] += d
                self.diff_max = max(self.diff_max, d)
                self._shadowed[pid] = (label, olab)
            while len(self._shadowed) > _JOIN_MEMORY:
                self._shadowed.popitem(last=False)
        return len(batch)

    def _check_candidate(self, texts: list[str], labels: np.ndarray, proba: np.ndarray) -> None:
        """The lossless conversion scores what the original scores until it has matched it on
        :data:`_CHECK` texts (labels equal, probabilities within 1e-4), and re-scores from then
        on; at the first difference the original re-scores for good."""
        candidate = self._candidate
        try:
            top, _, p = predict_top(candidate, texts)
            same = bool(np.array_equal(np.asarray(candidate.classes_)[top], labels))
            diff = float(np.abs(np.asarray(p, dtype=np.float64) - proba).max()) if len(p) else 0.0
        except Exception as exc:
            same, diff = False, float("nan")
            _log.info("%s: the lossless conversion cannot score (%r)", self.name, exc)
        if same and diff <= 1e-4:
            self._checked += len(texts)
            if self._checked >= _CHECK:
                self._candidate = None
                self._scorer = candidate
                self.scorer = f"lossless conversion (checked on {self._checked})"
                self.scorer_bytes = deep_sizeof(candidate)
            return
        self._candidate = None
        _log.warning(
            "%s: the shadow check scores with the original: its lossless conversion differs "
            "on the first %d shadowed texts (labels %s, largest probability difference %.3g)",
            self.name,
            len(texts),
            "equal" if same else "differ",
            diff,
        )

    def sync(self) -> None:
        """Publish this process's counts, merge everyone's, decide, follow the decision."""
        if self.version is None or self.test is None:
            return
        if self.store is None:
            with self._lock:
                mine = dict(self.local)
            if not self.fallen_back and self._alarm(mine):
                self._follow(True, self._reason(mine), mine)
            else:
                with self._lock:
                    self.merged = mine
            return
        counts, state = shadow_tables(self.store)
        model, version = self.name, str(self.version)
        with self.store.engine.begin() as conn:
            row = conn.execute(
                sa.select(state).where(state.c.model == model, state.c.version == version)
            ).first()
            if row is None:
                conn.execute(
                    state.insert().values(
                        model=model,
                        version=version,
                        epoch=0,
                        fallen_back=0,
                        figures=json.dumps(  # for readers: what is tested, what a failure does
                            {"threshold": self.threshold, "fallback": self.config.fallback}
                        ),
                        ts=time.time(),
                    )
                )
                epoch, fallen, reason = 0, False, None
            else:
                epoch, fallen, reason = int(row.epoch), bool(row.fallen_back), row.reason
        if epoch != self.epoch:  # switched back elsewhere: fresh counts, fresh test
            self.epoch = epoch
            self._reset_counts()
            self.test.reset()
        with self._lock:
            mine = dict(self.local)
        proc = self.store.process_id
        key = (counts.c.model == model) & (counts.c.version == version) & (counts.c.epoch == epoch)
        mark = (epoch, *(mine[k] for k in _COUNTS))
        with self.store.engine.begin() as conn:
            if mark != self._published:  # nothing new here: only read the others' counts
                conn.execute(counts.delete().where(key & (counts.c.process == proc)))
                conn.execute(
                    counts.insert().values(
                        model=model,
                        version=version,
                        epoch=epoch,
                        process=proc,
                        updated_at=time.time(),
                        **{k: mine[k] for k in _COUNTS},
                    )
                )
                self._published = mark
            total = merged_counts(conn, counts, model, version, epoch)
        if not fallen and self._alarm(total):
            reason = self._reason(total)
            with self.store.engine.begin() as conn:
                res = conn.execute(
                    state.update()
                    .where(
                        state.c.model == model,
                        state.c.version == version,
                        state.c.epoch == epoch,
                        state.c.fallen_back == 0,
                    )
                    .values(fallen_back=1, reason=reason, ts=time.time())
                )
                won = res.rowcount == 1
            if won:  # one process records the alert
                self.store.write(
                    alerts=[
                        {
                            "ts": time.time(),
                            "model": model,
                            "variant": "compact",
                            "rule": "shadow_agreement",
                            "previous": "ok",
                            "level": "critical",
                            "value": _agreement(total),
                            "n": int(total["n"]),
                            "reason": reason
                            + ("; fell back to the original" if self._auto() else ""),
                        }
                    ]
                )
            fallen = True
        self._follow(fallen, reason, total)

    def _follow_store(self) -> None:
        """Paused: nothing to publish; read the decision row and follow it (a fallback decided
        by another process, or the switch back)."""
        if self.store is None or self.version is None:
            return
        _, state = shadow_tables(self.store)
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(state.c.fallen_back, state.c.reason).where(
                    state.c.model == self.name, state.c.version == str(self.version)
                )
            ).first()
        if row is not None:
            self._follow(bool(row.fallen_back), row.reason)

    def _auto(self) -> bool:
        return self.config.fallback == "auto"

    def _alarm(self, merged: dict[str, float]) -> bool:
        assert self.test is not None
        return self.test.update(int(merged["agree"]), int(merged["n"]))

    def _follow(
        self, fallen: bool, reason: str | None, merged: dict[str, float] | None = None
    ) -> None:
        """Take the decision (and the merged counts it was made on: a reader never sees counts
        that fired the test without the fallback they caused), then switch if it says so."""
        with self._lock:
            was = self.fallen_back
            self.fallen_back, self.reason = fallen, reason if fallen else None
            if merged is not None:
                self.merged = merged
        if not self._auto() or self.switch is None:
            return
        if fallen and (not was or self.serving_compact):
            self.switch("original", reason)
        elif not fallen and was:
            self.switch("compact", None)

    # ------------------------------------------------------------------ reading
    def agreement(self) -> float | None:
        return _agreement(self.merged)

    def _reason(self, merged: dict[str, float]) -> str:
        n = int(merged["n"])
        lo, hi = wilson(merged["agree"], n)
        agreement = _agreement(merged) or 0.0
        return fallback_reason(agreement, lo or 0.0, hi or 0.0, self.threshold or 0, n)

    def stats(self) -> dict[str, Any]:
        """Live figures with 95% Wilson intervals (merged across processes, and this one's)."""
        with self._lock:
            m, local = dict(self.merged), dict(self.local)
            fallen_back, reason = self.fallen_back, self.reason
        n, k = int(m["n"]), int(m["agree"])
        test = self.test.stats(k, n) if self.test is not None else None
        return {
            "enabled": True,
            "paused": self.paused,
            "active": self.serving_compact or fallen_back,
            "epoch": self.epoch,
            "rate": self.config.shadow_rate,
            "floor_rate": FLOOR_RATE,
            "threshold": self.threshold,
            **shadow_figures(m),  # shadowed, agreement, accuracies: each with its interval
            "proba_diff_max_local": self.diff_max,
            "local_shadowed": int(local["n"]),
            "queued": len(self._queue),
            "dropped": self.dropped,
            "original_memory_bytes": self.original_bytes,
            "scorer": self.scorer,
            "scorer_memory_bytes": self.scorer_bytes,
            "budget": self.budget.stats(),
            "thread_cpu_s": self.thread_cpu_s,
            "sync_cpu_s": self.sync_cpu_s,
            "loop_cpu_s": self.loop_cpu_s,
            "test": test,
            # the test fired (the store's decision); with fallback = "off" the compact serves on
            "alarm": fallen_back,
            "fallen_back": fallen_back and self._auto(),
            "fallback": self.config.fallback,
            "reason": reason,
        }


def _agreement(merged: dict[str, float]) -> float | None:
    n = merged["n"]
    return merged["agree"] / n if n else None
