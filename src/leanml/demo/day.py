"""The simulated day of ``leanml demo``: traffic, late labels, drift and alerts, per model.

:func:`simulate_day` puts one served model through 24 simulated hours in a few seconds of wall
time. A :class:`~leanml.monitor.ModelMonitor` with an injected clock sees every prediction through
its normal API (``record_batch``, ``flush``; late labels are joined by a
:class:`~leanml.groundtruth.GroundTruth` and handed over with ``record_joined``, as the server
does) and writes the monitoring store, which the report then reads. The day, reproducible from
``seed``:

* **traffic**: predictions per second follow :data:`TRAFFIC_SHAPE` (a quiet night, a morning
  peak, a calmer afternoon, a falling evening), Poisson per simulated minute, plus
  :data:`BURSTS` ten-minute bursts in which clumps of :data:`CLUMP` requests arrive at once;
* **predictions**: texts drawn from the dataset's test split, so each label and confidence is the
  served model's own for a real text (computed once per distinct text, as the serving cache
  would);
* **latency**: the served model's real single-text latencies, measured just before the day and
  resampled; the requests of a clump are served one after the other, so each waits for those
  before it and bursts raise p95 and p99;
* **ground truth**: each true label arrives after a log-normal delay (median
  :data:`LABEL_DELAY_MEDIAN_S`), :data:`LABEL_MISSING` of them never arrive, and those later than
  the pending join's age limit (:data:`PENDING_MAX_AGE_S`) arrive late (counted, not joined);
* **drift**: an afternoon phase per task (:func:`drift_phase`) changes the class mix of the
  traffic: email a spam wave, intent traffic concentrated on the intents the model handles
  worst, sentiment a negative shift that lasts until midnight;
* **alerts**: rules fitted to the model (:func:`day_rules`): accuracy thresholds below its
  validation figures, drift thresholds above each score's own sampling noise at ``min_samples``
  predictions. No throughput-drop rule: a daily traffic shape makes a plain drop rule (the last
  window against the ten before it) fire every evening;
* **shadow check** (when a compact variant serves and ``shadow`` is given): the original
  re-scores a sample of the served texts and its agreement is tested at every flush
  (:class:`~leanml.demo.shadow.DayShadow`).

The monitor writes as process ``leanml-demo-day:<model>``; a new run first deletes that process's
rows, so the store holds one simulated day per model, never two merged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from leanml._predict import predict_with_confidence
from leanml.bench.inprocess import run_single_text_load
from leanml.config import AlertRule, MonitorConfig
from leanml.datasets import Dataset
from leanml.demo.shadow import DayShadow
from leanml.groundtruth import GroundTruth
from leanml.monitor import ModelMonitor, MonitorStore
from leanml.monitor.drift import psi

__all__ = [
    "BURSTS",
    "CLUMP",
    "DAY_PROCESS",
    "DAY_S",
    "LABEL_DELAY_MEDIAN_S",
    "LABEL_MISSING",
    "PENDING_MAX_AGE_S",
    "TRAFFIC_SHAPE",
    "WINDOW_S",
    "DriftPhase",
    "day_rules",
    "day_start_for",
    "drift_phase",
    "simulate_day",
    "traffic_rate",
]

DAY_S = 86_400.0
#: (hour, predictions per second), linearly interpolated: night, morning peak, afternoon, evening
TRAFFIC_SHAPE = (
    (0.0, 0.15),
    (5.0, 0.12),
    (7.0, 0.45),
    (9.0, 1.0),
    (11.0, 0.95),
    (12.5, 0.6),
    (17.0, 0.55),
    (20.0, 0.3),
    (23.0, 0.16),
    (24.0, 0.15),
)
#: ten-minute bursts a day; in each minute of a burst three clumps of CLUMP requests arrive
BURSTS = 3
CLUMP = 25
#: monitor windows of the day (30 min: 48 points a chart)
WINDOW_S = 1800.0
LABEL_DELAY_MEDIAN_S = 2400.0
LABEL_MISSING = 0.35
PENDING_MAX_AGE_S = 4 * 3600.0
#: the monitor's process id (one per model)
DAY_PROCESS = "leanml-demo-day"
_STEP_S = 60.0  # traffic is generated per simulated minute
_FLUSH_EVERY = 10  # the flusher runs (alerts evaluated, store written) every 10 simulated minutes
_LATENCY_SAMPLES = 300
_RECENT_N = 1000  # rolling drift over the newest 1000 predictions (about half an hour by day)


@dataclasses.dataclass(frozen=True)
class DriftPhase:
    """An afternoon phase in which the traffic's class mix changes (``end_h`` 24: to midnight)."""

    start_h: float
    end_h: float
    name: str  # a few words for the table
    what: str  # one sentence
    weights: dict[str, float]  # class -> share of the traffic during the phase

    def active(self, hour: float) -> bool:
        return self.start_h <= hour < self.end_h


def day_start_for(now: float) -> float:
    """Midnight UTC of the day before ``now``: the demo's simulated day is "yesterday"."""
    today = math.floor(now / DAY_S) * DAY_S
    return today - DAY_S


def drift_phase(task: str, y: Sequence[Any] | np.ndarray, correct: np.ndarray) -> DriftPhase:
    """The task's afternoon drift, built from the test split's labels (``correct``: per text)."""
    labels = np.asarray([str(v) for v in y], dtype=object)
    classes = sorted(set(labels.tolist()))
    if task == "email" and "spam" in classes:
        return DriftPhase(
            13.0,
            15.0,
            "spam wave",
            "spam wave: 80% of the mail is spam",
            _focus(classes, ["spam"], 0.8),
        )
    if task == "sentiment" and "negative" in classes:
        return DriftPhase(
            15.0,
            24.0,
            "negative shift",
            "negative shift until midnight: 75% negative",
            _focus(classes, ["negative"], 0.75),
        )
    # intent (and any other task): traffic concentrated on the classes the model handles worst
    acc = {c: float(correct[labels == c].mean()) for c in classes}
    worst = sorted(classes, key=lambda c: (acc[c], c))[:4]
    return DriftPhase(
        14.0,
        16.0,
        f"{len(worst)} {task}s",
        f"85% of the traffic on 4 {task}s the model handles worst ({', '.join(worst)})",
        _focus(classes, worst, 0.85),
    )


def _focus(classes: Sequence[str], hot: Sequence[str], share: float) -> dict[str, float]:
    rest = [c for c in classes if c not in hot]
    out = {c: share / len(hot) for c in hot}
    out.update({c: (1.0 - share) / len(rest) for c in rest} if rest else {})
    return out


def day_rules(
    reference: dict[str, Any], accuracy: float, *, min_samples: int = 200, seed: int = 0
) -> tuple[AlertRule, ...]:
    """Alert rules fitted to one model (see the module docstring)."""
    counts = np.asarray(list((reference.get("class_counts") or {"x": 1}).values()), float)
    rng = np.random.default_rng(seed)
    noise = [psi(counts, rng.multinomial(min_samples, counts / counts.sum())) for _ in range(200)]
    psi_warn = max(0.1, round(1.5 * float(np.quantile(noise, 0.99)), 2))
    m = max(1, len(reference.get("confidences") or ()))
    ks_warn = max(0.1, round(1.95 * math.sqrt(1 / min_samples + 1 / m), 2))  # KS at alpha 0.001
    # the estimate's level on healthy traffic: the validation accuracy its calibration map
    # reproduces (the raw mean confidence for a reference without a map)
    calibration = reference.get("calibration") or {}
    conf = calibration.get("val_accuracy") or float(
        np.mean(reference.get("confidences") or [accuracy])
    )
    return (
        AlertRule(
            "realized_accuracy",
            "realized_accuracy",
            "below",
            round(accuracy - 0.08, 2),
            round(max(0.0, accuracy - 0.2), 2),
            100,
            0.02,
            2,
            2,
        ),  # fmt: skip
        AlertRule(
            "estimated_accuracy",
            "estimated_accuracy",
            "below",
            round(conf - 0.08, 2),
            round(max(0.0, conf - 0.2), 2),
            min_samples,
            0.02,
            2,
            2,
        ),  # fmt: skip
        AlertRule("latency_p99", "latency_p99_s", "above", 0.25, 1.0, 100, 0.02, 2, 2),
        AlertRule("error_rate", "error_rate", "above", 0.01, 0.05, 100, 0.005, 2, 2),
        AlertRule(
            "class_drift",
            "drift_class_psi",
            "above",
            psi_warn,
            round(max(0.25, 2 * psi_warn), 2),
            min_samples,
            0.02,
            2,
            2,
        ),  # fmt: skip
        AlertRule(
            "confidence_drift",
            "drift_confidence_ks",
            "above",
            ks_warn,
            round(max(0.2, 1.5 * ks_warn), 2),
            min_samples,
            0.02,
            2,
            2,
        ),  # fmt: skip
    )


class _SimClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclasses.dataclass
class _Day:
    """What the day's loop carries from minute to minute."""

    rng: np.random.Generator
    monitor: ModelMonitor
    truth: GroundTruth  # issues the ids and joins the late labels, as a server does
    classes: list[str]  # the served labels, indexed by the ring's class index
    clock: _SimClock
    texts: list[str]
    y: np.ndarray  # true labels of the test split (str)
    labels: np.ndarray  # the served model's label per text
    conf: np.ndarray  # and its confidence
    by_class: dict[str, np.ndarray]
    service_s: np.ndarray  # measured single-text latencies (s)
    drift: DriftPhase
    bursts: list[float]  # burst start hours
    shadow: DayShadow | None = None  # the original re-scoring a sample of what was served
    due: dict[int, list[tuple[str, str, float]]] = dataclasses.field(
        default_factory=lambda: defaultdict(list)
    )
    predictions: int = 0
    labels_sent: int = 0
    labels_missing: int = 0
    per_minute: list[int] = dataclasses.field(default_factory=list)


def simulate_day(
    model: Any,
    dataset: Dataset,
    store: MonitorStore | str,
    *,
    name: str,
    task: str,
    day_start: float,
    version: str = "",
    variant: str = "default",
    reference: dict[str, Any] | None = None,
    config: MonitorConfig | None = None,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    shadow: DayShadow | None = None,
) -> dict[str, Any]:
    """Run the day described in the module docstring into ``store``; return its summary.

    ``progress(share)`` is called after each simulated hour with its share of the day (1/24).
    ``shadow`` is fed the served predictions and the joined labels; its figures are read from
    it afterwards (``shadow.summary()``).
    """
    texts = [str(x) for x in dataset.X_test]
    y = np.asarray([str(v) for v in dataset.y_test], dtype=object)
    labels, conf, _ = predict_with_confidence(model, texts)
    labels = np.asarray([str(v) for v in labels], dtype=object)
    correct = labels == y
    rules = day_rules(reference or {}, float(correct.mean()), seed=seed)
    url = store if isinstance(store, str) else store.url
    day_store = MonitorStore(url, process_id=f"{DAY_PROCESS}:{name}")
    try:
        _forget_previous_day(day_store)
        clock = _SimClock(day_start)
        monitor = ModelMonitor(
            name,
            version=version,
            variant=variant,
            config=_day_config(config, rules),
            store=day_store,
            reference=reference,
            clock=clock,
            start=False,
            sinks=[],
        )
        rng = np.random.default_rng(seed)
        cfg = monitor.config
        truth = GroundTruth(cfg.pending_max_entries, cfg.pending_max_age_s, clock=clock)
        monitor.ground_truth, monitor.ground_truth_code = truth, 0  # its outcomes in stats()
        day = _Day(
            rng=rng,
            monitor=monitor,
            truth=truth,
            classes=sorted(set(labels.tolist())),
            clock=clock,
            texts=texts,
            y=y,
            labels=labels,
            conf=np.asarray(conf, dtype=np.float64),
            by_class={c: np.flatnonzero(y == c) for c in sorted(set(y.tolist()))},
            service_s=_service_times(model, texts),
            drift=drift_phase(task, y, correct),
            bursts=sorted(rng.uniform(6.0, 22.0, BURSTS).round(2).tolist()),
            shadow=shadow,
        )
        _run(day, day_start, progress)
        clock.t = day_start + DAY_S + 1.0  # the last window closes: it gets its drift score
        monitor.flush()
        if shadow is not None:
            shadow.decide(clock.t)
        monitor.close()
        return _summary(day, day_start, rules)
    finally:
        day_store.close()


def _day_config(config: MonitorConfig | None, rules: Sequence[AlertRule]) -> MonitorConfig:
    """The user's monitor settings with the day's windows, rules and a flusher driven by hand."""
    return dataclasses.replace(
        config or MonitorConfig(),
        window_s=WINDOW_S,
        windows_kept=60,
        recent_window_n=_RECENT_N,
        store_interval_s=_FLUSH_EVERY * _STEP_S,
        alert_interval_s=_FLUSH_EVERY * _STEP_S,
        resource_interval_s=3600.0,
        pending_max_age_s=PENDING_MAX_AGE_S,
        alert_rules=tuple(rules),
        retention_max_age_s=None,
        retention_max_rows=None,
    )


def _forget_previous_day(store: MonitorStore) -> None:
    """Delete every row an earlier run wrote as this process (the demo's own, nothing else)."""
    tables = (store.snapshots, store.detail_blocks, store.labels, store.alerts, store.resources)
    with store.engine.begin() as conn:
        for t in tables:
            conn.execute(t.delete().where(t.c.process == store.process_id))


def _service_times(model: Any, texts: Sequence[str]) -> np.ndarray:
    """The served model's real single-text latencies (seconds), measured now."""
    load = run_single_text_load(
        lambda batch: predict_with_confidence(model, batch), list(texts), _LATENCY_SAMPLES
    )
    return np.asarray(load.latencies_ns, dtype=np.float64) / 1e9


def traffic_rate(hour: float) -> float:
    """Predictions per second at ``hour`` (0-24) of the day, before bursts."""
    hs, rs = zip(*TRAFFIC_SHAPE, strict=True)
    return float(np.interp(hour, hs, rs))


def _run(day: _Day, day_start: float, progress: Callable[[float], None] | None) -> None:
    minutes = int(DAY_S // _STEP_S)
    for minute in range(minutes):
        t = day_start + minute * _STEP_S
        hour = minute / 60.0
        day.clock.t = t + _STEP_S / 2
        _deliver_labels(day, minute)
        _predict_minute(day, hour, t)
        if (minute + 1) % _FLUSH_EVERY == 0:
            day.clock.t = t + _STEP_S
            day.monitor.flush()
            if day.shadow is not None:
                day.shadow.decide(day.clock.t)
        if progress is not None and (minute + 1) % 60 == 0:
            progress(1 / 24)


def _predict_minute(day: _Day, hour: float, t: float) -> None:
    """One simulated minute of traffic: Poisson arrivals, plus clumps during a burst."""
    rng = day.rng
    n_plain = int(rng.poisson(traffic_rate(hour) * _STEP_S))
    clumps = 3 if any(b <= hour < b + 10 / 60 for b in day.bursts) else 0
    n = n_plain + clumps * CLUMP
    day.per_minute.append(n)
    if n == 0:
        return
    idx = _draw(day, hour, n)
    service = rng.choice(day.service_s, n)
    latency = service.copy()
    for c in range(clumps):  # one worker serves a clump in order: each waits for the earlier
        lo = n_plain + c * CLUMP
        latency[lo : lo + CLUMP] = np.cumsum(service[lo : lo + CLUMP])
    served = day.labels[idx]
    pred = np.searchsorted(day.classes, served)
    ids = day.truth.issue(n, 0, pred, day.conf[idx])
    texts = [day.texts[i] for i in idx]
    day.monitor.record_batch(
        ids, day.labels[idx], day.conf[idx], latency, texts, model_seconds=float(service.sum())
    )
    if day.shadow is not None:
        day.shadow.offer(texts, ids, served, day.conf[idx])
    day.predictions += n
    _schedule_labels(day, ids, idx, t)


def _draw(day: _Day, hour: float, n: int) -> np.ndarray:
    """Test-split indices for ``n`` requests: uniform, or by the drift phase's class mix."""
    rng = day.rng
    if not day.drift.active(hour):
        return rng.integers(0, len(day.texts), n)
    classes = [c for c in day.drift.weights if c in day.by_class]
    p = np.asarray([day.drift.weights[c] for c in classes])
    picks = rng.choice(len(classes), n, p=p / p.sum())
    return np.asarray([rng.choice(day.by_class[classes[k]]) for k in picks], dtype=np.int64)


def _schedule_labels(day: _Day, ids: list[str], idx: np.ndarray, t: float) -> None:
    """Each true label arrives after a log-normal delay, or never."""
    rng = day.rng
    n = len(ids)
    arrives = rng.random(n) >= LABEL_MISSING
    delay = LABEL_DELAY_MEDIAN_S * np.exp(rng.normal(0.0, 1.2, n))
    day.labels_missing += int((~arrives).sum())
    for i in np.flatnonzero(arrives):
        at = t + _STEP_S / 2 + float(delay[i])
        day.due[int((at - t) // _STEP_S) + len(day.per_minute) - 1].append(
            (ids[i], str(day.y[idx[i]]), at)
        )


def _deliver_labels(day: _Day, minute: int) -> None:
    due = day.due.pop(minute, None)
    if not due:
        return
    ids, truth, ts = zip(*due, strict=True)
    arrived = dict(zip(ids, ts, strict=True))
    _, joined = day.truth.join(list(zip(ids, truth, strict=True)))
    if joined:
        day.monitor.record_joined(
            [j.id for j in joined],
            [j.label for j in joined],
            [day.classes[j.pred] for j in joined],
            [j.confidence for j in joined],
            [j.pred_ts for j in joined],
            [arrived[j.id] for j in joined],
        )
        if day.shadow is not None:
            day.shadow.joined((j.id, j.label) for j in joined)
    day.labels_sent += len(ids)


def _summary(day: _Day, day_start: float, rules: Sequence[AlertRule]) -> dict[str, Any]:
    """The day in figures: traffic, labels, alerts and the drift's detection."""
    stats = day.monitor.stats()
    events = [e.to_dict() for e in day.monitor.alerts.events]
    per_min = np.asarray(day.per_minute, dtype=np.float64)
    hourly = per_min.reshape(24, -1).sum(axis=1) / 3600.0
    drift = day.drift
    start = day_start + drift.start_h * 3600.0
    end = day_start + drift.end_h * 3600.0
    drift_rules = {r.name for r in rules if r.metric.startswith("drift_")}
    fired = [e for e in events if e["rule"] in drift_rules and e["level"] != "ok"]
    detected = next((e for e in fired if e["ts"] >= start), None)
    false_before = [e for e in fired if e["ts"] < start]
    resolved = next(
        (
            e
            for e in events
            if detected and e["rule"] == detected["rule"] and e["level"] == "ok"
            and e["ts"] > detected["ts"]
        ),
        None,
    )  # fmt: skip
    gt = stats["ground_truth"]
    return {
        "day": dt.datetime.fromtimestamp(day_start, tz=dt.UTC).strftime("%Y-%m-%d"),
        "start": day_start,
        "end": day_start + DAY_S,
        "predictions": day.predictions,
        "peak_per_s": round(float(hourly.max()), 3),
        "peak_hour": int(hourly.argmax()),
        "night_per_s": round(float(hourly[:5].mean()), 3),
        "bursts": [_clock(day_start + h * 3600.0) for h in day.bursts],
        "labels_sent": day.labels_sent,
        "labels_missing": day.labels_missing,
        "labels_joined": gt["joined"],
        "labels_late": gt["expired"] + gt["evicted"],  # arrived after leaving the ring
        "labels_pending_at_midnight": gt["pending"],
        "drift": {
            "name": drift.name,
            "what": drift.what,
            "start": start,
            "end": end,
            "rule": detected["rule"] if detected else None,
            "detected": detected["ts"] if detected else None,
            "detection_s": round(detected["ts"] - start, 1) if detected else None,
            "resolved": resolved["ts"] if resolved else None,
            "alerts_before_start": len(false_before),
        },
        "alerts_fired": sum(1 for e in events if e["previous"] == "ok" and e["level"] != "ok"),
        "alerts_resolved": sum(1 for e in events if e["level"] == "ok"),
        "alerts": [
            {
                **{k: e[k] for k in ("rule", "previous", "level", "value", "ts")},
                "time": _clock(e["ts"]),
            }
            for e in events
        ],  # fmt: skip
        "health": stats["health"],
        "rules": [dataclasses.asdict(r) for r in rules],
    }


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%H:%M")
