"""The flusher's step: everything that must stay off the prediction path, in order.

One :func:`step` drains the intake buffers (:mod:`~leanml.monitor._ingest`,
:mod:`~leanml.monitor._truth`), then does the work that is due: expiring the time window,
scoring closed windows and evaluating alerts (:mod:`~leanml.monitor._windows`),
sampling resources, collecting rows for the store (every ``store_interval_s``, or sooner when
the sampled-detail queue is half full); then, outside the state's lock, writes the
store, applies retention and lets the idle collector run. A step run by a recording thread
(``flush_on_record``) leaves those three to the flusher thread.
"""

from __future__ import annotations

import logging
import math
from time import thread_time_ns

from leanml.monitor._ingest import drain_errors, drain_records
from leanml.monitor._state import MonitorState
from leanml.monitor._truth import drain_ground_truth
from leanml.monitor._windows import (
    collect_rows,
    evaluate_alerts,
    evict_windows,
    score_closed_windows,
    write_rows,
)

__all__ = ["step"]

logger = logging.getLogger("leanml.monitor")


def step(st: MonitorState, force: bool, here: bool = False) -> bool | None:
    """One flusher step; returns whether buffered records remain (backlog). Its CPU time (the
    running thread's) counts in ``st.flusher_cpu_ns``: the monitor's own cost.

    ``here``: a thread that records (or reads) runs it (``flush_on_record``): it skips the step
    (None) while another thread steps, never pauses (the pauses are for such threads) and
    does no store I/O: the rows it collects wait in ``st.unwritten`` for the flusher thread
    (a store that is down would otherwise hold a prediction), which also applies retention
    and runs the idle collector."""
    if not st.io_lock.acquire(not here):
        return None
    t0 = thread_time_ns()
    try:
        return _step(st, force, here)
    finally:
        st.flusher_cpu_ns += thread_time_ns() - t0
        st.io_lock.release()


def _step(st: MonitorState, force: bool, here: bool) -> bool:
    if not here and st.unwritten is not None:  # collected by a step on a recording thread
        unwritten, st.unwritten = st.unwritten, None
        _write(st, unwritten, st.clock())
    with st.lock:
        st.pace.start(pausing=not (here or force), budget_s=st.config.flush_interval_s / 4)
        now = st.clock()
        busy = _drain(st, force)
        st.pace()
        rows = _due_work(st, now, force, collect=st.unwritten is None)
        evict_windows(st)
        st.counters["flushes"] += 1
    if rows is not None and st.store is not None:
        if here:
            st.unwritten = rows
        else:
            _write(st, rows, now)
    if not here:
        _retention(st, now)
    if st.gc is not None:
        if busy:
            st.gc.activity(now)
        elif not here:
            st.gc.maybe_collect(now)
    return bool(st.buf or st.bbuf or st.gt)


def _write(st: MonitorState, rows: dict[str, list], now: float) -> None:
    if st.store is None:
        return
    st.pace()
    errors = st.counters["store_errors"]
    write_rows(st, st.store, rows)
    if st.counters["store_errors"] != errors:  # a failing store: no early writes
        st.due["early_store"] = now + st.config.store_interval_s


def _drain(st: MonitorState, force: bool) -> bool:
    """At most ``flush_batch_size`` records per round; forced: as many rounds as the backlog
    seen now needs. Whether there was anything to do."""
    backlog = len(st.buf) + sum(len(b[0]) for b in list(st.bbuf)) + len(st.gt)
    rounds = 1 + backlog // st.config.flush_batch_size if force else 1
    busy = False
    for _ in range(rounds):
        busy = drain_records(st) or busy
        if st.err:
            drain_errors(st)
        busy = drain_ground_truth(st) or busy
    return busy


def _due_work(
    st: MonitorState, now: float, force: bool, collect: bool = True
) -> dict[str, list] | None:
    """Expiry, drift of closed windows, alerts, resources; the store rows when a write is due
    (and ``collect``: none wait unwritten)."""
    cfg, due = st.config, st.due
    if force or now >= due.get("expire", 0.0):
        st.time_window.expire(now)
        due["expire"] = now + 1.0
    score_closed_windows(st, now)
    if force or now >= due["alerts"]:
        evaluate_alerts(st, now)
        due["alerts"] = now + cfg.alert_interval_s
        st.pace()
    if now >= due["resources"]:  # on its interval only: a flush needs no fresh sample
        _sample_resources(st, now)
        due["resources"] = now + cfg.resource_interval_s
    early = _details_half_full(st) and now >= due.get("early_store", -math.inf)
    if collect and st.store is not None and (force or early or now >= due["store"]):
        due["store"] = now + cfg.store_interval_s
        return collect_rows(st, now)
    return None


def _details_half_full(st: MonitorState) -> bool:
    """Whether the detail queue is half full: it is written now rather than at the next store
    interval. Without this a process could store at most ``detail_buffer_size`` detail rows
    per ``store_interval_s`` (2,000/s at the defaults: 10,000 predictions/s at 20%) and
    dropped the rest however fast the store was. After a failed write the next waits for the
    interval (a store that is down is not retried at every step)."""
    return 2 * len(st.details) >= st.config.detail_buffer_size


def _sample_resources(st: MonitorState, now: float) -> None:
    s = st.resources.sample(now)
    if st.store is not None:  # rows waiting for the store (the series is in memory)
        st.resource_rows.append(s)
        extra = len(st.resource_rows) - st.config.resource_history
        if extra > 0:  # the store is down or slow: keep the newest
            st.drops["resource_rows"] += extra
            del st.resource_rows[:extra]


def _retention(st: MonitorState, now: float) -> None:
    """Apply the store's retention when due (outside the state's lock)."""
    cfg = st.config
    if st.store is None or now < st.due["retention"]:
        return
    st.due["retention"] = now + cfg.retention_interval_s
    if cfg.retention_max_age_s is None and cfg.retention_max_rows is None:
        return
    try:
        st.last_retention = st.store.apply_retention(
            now,
            max_age_s=cfg.retention_max_age_s,
            max_rows=cfg.retention_max_rows,
            reclaim=cfg.retention_reclaim,
        )
        st.counters["retention_runs"] += 1
    except Exception:
        st.counters["store_errors"] += 1
        logger.exception("monitor %s: retention failed", st.name)
