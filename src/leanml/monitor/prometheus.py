"""Prometheus text exposition (format 0.0.4) of one or more monitors, without a registry.

Rendering reads each monitor's :meth:`~leanml.monitor.ModelMonitor.stats` and lifetime latency
sketch; nothing is added to the prediction path (unlike prometheus_client's Counter.inc +
Histogram.observe, about 870 ns per prediction here). Series, each labelled ``model`` and
``variant``:

* counters: ``leanml_predictions_total``, ``leanml_predictions_by_label_total{label}``,
  ``leanml_prediction_errors_total``, ``leanml_predictions_sampled_total``,
  ``leanml_ground_truth_total{outcome}`` (the outcomes of :mod:`leanml.groundtruth`: joined,
  duplicate, evicted, expired, never_seen, foreign; refused: forged ids, also in never_seen),
  ``leanml_monitor_dropped_total{buffer}`` (every drop and eviction counter);
* ``leanml_prediction_latency_seconds`` histogram with buckets from 10 us to 10 s (sub-ms
  resolution); its bucket counts come from the lifetime sketch, so a value within the sketch's
  relative accuracy of a bucket bound may be counted in the neighbouring bucket;
* ``leanml_prediction_latency_window_seconds`` summary (``{quantile}``, ``_sum``, ``_count``)
  over the stats window;
* gauges: ``leanml_accuracy{kind=realized|estimated}`` with ``leanml_accuracy_lower`` /
  ``leanml_accuracy_upper`` (95%) and ``leanml_accuracy_samples``, ``leanml_calibration_gap``,
  ``leanml_drift_score{score}`` with ``leanml_drift_score_lower`` / ``_upper`` (95%, basic
  bootstrap) and ``leanml_drift_samples``, ``leanml_model_health`` (0 healthy, 1 degraded,
  2 unhealthy),
  ``leanml_alert_level{rule}`` (0 ok, 1 warning, 2 critical), ``leanml_pending_joins``,
  ``leanml_throughput_per_second``, ``leanml_process_resident_memory_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from leanml._prometheus import CONTENT_TYPE, Exposition
from leanml.monitor.drift import DRIFT_SCORES
from leanml.monitor.sketch import LogSketch
from leanml.monitor.stats import MonitorStats

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "MonitorSource", "render", "write"]

LATENCY_BUCKETS = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    7.5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    7.5e-3,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
_LEVEL = {"ok": 0, "warning": 1, "critical": 2}
_HEALTH = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class MonitorSource(Protocol):
    """What rendering reads of a monitor (a :class:`~leanml.monitor.ModelMonitor` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def variant(self) -> str: ...

    def stats(self) -> MonitorStats: ...

    def latency_sketch(self, since: float | None = None) -> LogSketch: ...


_Labels = Mapping[str, object]
_Family = Callable[[Exposition, _Labels, MonitorStats, LogSketch], None]


def render(monitors: Iterable[MonitorSource]) -> str:
    """Exposition text for ``monitors`` (families grouped as the format requires)."""
    out = Exposition()
    write(out, monitors)
    return out.text()


def write(out: Exposition, monitors: Iterable[MonitorSource]) -> None:
    """Write the families of ``monitors`` into ``out`` (nothing without monitors)."""
    collected = [(m, m.stats(), m.latency_sketch()) for m in monitors]
    for emit in _FAMILIES:
        for m, st, sk in collected:
            emit(out, {"model": m.name, "variant": m.variant}, st, sk)


def _counts(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    c = st["counts"]
    o.family("leanml_predictions_total", "counter", "Predictions made (recorded or dropped).")
    o.sample("leanml_predictions_total", base, c["predictions"])


def _by_label(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_predictions_by_label_total", "counter", "Recorded predictions per label.")
    for lab, n in st["counts"]["by_label"].items():
        o.sample("leanml_predictions_by_label_total", {**base, "label": lab}, n)


def _errors(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_prediction_errors_total", "counter", "Failed predictions.")
    o.sample("leanml_prediction_errors_total", base, st["counts"]["errors"])


def _sampled(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_predictions_sampled_total", "counter", "Predictions kept in detail.")
    o.sample("leanml_predictions_sampled_total", base, st["counts"]["sampled"])


def _gt(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_ground_truth_total", "counter", "Ground-truth labels by join outcome.")
    for k in ("joined", "duplicate", "evicted", "expired", "never_seen", "foreign", "refused"):
        value = st["ground_truth"].get(k, 0)
        o.sample("leanml_ground_truth_total", {**base, "outcome": k}, value)


def _drops(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_monitor_dropped_total", "counter", "Items dropped or evicted by each bound.")
    for k, v in sorted(st["drops"].items()):
        o.sample("leanml_monitor_dropped_total", {**base, "buffer": k}, int(v))


def _hist(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    name = "leanml_prediction_latency_seconds"
    o.family(name, "histogram", "Prediction latency (from the lifetime sketch).")
    cum = sk.bucket_counts(LATENCY_BUCKETS).tolist()
    o.histogram(name, base, LATENCY_BUCKETS, cum, sk.count, float(sk.sum))


def _quantiles(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    """A summary (``quantile`` is reserved for summaries): the stats window's quantiles, count
    and sum."""
    name = "leanml_prediction_latency_window_seconds"
    o.family(name, "summary", "Latency over the stats window (sketch contract applies).")
    lat = st["latency"]
    for q, value in (
        ("0.5", lat["p50"]),
        ("0.95", lat["p95"]),
        ("0.99", lat["p99"]),
        ("0.999", lat["p999"]),
    ):
        o.sample(name, {**base, "quantile": q}, value)
    count = lat["count"]
    o.sample(f"{name}_sum", base, (lat["avg"] or 0.0) * count)
    o.sample(f"{name}_count", base, count)


def _accuracy_rows(st: MonitorStats) -> dict[str, tuple[float | None, ...]]:
    """kind -> (value, lower, upper, sample size) of the realized and estimated accuracy."""
    a = st["accuracy"]
    r = a["realized"]
    return {
        "realized": (r["accuracy"], r.get("accuracy_lower"), r.get("accuracy_upper"), r["n"]),
        "estimated": (
            a["estimated"],
            a.get("estimated_lower"),
            a.get("estimated_upper"),
            a["estimated_n"],
        ),
    }


def _accuracy_family(name: str, help_: str, column: int) -> _Family:
    """One family per function: every monitor's samples of a family stay together."""

    def write(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
        o.family(name, "gauge", help_)
        for kind, row in _accuracy_rows(st).items():
            o.sample(name, {**base, "kind": kind}, row[column])

    return write


_accuracy = _accuracy_family(
    "leanml_accuracy", "Realized (labeled window) and estimated accuracy.", 0
)
_accuracy_lower = _accuracy_family(
    "leanml_accuracy_lower", "95% lower bound (realized: Wilson; estimated: map).", 1
)
_accuracy_upper = _accuracy_family(
    "leanml_accuracy_upper", "95% upper bound (realized: Wilson; estimated: map).", 2
)
_accuracy_samples = _accuracy_family(
    "leanml_accuracy_samples", "Predictions behind each accuracy figure.", 3
)


def _f1(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_macro_f1", "gauge", "Realized macro-F1 over the labeled window.")
    o.sample("leanml_macro_f1", base, st["accuracy"]["realized"]["macro_f1"])


def _calibration(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_calibration_gap", "gauge", "Mean confidence minus accuracy on labeled.")
    o.sample("leanml_calibration_gap", base, st["accuracy"]["calibration"]["calibration_gap"])


def _drift(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_drift_score", "gauge", "Drift against the model's reference.")
    d = st["drift"]
    if d is None:
        return
    for k in DRIFT_SCORES:
        value = d[k]
        if value is not None:
            o.sample("leanml_drift_score", {**base, "score": k}, value)


def _drift_bound(side: str, column: int) -> _Family:
    name = f"leanml_drift_score_{side}"

    def write(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
        o.family(name, "gauge", f"95% {side} bound of a drift score (basic bootstrap).")
        d = st["drift"]
        intervals = {} if d is None else d.get("intervals") or {}
        for k, bounds in intervals.items():
            o.sample(name, {**base, "score": k}, bounds[column])

    return write


_drift_lower = _drift_bound("lower", 0)
_drift_upper = _drift_bound("upper", 1)


def _drift_samples(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_drift_samples", "gauge", "Sampled values behind each drift score.")
    d = st["drift"]
    if d is None:
        return
    sizes = {
        "class_psi": d["n"],
        "class_chi2": d["n"],
        "confidence_ks": d["confidence_n"],
        "input_length_ks": d["input_length_n"],
    }
    for k, size in sizes.items():
        if d[k] is not None:  # type: ignore[literal-required]
            o.sample("leanml_drift_samples", {**base, "score": k}, size)


def _health(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_model_health", "gauge", "0 healthy, 1 degraded, 2 unhealthy.")
    o.sample("leanml_model_health", base, _HEALTH[st["health"]])


def _levels(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_alert_level", "gauge", "Alert level per rule: 0 ok, 1 warning, 2 critical.")
    for rule, level in st["alerts"]["levels"].items():
        o.sample("leanml_alert_level", {**base, "rule": rule}, _LEVEL[level])


def _pending(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_pending_joins", "gauge", "Predictions waiting for ground truth.")
    o.sample("leanml_pending_joins", base, st["ground_truth"]["pending"])


def _tput(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    o.family("leanml_throughput_per_second", "gauge", "Predictions in the last full second.")
    o.sample("leanml_throughput_per_second", base, st["throughput"]["per_s"])


def _rss(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    r = st["resources"]
    if r is not None:
        o.family("leanml_process_resident_memory_bytes", "gauge", "RSS of the monitored process.")
        o.sample("leanml_process_resident_memory_bytes", base, r["rss_bytes"])


def _overhead(o: Exposition, base: _Labels, st: MonitorStats, sk: LogSketch) -> None:
    ov = st.get("overhead")
    if ov is None:
        return
    name = "leanml_monitor_cpu_seconds_total"
    o.family(name, "counter", "The monitor's own CPU: flusher thread plus sampled caller cost.")
    o.sample(name, base, ov["monitor_cpu_s"])
    name = "leanml_monitor_overhead_ratio"
    o.family(name, "gauge", "Monitor CPU over model time (the sum of recorded latencies).")
    if ov["ratio"] is not None:
        o.sample(name, base, ov["ratio"])


_FAMILIES: list[_Family] = [
    _counts,
    _by_label,
    _errors,
    _sampled,
    _gt,
    _drops,
    _hist,
    _quantiles,
    _accuracy,
    _accuracy_lower,
    _accuracy_upper,
    _accuracy_samples,
    _f1,
    _calibration,
    _drift,
    _drift_lower,
    _drift_upper,
    _drift_samples,
    _health,
    _levels,
    _pending,
    _tput,
    _rss,
    _overhead,
]
