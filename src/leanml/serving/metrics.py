"""Prometheus text for the service: every monitor of this process, serving figures, merged totals.

Families added to :func:`leanml.monitor.render_prometheus`'s (all labelled ``model``):

* ``leanml_cache_{hits,misses,evictions,expired,invalidations}_total``, ``leanml_cache_entries``,
  ``leanml_cache_bytes``;
* ``leanml_batch_size`` and ``leanml_batch_queue_wait_seconds`` histograms;
* ``leanml_cached_predictions_total``;
* ``leanml_monitoring_paused`` (1 while paused by ``PUT /v1/models/NAME/monitoring``) and
  ``leanml_unmonitored_predictions_total`` (served meanwhile, not recorded);
* ``leanml_http_responses_total{route,status}`` (this process);
* ``leanml_merged_predictions_total``, ``leanml_merged_ground_truth_joined_total``,
  ``leanml_merged_processes`` and the ``leanml_merged_latency_seconds`` summary: the store's
  view summed over every process sharing it (all workers, all hosts), so one scrape of any
  worker shows the totals;
* ``leanml_shadow_agreement`` with ``_lower``/``_upper`` (95% Wilson), the
  ``leanml_shadow_predictions`` and ``leanml_shadow_joined`` sample counts, the
  ``leanml_shadow_proba_diff_mean``, ``leanml_shadow_accuracy{variant}`` and
  ``leanml_shadow_fallback`` (1 while the check's decision holds the original in service): the
  shadow check's figures, merged across the processes sharing the store (models it watches);
* ``leanml_store_up``: 1 when the store answered, 0 during an outage (then the merged families
  are left out and the local ones still served).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from leanml._prometheus import Exposition
from leanml.monitor.prometheus import write as write_monitors
from leanml.serving.batching import SIZE_BUCKETS, WAIT_BUCKETS

if TYPE_CHECKING:
    from leanml.serving.handle import ModelHandle
    from leanml.serving.service import Service

__all__ = ["render_service"]

_log = logging.getLogger("leanml.serving")

_CACHE_COUNTERS = (
    ("hits", "Prediction cache hits."),
    ("misses", "Prediction cache misses."),
    ("evictions", "Entries evicted by the entry or byte bound."),
    ("expired", "Entries dropped by the TTL."),
    ("invalidations", "Cache invalidations (variant switch, reload)."),
)


def render_service(service: Service, merged: bool = True) -> str:
    """The exposition of every monitor of ``service``, then its own families."""
    out = Exposition()
    handles = list(service.handles.values())
    write_monitors(out, [m for h in handles for m in h.monitor_list()])
    _cache(out, handles)
    _batching(out, handles)
    _paused(out, handles)
    _shadow(out, handles)
    name = "leanml_http_responses_total"
    out.family(name, "counter", "HTTP responses of this process.")
    for (route, status), n in sorted(service.http_counts.items()):
        out.sample(name, {"route": route, "status": status}, n)
    if merged and service.store is not None and service.config.monitoring:
        up = _merged(out, service, handles)
        name = "leanml_store_up"
        out.family(name, "gauge", "1 when the shared monitor store answered this scrape, else 0.")
        out.sample(name, {}, int(up))
    return out.text()


def _cache(out: Exposition, handles: Sequence[ModelHandle]) -> None:
    for key, help_ in _CACHE_COUNTERS:
        name = f"leanml_cache_{key}_total"
        out.family(name, "counter", help_)
        for h in handles:
            out.sample(name, {"model": h.name}, getattr(h.cache, key))
    for key, help_ in (("entries", "Entries in the cache."), ("bytes", "Estimated cache bytes.")):
        name = f"leanml_cache_{key}"
        out.family(name, "gauge", help_)
        for h in handles:
            out.sample(name, {"model": h.name}, len(h.cache) if key == "entries" else h.cache.bytes)
    name = "leanml_cached_predictions_total"
    out.family(name, "counter", "Predictions answered from the cache.")
    for h in handles:
        out.sample(name, {"model": h.name}, h.cached_predictions)


def _paused(out: Exposition, handles: Sequence[ModelHandle]) -> None:
    name = "leanml_monitoring_paused"
    out.family(name, "gauge", "1 while the model's monitoring is paused in this process.")
    for h in handles:
        out.sample(name, {"model": h.name}, int(h.monitoring_paused))
    name = "leanml_unmonitored_predictions_total"
    out.family(name, "counter", "Predictions served while monitoring was paused.")
    for h in handles:
        out.sample(name, {"model": h.name}, h.unmonitored)


def _shadow(out: Exposition, handles: Sequence[ModelHandle]) -> None:
    rows = [(h.name, s) for h in handles if (s := h.shadow_stats()) is not None]
    gauges = (
        ("leanml_shadow_agreement", "agreement", "Label agreement of compact and original."),
        ("leanml_shadow_agreement_lower", "agreement_lower", "95% Wilson lower bound."),
        ("leanml_shadow_agreement_upper", "agreement_upper", "95% Wilson upper bound."),
        ("leanml_shadow_predictions", "shadowed", "Predictions re-scored by the original."),
        ("leanml_shadow_joined", "joined", "Shadowed predictions with ground truth joined."),
        ("leanml_shadow_proba_diff_mean", "proba_diff_mean", "Mean top-class probability diff."),
        ("leanml_shadow_threshold", "threshold", "Agreement the sequential test defends."),
    )
    for fam, key, help_ in gauges:
        out.family(fam, "gauge", help_)
        for model, st in rows:
            out.sample(fam, {"model": model}, st[key])
    fam = "leanml_shadow_accuracy"
    out.family(fam, "gauge", "Realized accuracy of each variant on shadowed, joined predictions.")
    for model, st in rows:
        for variant in ("compact", "original"):
            out.sample(fam, {"model": model, "variant": variant}, st[f"accuracy_{variant}"])
    fam = "leanml_shadow_fallback"
    out.family(fam, "gauge", "1 while the shadow check holds the original in service.")
    for model, st in rows:
        out.sample(fam, {"model": model}, int(bool(st["fallen_back"])))


def _batching(out: Exposition, handles: Sequence[ModelHandle]) -> None:
    name = "leanml_batch_size"
    out.family(name, "histogram", "Texts per micro-batch predict.")
    for h in handles:
        b = h.batcher
        _hist(out, name, h.name, SIZE_BUCKETS, b.size_counts, b.items)
    name = "leanml_batch_queue_wait_seconds"
    out.family(name, "histogram", "Wait from submit to batch start.")
    for h in handles:
        b = h.batcher
        _hist(out, name, h.name, WAIT_BUCKETS, b.wait_counts, b.wait_sum)


def _hist(
    out: Exposition,
    name: str,
    model: str,
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
) -> None:
    """A histogram from per-bucket counts (the last one above every bound)."""
    cum = list(accumulate(counts))
    out.histogram(name, {"model": model}, bounds, cum[: len(bounds)], cum[-1], total)


def _merged(out: Exposition, service: Service, handles: Sequence[ModelHandle]) -> bool:
    """The store's view summed over every process sharing it; False (and nothing written)
    when the store cannot be read: the local families above still are."""
    store = service.store
    if store is None:
        return False
    try:
        rows = [(h.name, store.merged(model=h.name)) for h in handles]
    except Exception:
        _log.warning("/metrics: the monitor store cannot be read; serving local figures only")
        return False
    fams = (
        ("leanml_merged_predictions_total", "count", "Predictions, all processes."),
        ("leanml_merged_ground_truth_joined_total", "joined", "Joined labels, all processes."),
    )
    for fam, key, help_ in fams:
        out.family(fam, "counter", help_)
        for model, m in rows:
            out.sample(fam, {"model": model}, m[key])
    fam = "leanml_merged_processes"
    out.family(fam, "gauge", "Processes with rows in the store.")
    for model, m in rows:
        out.sample(fam, {"model": model}, len(m["processes"]))
    fam = "leanml_merged_latency_seconds"
    out.family(fam, "summary", "Latency quantiles, all processes.")
    for model, m in rows:
        lat = m["latency"]
        for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
            if key in lat:
                out.sample(fam, {"model": model, "quantile": q}, lat[key])
        count = lat.get("count", 0)
        out.sample(f"{fam}_sum", {"model": model}, (lat.get("avg") or 0.0) * count)
        out.sample(f"{fam}_count", {"model": model}, count)
    return True
