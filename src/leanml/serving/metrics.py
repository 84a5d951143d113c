"""Prometheus text for the service: every monitor of this process, serving figures, merged totals.

Families added to :func:`leanml.monitor.render_prometheus`'s (all labelled ``model``):

* ``leanml_cache_{hits,misses,evictions,expired,invalidations}_total``, ``leanml_cache_entries``,
  ``leanml_cache_bytes``;
* ``leanml_batch_size`` and ``leanml_batch_queue_wait_seconds`` histograms;
* ``leanml_cached_predictions_total``;
* ``leanml_http_responses_total{route,status}`` (this process);
* ``leanml_merged_predictions_total``, ``leanml_merged_ground_truth_joined_total``,
  ``leanml_merged_processes`` and ``leanml_merged_latency_quantile_seconds{quantile}``: the store's
  view summed over every process sharing it (all workers, all hosts), so one scrape of any
  worker shows the totals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leanml.monitor import render_prometheus
from leanml.serving.batching import SIZE_BUCKETS, WAIT_BUCKETS

if TYPE_CHECKING:
    from leanml.serving.service import Service

__all__ = ["render_service"]


def _hist(lines: list[str], name: str, lab: str, bounds: tuple, counts: list[int], total: float):
    cum = 0
    for b, c in zip(bounds, counts, strict=False):
        cum += c
        lines.append(f'{name}_bucket{{{lab},le="{float(b)!r}"}} {cum}')
    cum += counts[-1]
    lines.append(f'{name}_bucket{{{lab},le="+Inf"}} {cum}')
    lines.append(f"{name}_count{{{lab}}} {cum}")
    lines.append(f"{name}_sum{{{lab}}} {total!r}")


def _esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_service(service: Service, merged: bool = True) -> str:
    monitors = [m for h in service.handles.values() for m in h.monitor_list()]
    parts = [render_prometheus(monitors)] if monitors else []
    lines: list[str] = []
    handles = list(service.handles.values())
    counters = (
        ("hits", "Prediction cache hits."),
        ("misses", "Prediction cache misses."),
        ("evictions", "Entries evicted by the entry or byte bound."),
        ("expired", "Entries dropped by the TTL."),
        ("invalidations", "Cache invalidations (variant switch, reload)."),
    )
    for key, help_ in counters:
        name = f"leanml_cache_{key}_total"
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
        for h in handles:
            lines.append(f'{name}{{model="{_esc(h.name)}"}} {getattr(h.cache, key)}')
    for key, help_ in (("entries", "Entries in the cache."), ("bytes", "Estimated cache bytes.")):
        name = f"leanml_cache_{key}"
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        for h in handles:
            value = len(h.cache) if key == "entries" else h.cache.bytes
            lines.append(f'{name}{{model="{_esc(h.name)}"}} {value}')
    name = "leanml_cached_predictions_total"
    lines += [f"# HELP {name} Predictions answered from the cache.", f"# TYPE {name} counter"]
    for h in handles:
        lines.append(f'{name}{{model="{_esc(h.name)}"}} {h.cached_predictions}')
    name = "leanml_batch_size"
    lines += [f"# HELP {name} Texts per micro-batch predict.", f"# TYPE {name} histogram"]
    for h in handles:
        b = h.batcher
        _hist(lines, name, f'model="{_esc(h.name)}"', SIZE_BUCKETS, b.size_counts, b.items)
    name = "leanml_batch_queue_wait_seconds"
    lines += [f"# HELP {name} Wait from submit to batch start.", f"# TYPE {name} histogram"]
    for h in handles:
        b = h.batcher
        _hist(lines, name, f'model="{_esc(h.name)}"', WAIT_BUCKETS, b.wait_counts, b.wait_sum)
    name = "leanml_http_responses_total"
    lines += [f"# HELP {name} HTTP responses of this process.", f"# TYPE {name} counter"]
    for (route, status), n in sorted(service.http_counts.items()):
        lines.append(f'{name}{{route="{_esc(route)}",status="{status}"}} {n}')
    if merged and service.store is not None and service.config.monitoring:
        rows = [(h.name, service.store.merged(model=h.name)) for h in handles]
        fams = (
            ("leanml_merged_predictions_total", "counter", "count", "Predictions, all processes."),
            (
                "leanml_merged_ground_truth_joined_total",
                "counter",
                "joined",
                "Joined labels, all processes.",
            ),
        )
        for fam, kind, key, help_ in fams:
            lines += [f"# HELP {fam} {help_}", f"# TYPE {fam} {kind}"]
            for model, m in rows:
                lines.append(f'{fam}{{model="{_esc(model)}"}} {m[key]}')
        fam = "leanml_merged_processes"
        lines += [f"# HELP {fam} Processes with rows in the store.", f"# TYPE {fam} gauge"]
        for model, m in rows:
            lines.append(f'{fam}{{model="{_esc(model)}"}} {len(m["processes"])}')
        fam = "leanml_merged_latency_quantile_seconds"
        lines += [f"# HELP {fam} Latency quantiles, all processes.", f"# TYPE {fam} gauge"]
        for model, m in rows:
            lat = m["latency"]
            for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                if key in lat:
                    lines.append(f'{fam}{{model="{_esc(model)}",quantile="{q}"}} {lat[key]!r}')
    parts.append("\n".join(lines) + "\n")
    return "".join(parts)
