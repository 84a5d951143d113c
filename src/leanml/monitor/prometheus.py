"""Prometheus text exposition (format 0.0.4) of one or more monitors, without a registry.

Rendering reads each monitor's :meth:`~leanml.monitor.ModelMonitor.stats` and lifetime latency
sketch; nothing is added to the prediction path (unlike prometheus_client's Counter.inc +
Histogram.observe, about 870 ns per prediction here). Series, each labelled ``model`` and
``variant``:

* counters: ``leanml_predictions_total``, ``leanml_predictions_by_label_total{label}``,
  ``leanml_prediction_errors_total``, ``leanml_predictions_sampled_total``,
  ``leanml_ground_truth_total{outcome}`` (joined/duplicate/late/unknown),
  ``leanml_monitor_dropped_total{buffer}`` (every drop and eviction counter);
* ``leanml_prediction_latency_seconds`` histogram with buckets from 10 us to 10 s (sub-ms
  resolution); its bucket counts come from the lifetime sketch, so a value within the sketch's
  relative accuracy of a bucket bound may be counted in the neighbouring bucket;
* gauges: ``leanml_prediction_latency_quantile_seconds{quantile}`` over the stats window,
  ``leanml_accuracy{kind=realized|estimated}``, ``leanml_calibration_gap``,
  ``leanml_drift_score{score}``, ``leanml_model_health`` (0 healthy, 1 degraded, 2 unhealthy),
  ``leanml_alert_level{rule}`` (0 ok, 1 warning, 2 critical), ``leanml_pending_joins``,
  ``leanml_throughput_per_second``, ``leanml_process_resident_memory_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leanml.monitor.monitor import ModelMonitor

__all__ = ["LATENCY_BUCKETS", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float | int | None) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.seen: set[str] = set()

    def head(self, name: str, kind: str, help_: str) -> None:
        if name not in self.seen:
            self.seen.add(name)
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, Any], value: float | int | None) -> None:
        lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{lab}}} {_num(value)}")


def render(monitors: Iterable[ModelMonitor]) -> str:
    """Exposition text for ``monitors`` (families grouped as the format requires)."""
    collected = [(m, m.stats(), m.latency_sketch()) for m in monitors]
    o = _Out()
    for emit in _FAMILIES:
        for m, st, sk in collected:
            emit(o, {"model": m.name, "variant": m.variant}, st, sk)
    return "\n".join(o.lines) + "\n"


def _counts(o: _Out, base: dict, st: dict, sk: Any) -> None:
    c = st["counts"]
    o.head("leanml_predictions_total", "counter", "Predictions made (recorded or dropped).")
    o.sample("leanml_predictions_total", base, c["predictions"])


def _by_label(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_predictions_by_label_total", "counter", "Recorded predictions per label.")
    for lab, n in st["counts"]["by_label"].items():
        o.sample("leanml_predictions_by_label_total", {**base, "label": lab}, n)


def _errors(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_prediction_errors_total", "counter", "Failed predictions.")
    o.sample("leanml_prediction_errors_total", base, st["counts"]["errors"])


def _sampled(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_predictions_sampled_total", "counter", "Predictions kept in detail.")
    o.sample("leanml_predictions_sampled_total", base, st["counts"]["sampled"])


def _gt(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_ground_truth_total", "counter", "Ground-truth labels by join outcome.")
    for k in ("joined", "duplicate", "late", "unknown"):
        o.sample("leanml_ground_truth_total", {**base, "outcome": k}, st["ground_truth"][k])


def _drops(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_monitor_dropped_total", "counter", "Items dropped or evicted by each bound.")
    for k, v in sorted(st["drops"].items()):
        o.sample("leanml_monitor_dropped_total", {**base, "buffer": k}, int(v))


def _hist(o: _Out, base: dict, st: dict, sk: Any) -> None:
    name = "leanml_prediction_latency_seconds"
    o.head(name, "histogram", "Prediction latency (from the lifetime sketch).")
    cum = sk.bucket_counts(LATENCY_BUCKETS)
    for le, n in zip(LATENCY_BUCKETS, cum.tolist(), strict=True):
        o.sample(f"{name}_bucket", {**base, "le": repr(float(le))}, n)
    o.sample(f"{name}_bucket", {**base, "le": "+Inf"}, sk.count)
    o.sample(f"{name}_count", base, sk.count)
    o.sample(f"{name}_sum", base, float(sk.sum))


def _quantiles(o: _Out, base: dict, st: dict, sk: Any) -> None:
    name = "leanml_prediction_latency_quantile_seconds"
    o.head(name, "gauge", "Latency quantiles over the stats window (sketch contract applies).")
    lat = st["latency"]
    for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("0.999", "p999")):
        o.sample(name, {**base, "quantile": q}, lat[key])


def _accuracy(o: _Out, base: dict, st: dict, sk: Any) -> None:
    a = st["accuracy"]
    o.head("leanml_accuracy", "gauge", "Realized (labeled window) and estimated accuracy.")
    o.sample("leanml_accuracy", {**base, "kind": "realized"}, a["realized"]["accuracy"])
    o.sample("leanml_accuracy", {**base, "kind": "estimated"}, a["estimated"])


def _f1(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_macro_f1", "gauge", "Realized macro-F1 over the labeled window.")
    o.sample("leanml_macro_f1", base, st["accuracy"]["realized"]["macro_f1"])


def _calibration(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_calibration_gap", "gauge", "Mean confidence minus accuracy on labeled.")
    o.sample("leanml_calibration_gap", base, st["accuracy"]["calibration"]["calibration_gap"])


def _drift(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_drift_score", "gauge", "Drift against the model's reference.")
    d = st["drift"] or {}
    for k in ("class_psi", "class_chi2", "confidence_ks", "input_length_ks", "oov_delta"):
        if d.get(k) is not None:
            o.sample("leanml_drift_score", {**base, "score": k}, d[k])


def _health(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_model_health", "gauge", "0 healthy, 1 degraded, 2 unhealthy.")
    o.sample("leanml_model_health", base, _HEALTH[st["health"]])


def _levels(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_alert_level", "gauge", "Alert level per rule: 0 ok, 1 warning, 2 critical.")
    for rule, level in st["alerts"]["levels"].items():
        o.sample("leanml_alert_level", {**base, "rule": rule}, _LEVEL[level])


def _pending(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_pending_joins", "gauge", "Predictions waiting for ground truth.")
    o.sample("leanml_pending_joins", base, st["ground_truth"]["pending"])


def _tput(o: _Out, base: dict, st: dict, sk: Any) -> None:
    o.head("leanml_throughput_per_second", "gauge", "Predictions in the last full second.")
    o.sample("leanml_throughput_per_second", base, st["throughput"]["per_s"])


def _rss(o: _Out, base: dict, st: dict, sk: Any) -> None:
    r = st["resources"]
    if r is not None:
        o.head("leanml_process_resident_memory_bytes", "gauge", "RSS of the monitored process.")
        o.sample("leanml_process_resident_memory_bytes", base, r["rss_bytes"])


_FAMILIES = [
    _counts,
    _by_label,
    _errors,
    _sampled,
    _gt,
    _drops,
    _hist,
    _quantiles,
    _accuracy,
    _f1,
    _calibration,
    _drift,
    _health,
    _levels,
    _pending,
    _tput,
    _rss,
]
