"""The flusher's work for a ModelMonitor: everything that must stay off the prediction path.

Split from monitor.py to keep each module small; these functions run under the monitor's lock
(``step`` takes it) and touch its private state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from leanml.monitor._read import _drift, metric_table, rolling_drift
from leanml.monitor.drift import oov_rates
from leanml.monitor.ids import sample_hashes
from leanml.monitor.join import JoinResult
from leanml.monitor.window import Window

if TYPE_CHECKING:
    from leanml.monitor.monitor import ModelMonitor

logger = logging.getLogger("leanml.monitor")
_QS = (0.5, 0.95, 0.99, 0.999)
_QNAMES = ("p50", "p95", "p99", "p999")
_TWO32 = 4294967296.0


def step(m: ModelMonitor, force: bool) -> bool:
    """One flusher step; returns whether buffered records remain (backlog)."""
    with m._io_lock:
        with m._lock:
            now = m._clock()
            # at most flush_batch_size records per round; flush() drains the backlog it sees
            backlog = len(m._buf) + sum(len(b[0]) for b in list(m._bbuf)) + len(m._gt)
            rounds = 1 + backlog // m.config.flush_batch_size
            busy = False
            for _ in range(rounds if force else 1):
                busy = _drain(m, now) or busy
            cfg = m.config
            if force or now >= m._due.get("expire", 0.0):
                m.pending.expire(now)
                m.time_window.expire(now)
                m._due["expire"] = now + 1.0
            _score_closed_windows(m, now)
            if force or now >= m._due["alerts"]:
                _evaluate_alerts(m, now)
                m._due["alerts"] = now + cfg.alert_interval_s
            if force or now >= m._due["resources"]:
                s = m.resources.sample(now)
                if m.store is not None:  # rows waiting for the store (the series is in memory)
                    m._resource_rows.append(s)
                    extra = len(m._resource_rows) - cfg.resource_history
                    if extra > 0:  # the store is down or slow: keep the newest
                        m.drops["resource_rows"] += extra
                        del m._resource_rows[:extra]
                m._due["resources"] = now + cfg.resource_interval_s
            rows = None
            if m.store is not None and (force or now >= m._due["store"]):
                rows = _collect_rows(m, now)
                m._due["store"] = now + cfg.store_interval_s
            _evict_windows(m)
            m.counters["flushes"] += 1
        if rows is not None:
            _write(m, rows)
            try:
                claim_forwarded(m, now)
            except Exception:
                m.counters["store_errors"] += 1
                logger.exception("monitor %s: claiming forwarded ground truth failed", m.name)
        if m.store is not None and now >= m._due["retention"]:
            m._due["retention"] = now + cfg.retention_interval_s
            if cfg.retention_max_age_s is not None or cfg.retention_max_rows is not None:
                try:
                    m.last_retention = m.store.apply_retention(
                        now,
                        max_age_s=cfg.retention_max_age_s,
                        max_rows=cfg.retention_max_rows,
                        reclaim=cfg.retention_reclaim,
                    )
                    m.counters["retention_runs"] += 1
                except Exception:
                    m.counters["store_errors"] += 1
                    logger.exception("monitor %s: retention failed", m.name)
        if m.gc is not None:
            if busy:
                m.gc.activity(now)
            else:
                m.gc.maybe_collect(now)
    return bool(m._buf or m._bbuf or m._gt)


# ---------------------------------------------------------------------------- ingest
def _drain(m: ModelMonitor, now: float) -> bool:
    busy = False
    buf, bbuf = m._buf, m._bbuf
    limit = m.config.flush_batch_size
    if buf or bbuf:
        busy = True
        pop = buf.popleft
        singles = [pop() for _ in range(min(len(buf), limit))]
        bpop = bbuf.popleft
        batches = []
        taken = len(singles)
        while bbuf and taken < limit:
            b = bpop()
            batches.append(b)
            taken += len(b[0])
        try:
            _ingest_records(m, singles, batches)
        except (TypeError, ValueError) as exc:
            m.counters["invalid_batches"] += 1
            logger.error("monitor %s: dropped an invalid record chunk: %s", m.name, exc)
    if m._err:
        epop = m._err.popleft
        for _ in range(len(m._err)):
            ts, n = epop()
            m.errors += n
            _window(m, ts).errors += n
    if m._gt:
        busy = True
        gpop = m._gt.popleft
        _ingest_ground_truth(m, [gpop() for _ in range(min(len(m._gt), limit))])
    return busy


def _ingest_records(m: ModelMonitor, singles: list[tuple], batches: list[tuple]) -> None:
    # Flat Python lists first, one array conversion per column at the end: per-batch numpy
    # calls (asarray, broadcast_to, full) cost ~7 us per batch, more than the rest of the
    # ingest of a typical serving micro-batch of ~12 predictions.
    ids: list[Any] = []
    labels: list[Any] = []
    confs: list[float] = []
    lats: list[float] = []
    tss: list[float] = []
    inputs: list[Any] = []
    has_inputs = False
    if singles:
        ids = [r[0] for r in singles]
        labels = [r[1] for r in singles]
        confs = [r[2] for r in singles]
        lats = [r[3] for r in singles]
        tss = [r[5] for r in singles]
        inputs = [r[4] for r in singles]
        has_inputs = inputs.count(None) != len(inputs)
    for i, lab, c, lat, inp, ts in batches:
        n = len(i)
        ids.extend(i)
        labels.extend(lab.tolist() if isinstance(lab, np.ndarray) else lab)
        confs.extend(c.tolist() if isinstance(c, np.ndarray) else c)
        if isinstance(lat, np.ndarray):
            lat = lat.tolist()  # a 0-d array gives one float
        if isinstance(lat, (float, int)) or not hasattr(lat, "__len__"):
            lats.extend([lat] * n)  # one latency for the whole batch
        else:
            if len(lat) != n:
                raise ValueError(f"{len(lat)} latencies for a batch of {n} predictions")
            lats.extend(lat)
        tss.extend([ts] * n)
        if inp is None:
            inputs.extend([None] * n)
        else:
            inputs.extend(inp)
            has_inputs = True
    if not ids:
        return
    _ingest(
        m,
        ids,
        _label_indices(m, labels),
        np.asarray(confs, dtype=np.float64),
        np.asarray(lats, dtype=np.float64),
        inputs if has_inputs else None,
        np.asarray(tss, dtype=np.float64),
    )


OTHER = "__other__"


def _label_indices(m: ModelMonitor, labels: Sequence[Any]) -> np.ndarray:
    """Small integer per label; beyond ``max_labels`` distinct labels, one shared ``__other__``
    index (counted in ``drops.labels_overflow``) so that a caller passing ids or floats as labels
    cannot grow memory without bound."""
    index = m._label_index
    idx = list(map(index.get, labels))
    if None in idx:
        cap = m.config.max_labels
        other = None
        for pos, lab in enumerate(labels):
            if idx[pos] is not None:
                continue
            got = index.get(lab)
            if got is None:
                if len(m._labels) < cap:
                    key = lab.item() if isinstance(lab, np.generic) else lab
                    got = index[key] = len(m._labels)
                    m._labels.append(key)
                else:
                    if other is None:
                        other = index.get(OTHER)
                        if other is None:
                            other = index[OTHER] = len(m._labels)
                            m._labels.append(OTHER)
                    got = other
                    m.drops["labels_overflow"] += 1
            idx[pos] = got
    return np.asarray(idx, dtype=np.int32)


def _window(m: ModelMonitor, ts: float) -> Window:
    width = m.config.window_s
    start = math.floor(ts / width) * width
    w = m._windows.get(start)
    if w is None:
        w = Window(start, width, m.config.relative_accuracy, m.config.recent_window_n)
        m._windows[start] = w
    return w


def _ingest(
    m: ModelMonitor,
    ids: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
) -> None:
    cfg = m.config
    n = len(ids)
    k = len(m._labels)
    m.total += n
    counts = np.bincount(lab, minlength=k)
    if counts.size > m._label_totals.size:
        grown = np.zeros(counts.size, dtype=np.int64)
        grown[: m._label_totals.size] = m._label_totals
        m._label_totals = grown
    m._label_totals[: counts.size] += counts
    lengths = oov = None
    if inputs is not None:
        try:  # every input present (the usual case): len() at C speed
            lengths = np.fromiter(map(len, inputs), np.float64, n)
        except TypeError:  # some are None
            lengths = np.fromiter(
                (math.nan if x is None else len(x) for x in inputs), np.float64, n
            )
    # sampling, deterministic in the id
    rate = cfg.sampling_rate
    if rate >= 1.0:
        sampled = np.ones(n, dtype=bool)
    elif rate <= 0.0:
        sampled = np.zeros(n, dtype=bool)
    else:
        sampled = sample_hashes(ids) < rate * _TWO32
    if cfg.sample_below_confidence is not None:
        low = conf < cfg.sample_below_confidence
        reason_low = low & ~sampled
        sampled |= low
    else:
        reason_low = None
    picked = np.flatnonzero(sampled)
    if inputs is not None and m.analyzer is not None and m.vocabulary is not None:
        oov = np.full(n, math.nan)
        cand = [i for i in picked if inputs[i] is not None][: cfg.max_oov_per_flush]
        if cand:
            oov[cand] = oov_rates([inputs[i] for i in cand], m.analyzer, m.vocabulary)
    # per-window counters, sketches and drift inputs
    starts = np.floor(ts / cfg.window_s) * cfg.window_s
    lo, hi = float(starts.min()), float(starts.max())
    groups: list[tuple[float, Any]] = (
        [(lo, slice(None))] if lo == hi else [(float(s), starts == s) for s in np.unique(starts)]
    )
    for start, sel in groups:
        w = _window(m, start)
        w.add(lab[sel], conf[sel], lat[sel], k)
        if lengths is not None:
            ln = lengths[sel]
            w.lengths.push(ln[~np.isnan(ln)])
        if oov is not None:
            o = oov[sel]
            w.oov.push(o[~np.isnan(o)])
    secs = ts.astype(np.int64)
    u, c = np.unique(secs, return_counts=True)
    sec = m._seconds
    for s_, c_ in zip(u.tolist(), c.tolist(), strict=True):
        sec[s_] = sec.get(s_, 0) + c_
    if len(sec) > 180:
        for old in sorted(sec)[:-120]:
            del sec[old]
    m.confidence.update(conf[np.isfinite(conf)])
    m._recent_labels.push(lab)
    if lengths is not None:
        m._recent_lengths.push(lengths[~np.isnan(lengths)])
    if oov is not None:
        m._recent_oov.push(oov[~np.isnan(oov)])
    if cfg.pending_join:
        m.pending.insert(ids, lab, conf, ts)
    if picked.size:
        _keep_details(m, ids, lab, conf, lat, inputs, ts, picked, reason_low)


def _keep_details(
    m: ModelMonitor,
    ids: list[Any],
    lab: np.ndarray,
    conf: np.ndarray,
    lat: np.ndarray,
    inputs: list[Any] | None,
    ts: np.ndarray,
    picked: np.ndarray,
    reason_low: np.ndarray | None,
) -> None:
    from leanml.monitor.monitor import input_hash

    cfg = m.config
    details = m._details
    room = cfg.detail_buffer_size - len(details)
    m.sampled += int(picked.size)
    if picked.size > room:
        m.drops["detail_buffer"] += int(picked.size - max(room, 0))
        picked = picked[: max(room, 0)]
    names = [str(x) for x in m._labels]
    mode = cfg.store_inputs
    model, version, variant, proc = m.name, m.version, m.variant, m.process_id
    labs, cs, ls, tss = (
        lab[picked].tolist(),
        conf[picked].tolist(),
        lat[picked].tolist(),
        ts[picked].tolist(),
    )
    low = reason_low.tolist() if reason_low is not None else None
    append = details.append
    for j, i in enumerate(picked.tolist()):
        text = inputs[i] if inputs is not None else None
        append(
            (  # the order of store.PREDICTION_COLUMNS
                str(ids[i]),
                tss[j],
                model,
                version,
                variant,
                proc,
                names[labs[j]],
                cs[j],
                ls[j],
                text if mode == "text" else None,
                input_hash(text) if text is not None and mode != "none" else None,
                "low_confidence" if low is not None and low[i] else "rate",
            )
        )


def _ingest_ground_truth(
    m: ModelMonitor, items: list[tuple], from_inbox: bool = False
) -> list[int]:
    """Join labels; unknown ids are forwarded to the store for other processes (see config).
    Returns the input positions that were not unknown (for inbox rows: the ones to claim)."""
    joined = [it for it in items if len(it) == 4]  # from record_joined: matched already
    if joined:
        _score_joined(m, _matched(m, joined))
        items = [it for it in items if len(it) == 3]
    ids: list[Any] = []
    labels: list[Any] = []
    tss: list[np.ndarray] = []
    for i, lab, ts in items:
        ids.extend(i)
        labels.extend(lab)
        tss.append(_per_item(ts, len(i)))
    if not ids:
        return []
    ts_all = np.concatenate(tss)
    forward = m.store is not None and m.config.forward_unknown_ground_truth
    res = m.pending.join(ids, labels, ts_all, count_unknown=not (forward or from_inbox))
    if forward and not from_inbox and res.unknown:
        room = m.config.ground_truth_buffer_size - len(m._forward_rows)
        n = len(res.unknown)
        if n > room:  # cannot forward: these count as unknown here and now
            m.drops["forward_buffer"] += n - max(room, 0)
            m.pending.counters["unknown"] += n - max(room, 0)
        for pos in res.unknown[: max(room, 0)]:
            m._forward_rows.append(
                {
                    "model": m.name,
                    "variant": m.variant,
                    "prediction_id": _json_label(ids[pos]),
                    "true_label": _json_label(labels[pos]),
                    "ts": float(ts_all[pos]),
                }
            )
        m.pending.counters["forwarded"] += min(n, max(room, 0))
    unknown = set(res.unknown)
    found = [p for p in range(len(ids)) if p not in unknown]
    if len(res):
        _score_joined(m, res)
    return found


def _per_item(ts: Any, n: int) -> np.ndarray:
    """One timestamp per item from one float or a sequence of them."""
    return np.broadcast_to(np.asarray(ts, dtype=np.float64), (n,))


def _matched(m: ModelMonitor, items: list[tuple]) -> JoinResult:
    """One JoinResult of ``record_joined`` items (counted as joined)."""
    ids: list[Any] = []
    true: list[Any] = []
    pred: list[Any] = []
    conf: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    tss: list[np.ndarray] = []
    for i, lab, ts, (p, c, pt) in items:
        n = len(i)
        ids.extend(i)
        true.extend(lab)
        pred.extend(p.tolist() if isinstance(p, np.ndarray) else p)
        conf.append(np.asarray(c, dtype=np.float64).reshape(n))
        pts.append(np.asarray(pt, dtype=np.float64).reshape(n))
        tss.append(_per_item(ts, n))
    m.pending.counters["joined"] += len(ids)
    return JoinResult(
        ids,
        _label_indices(m, pred),
        np.concatenate(conf),
        np.concatenate(pts),
        true,
        np.concatenate(tss),
    )


def _score_joined(m: ModelMonitor, res: JoinResult) -> None:
    """Accuracy, calibration and per-window counts of joined pairs; label rows for the store."""
    true = _label_indices(m, res.true_labels)
    correct = true == res.predicted
    m.count_window.update(true, res.predicted)
    m.time_window.update(true, res.predicted, res.ts)
    scored = np.isfinite(res.confidences)
    m.calibration.update(res.confidences[scored], correct[scored])
    starts = np.floor(res.ts / m.config.window_s) * m.config.window_s
    for s in np.unique(starts):
        sel = starts == s
        w = _window(m, float(s))
        w.joined += int(sel.sum())
        w.correct += int(correct[sel].sum())
        w.dirty = True
    if m.store is not None:
        room = m.config.detail_buffer_size - len(m._label_rows)
        if len(res) > room:
            m.drops["labels_buffer"] += len(res) - max(room, 0)
        names = m._labels
        for j in range(min(len(res), max(room, 0))):
            m._label_rows.append(
                {
                    "prediction_id": str(res.ids[j]),
                    "ts": float(res.ts[j]),
                    "pred_ts": float(res.pred_ts[j]),
                    "model": m.name,
                    "variant": m.variant,
                    "true_label": str(names[true[j]]),
                    "predicted_label": str(names[res.predicted[j]]),
                    "confidence": float(res.confidences[j]),
                }
            )


def _json_label(label: Any) -> str:
    import json

    if isinstance(label, np.generic):
        label = label.item()
    try:
        return json.dumps(label)
    except TypeError:
        return json.dumps(str(label))


def claim_forwarded(m: ModelMonitor, now: float) -> None:
    """Join ground truth other processes forwarded (store I/O outside the monitor lock)."""
    import json

    store = m.store
    if store is None or not m.config.forward_unknown_ground_truth:
        return
    rows = store.inbox(m.name, m.variant, limit=m.config.ground_truth_buffer_size)
    if rows:
        item = (
            [json.loads(r["prediction_id"]) for r in rows],
            [json.loads(r["true_label"]) for r in rows],
            np.asarray([r["ts"] for r in rows], dtype=np.float64),
        )
        with m._lock:
            found = _ingest_ground_truth(m, [item], from_inbox=True)
            m.pending.counters["claimed_from_other_processes"] += len(found)
        if found:
            store.claim([rows[p]["id"] for p in found])
    expired = store.expire_forwarded(m.name, m.variant, now - m.config.forward_ttl_s)
    if expired:
        with m._lock:
            m.pending.counters["unknown"] += expired


# ---------------------------------------------------------------------------- windows
def _score_closed_windows(m: ModelMonitor, now: float) -> None:
    if m.drift_detector is None:
        return
    for w in m._windows.values():
        if w.drift is None and w.start + w.width <= now and w.count:
            w.drift = _drift(m, w.label_counts, w.conf.values(), w.lengths.values(), w.oov.values())
            w.dirty = True


def _evict_windows(m: ModelMonitor) -> None:
    extra = len(m._windows) - m.config.windows_kept
    if extra <= 0:
        return
    for start in sorted(m._windows)[:extra]:
        w = m._windows[start]
        if w.dirty and m.store is not None:
            continue  # written at the next store flush, then evicted
        m._retired.merge(w.sketch)
        del m._windows[start]
        m.drops["windows_evicted"] += 1


def _evaluate_alerts(m: ModelMonitor, now: float) -> None:
    m._drift_cache = rolling_drift(m) or {}
    events = m.alerts.evaluate(metric_table(m, now), now)
    for e in events if m.store is not None else ():
        m._alert_rows.append(
            {
                "ts": e.ts,
                "model": e.model,
                "variant": e.variant,
                "rule": e.rule,
                "previous": e.previous,
                "level": e.level,
                "value": e.value,
                "n": e.n,
                "reason": e.reason,
            }
        )
    extra = len(m._alert_rows) - m.config.max_events
    if extra > 0:
        m.drops["alert_rows"] += extra
        del m._alert_rows[:extra]


def _collect_rows(m: ModelMonitor, now: float) -> dict[str, list[Any]]:
    import json

    snaps = []
    for w in m._windows.values():
        if w.dirty:
            snaps.append(w.row(m.name, m.version, m.variant, m._labels, now))
            w.dirty = False
    details = [m._details.popleft() for _ in range(len(m._details))]
    labels = [m._label_rows.popleft() for _ in range(len(m._label_rows))]
    res = [
        {
            "ts": r["ts"],
            "rss_bytes": r["rss_bytes"],
            "cpu_percent": r["cpu_percent"],
            "disk_bytes": r["disk_bytes"],
            "gc": json.dumps({"counts": r["gc_counts"], "collections": r["gc_collections"]}),
        }
        for r in m._resource_rows
    ]
    m._resource_rows = []
    alerts, m._alert_rows = m._alert_rows, []
    forwarded = [m._forward_rows.popleft() for _ in range(len(m._forward_rows))]
    for r in forwarded:
        r["created"] = now
    return {
        "forwarded": forwarded,
        "snapshots": snaps,
        "predictions": details,
        "labels": labels,
        "resources": res,
        "alerts": alerts,
    }


def _write(m: ModelMonitor, rows: dict[str, list[Any]]) -> None:
    assert m.store is not None
    try:
        m.store.write(**rows)
        m.counters["store_writes"] += 1
    except Exception:
        m.counters["store_errors"] += 1
        lost = sum(len(v) for k, v in rows.items() if k != "snapshots")
        m.drops["store_rows"] += lost
        with m._lock:  # windows are upserted: mark them for the next attempt
            # labels that could not be forwarded to their process stay unknown
            m.pending.counters["unknown"] += len(rows.get("forwarded", ()))
            for r in rows["snapshots"]:
                w = m._windows.get(r["window_start"])
                if w is not None:
                    w.dirty = True
        logger.exception("monitor %s: store write failed (%d rows lost)", m.name, lost)
