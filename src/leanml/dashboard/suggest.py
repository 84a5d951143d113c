"""Automated optimization suggestions: rules with their evidence and the exact way to apply them.

Each rule is a small pure function returning a :class:`Suggestion` or ``None``; it fires only on
evidence above its minimum sample size. ``action`` is the command or setting that applies it, as a
user would type it. Serving settings (cache size, ``max_wait_ms``) are written for the
``leanml serve --config FILE`` TOML file; the names are collected in :data:`SERVE_SETTINGS` so
they can follow the serving module if it renames them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

from leanml.config import AlertRule, MonitorConfig, default_rules
from leanml.dashboard.data import (
    ModelData,
    ReportData,
    WindowPoint,
    batch_figures,
    wilson_interval,
)
from leanml.monitor import DRIFT_SCORES

__all__ = [
    "SERVE_SETTINGS",
    "Suggestion",
    "generate_suggestions",
    "suggest_cache",
    "suggest_compact_variant",
    "suggest_drift_review",
    "suggest_max_wait",
    "suggest_retention",
    "suggest_retrain",
    "suggest_sampling_rate",
]

#: Where serving settings live (``leanml serve --config FILE``, TOML) and the admin API.
SERVE_SETTINGS = {
    "cache_entries": "[serving] cache_max_entries",
    "cache_entries_env": "LEANML_SERVING_CACHE_MAX_ENTRIES",
    "max_wait_ms": "[serving] max_wait_ms",
    "max_wait_ms_env": "LEANML_SERVING_MAX_WAIT_MS",
    "monitoring_api": "PATCH /v1/monitoring/config",
    "variant_api": "PUT /v1/models/{name}/variant",
}
_ADMIN = 'curl -X {method} -H "Authorization: Bearer $LEANML_ADMIN_TOKEN" '
_ADMIN += "-H 'Content-Type: application/json' http://HOST:PORT{path} -d '{body}'"


@dataclasses.dataclass(frozen=True)
class Suggestion:
    rule: str
    model: str | None
    title: str
    evidence: str
    action: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


def _admin(method: str, path: str, body: str) -> str:
    return _ADMIN.format(method=method, path=path, body=body)


def suggest_cache(md: ModelData, min_dup: float = 0.2, min_sampled: int = 100) -> Suggestion | None:
    """Enable the cache when inputs repeat; resize it when it evicts while missing repeats."""
    dup = md.duplicate_rate
    if dup is None or md.sampled < min_sampled or dup < min_dup:
        return None
    cache = (md.serving or {}).get("cache") or {}
    ev = (
        f"{100 * dup:.0f}% of the {md.sampled} sampled inputs repeat an earlier input "
        "(sampling is uniform in the prediction id, so this is the duplicate rate of the traffic)"
    )
    key = SERVE_SETTINGS["cache_entries"]
    entries = int(cache.get("max_entries") or 0)
    if not cache or not cache.get("enabled", True) or cache.get("max_entries") == 0:
        return Suggestion(
            "cache",
            md.name,
            f"Enable the prediction cache for {md.name}",
            ev + "; the cache is off.",
            f"{key} = 10000 in the --config file (or {SERVE_SETTINGS['cache_entries_env']}=10000), "
            "then restart leanml serve",
            {"duplicate_rate": dup},
        )
    hits, misses = int(cache.get("hits", 0)), int(cache.get("misses", 0))
    hit = hits / (hits + misses) if hits + misses else 0.0
    evictions = int(cache.get("evictions", 0))
    if evictions > 0 and hit < 0.7 * dup:
        new = max(2 * entries, 1000)
        return Suggestion(
            "cache",
            md.name,
            f"Grow the prediction cache of {md.name}",
            f"{ev}; the hit rate is only {100 * hit:.0f}% and {evictions} entries were evicted "
            f"at {entries} entries.",
            f"{key} = {new} (or {SERVE_SETTINGS['cache_entries_env']}={new})",
            {"duplicate_rate": dup, "hit_rate": hit, "evictions": evictions, "new": new},
        )
    return None


def suggest_compact_variant(md: ModelData) -> Suggestion | None:
    """The compact variant passed its guard but the original is what serves."""
    guard = (md.compression or {}).get("guard") or {}
    active = (md.registry or {}).get("active_variant")
    if not guard.get("passed") or active == "compact":
        return None
    ob, cb = guard.get("original_bytes"), guard.get("compact_bytes")
    size = f", {100 * (1 - cb / ob):.1f}% smaller" if ob and cb else ""
    return Suggestion(
        "compact_variant",
        md.name,
        f"Serve the compact variant of {md.name}",
        f"its accuracy guard passed ({guard.get('reason', '')}{size}) and the active variant "
        f"is {active or 'original'}.",
        f"leanml models switch {md.name} compact   (live: "
        + _admin("PUT", f"/v1/models/{md.name}/variant", '{"variant": "compact"}')
        + ")",
        {"guard": guard},
    )


def suggest_sampling_rate(
    md: ModelData, sampling_rate: float = MonitorConfig.sampling_rate, target: float = 0.05
) -> Suggestion | None:
    """The realized accuracy's 95% interval is wider than +/- ``target``: collect more labels."""
    ci = wilson_interval(md.correct, md.joined)
    if ci is None or sampling_rate >= 1.0:
        return None
    half = (ci[1] - ci[0]) / 2
    if half <= target:
        return None
    p = md.correct / md.joined
    need = math.ceil(1.96**2 * max(p * (1 - p), 0.01) / target**2)
    rate = min(1.0, math.ceil(20 * sampling_rate * need / md.joined) / 20)
    rate = max(rate, min(1.0, sampling_rate + 0.05))
    return Suggestion(
        "sampling_rate",
        md.name,
        f"Raise the sampling rate for {md.name}",
        f"realized accuracy {p:.3f} rests on {md.joined} labels: 95% interval "
        f"[{ci[0]:.3f}, {ci[1]:.3f}] (+/-{half:.3f}); about {need} labels give +/-{target}. "
        "Sampled predictions are the ones kept for review and labeling.",
        f"sampling_rate = {rate:g} (LEANML_MONITOR_SAMPLING_RATE={rate:g}; live: "
        + _admin("PATCH", "/v1/monitoring/config", f'{{"sampling_rate": {rate:g}}}')
        + ")",
        {"interval": ci, "needed_labels": need, "rate": rate},
    )


def suggest_max_wait(md: ModelData, share: float = 0.5) -> Suggestion | None:
    """Queue wait is at least ``share`` of p99: the batcher waits too long for company."""
    batching = (md.serving or {}).get("batching") or {}
    wait, p99 = batch_figures(batching)["queue_wait_p99_s"], md.latency.get("p99")
    max_wait = batching.get("max_wait_ms")
    if wait is None or not p99 or max_wait is None or wait < share * p99 or max_wait <= 0.5:
        return None
    new = max(0.5, round(max_wait / 2, 1))
    return Suggestion(
        "max_wait_ms",
        md.name,
        f"Lower the micro-batching wait of {md.name}",
        f"queue wait p99 {wait * 1000:.2f} ms is {100 * wait / p99:.0f}% of the latency p99 "
        f"{p99 * 1000:.2f} ms (max_wait_ms = {max_wait:g}).",
        f"{SERVE_SETTINGS['max_wait_ms']} = {new:g} "
        f"(or {SERVE_SETTINGS['max_wait_ms_env']}={new:g})",
        {"queue_wait_p99_s": wait, "p99_s": p99, "new": new},
    )


def suggest_retrain(
    md: ModelData,
    rules: Sequence[AlertRule] = (),
    persist: int = 3,
    fall: float = 0.03,
) -> Suggestion | None:
    """Drift above its warning level in the last ``persist`` windows and accuracy fell."""
    rules = tuple(rules) or default_rules()
    limits = {
        r.metric.removeprefix("drift_"): r.warning
        for r in rules
        if r.metric.removeprefix("drift_") in DRIFT_SCORES
        and r.metric.startswith("drift_")
        and r.warning is not None
    }
    pts = [w for w in md.windows if w.count]
    if len(pts) < persist + 1 or not limits:
        return None
    last = pts[-persist:]
    drifted = [k for k, lim in limits.items() if all(w.drift.get(k, 0) > lim for w in last)]
    if not drifted:
        return None
    k = max(1, len(pts) // 3)
    before, after = _estimated(pts[:k]), _estimated(last)
    if before is None or after is None:
        return None
    if before - after < fall:
        return None
    task = (md.registry or {}).get("task") or md.name
    scores = ", ".join(f"{k} {last[-1].drift[k]:.2f} > {limits[k]:g}" for k in drifted)
    return Suggestion(
        "retrain",
        md.name,
        f"Retrain {md.name} on recent traffic",
        f"drift persisted for the last {persist} windows ({scores} in the latest) and the "
        f"estimated accuracy fell from {before:.3f} to {after:.3f}.",
        f"leanml train {task} --name {md.name}   (add recent labeled data to the training set "
        "first; the new version gets a fresh drift reference)",
        {"drifted": drifted, "before": before, "after": after},
    )


def suggest_drift_review(
    md: ModelData, rules: Sequence[AlertRule] = (), persist: int = 3
) -> Suggestion | None:
    """A drift alert is still open at the end of the range and the drift held for ``persist``
    windows, but the accuracy did not fall (:func:`suggest_retrain` covers that case): the
    traffic changed for good, and the drift reference should follow it."""
    rules = tuple(rules) or default_rules()
    drift_rules = {
        r.name: (r.metric.removeprefix("drift_"), r.warning)
        for r in rules
        if r.metric.startswith("drift_") and r.metric.removeprefix("drift_") in DRIFT_SCORES
    }
    open_ = [name for name in drift_rules if md.levels.get(name, "ok") != "ok"]
    pts = [w for w in md.windows if w.count]
    if not open_ or len(pts) < persist + 1:
        return None
    rule = open_[0]
    key, limit = drift_rules[rule]
    last = pts[-persist:]
    if limit is None or not all(w.drift.get(key, 0.0) > limit for w in last):
        return None
    since = next(
        (
            a["ts"]
            for a in reversed(md.alert_history)
            if a["rule"] == rule and a["previous"] == "ok"
        ),
        None,
    )
    when = "" if since is None else f" since {_hm(since)} UTC"
    real = _realized(last)
    acc = "" if real is None else f"; realized accuracy in those windows {real:.3f}"
    task = (md.registry or {}).get("task") or md.name
    return Suggestion(
        "drift_review",
        md.name,
        f"Check whether the drift of {md.name} is the new normal",
        f"{rule} has been {md.levels[rule]}{when}: {key} above {limit:g} in each of the last "
        f"{persist} windows (latest {last[-1].drift.get(key, 0.0):.2f}){acc}. The accuracy did "
        "not fall, so the model copes, but alerts stay open until the reference follows.",
        f"leanml train {task} --name {md.name}   (with recent labeled traffic in the training "
        "data: the new version's drift reference is today's mix)",
        {"rule": rule, "score": key, "since": since},
    )


def _hm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def _realized(windows: Sequence[WindowPoint]) -> float | None:
    n = sum(w.labeled for w in windows)
    return sum(w.labeled_correct for w in windows) / n if n else None


def _estimated(windows: Sequence[WindowPoint]) -> float | None:
    conf = sum(w.confidence_sum for w in windows)
    n = sum(w.count if w.confidence_count is None else w.confidence_count for w in windows)
    return conf / n if n else None


def suggest_retention(data: ReportData, min_span_s: float = 300.0) -> Suggestion | None:
    """At the observed growth the store outgrows its budget within the retention period."""
    budget, keep = data.store_budget_bytes, data.retention_max_age_s
    by_ts: dict[int, int] = {}
    for r in data.resources:
        if r.get("disk_bytes"):
            key = int(r["ts"])
            by_ts[key] = max(by_ts.get(key, 0), int(r["disk_bytes"]))
    if budget is None or keep is None or len(by_ts) < 2:
        return None
    t0, t1 = min(by_ts), max(by_ts)
    span = t1 - t0
    growth = (by_ts[t1] - by_ts[t0]) / span if span >= min_span_s else 0.0
    if growth <= 0:
        return None
    steady = growth * keep  # rows older than the retention age are deleted
    if steady <= budget:
        return None
    days = max(0.1, math.floor(10 * budget / growth / 86_400) / 10)
    seconds = int(days * 86_400)
    return Suggestion(
        "retention",
        None,
        "Shorten the monitor store's retention",
        f"the store grew {growth * 86_400 / 2**20:.1f} MiB/day over the last "
        f"{span / 60:.0f} min; kept for {keep / 86_400:g} days that is "
        f"{steady / 2**30:.2f} GiB, over the {budget / 2**30:.2f} GiB budget.",
        f"retention_max_age_s = {seconds}  ({days:g} days; MonitorConfig(retention_max_age_s="
        f"{seconds}), live: "
        + _admin("PATCH", "/v1/monitoring/config", f'{{"retention_max_age_s": {seconds}}}')
        + ")",
        {"growth_bytes_per_s": growth, "steady_bytes": steady, "new_max_age_s": seconds},
    )


def generate_suggestions(
    data: ReportData, sampling_rate: float = MonitorConfig.sampling_rate
) -> list[Suggestion]:
    out: list[Suggestion | None] = []
    for md in data.models.values():
        out += [
            suggest_cache(md),
            suggest_compact_variant(md),
            suggest_sampling_rate(md, sampling_rate),
            suggest_max_wait(md),
            suggest_retrain(md, data.rules_for(md)) or suggest_drift_review(md, data.rules_for(md)),
        ]
    out.append(suggest_retention(data))
    return [s for s in out if s is not None]
