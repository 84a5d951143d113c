"""What a report shows, read from the monitor store (merged across processes) and the registry.

:func:`collect` turns the store's per-process window snapshots into one series per model (counters
summed, latency sketches merged per window, so a window's p99 is the p99 of every process's
predictions in it), reads joined ground truth (realized accuracy per window of *prediction* time
and the confusion matrix), the alert history (replayed to the current level of every rule and
process), the sampled predictions (duplicate-input rate), process resources, per model the
registry's variants, guard verdict and drift reference, and the online shadow check of the
version that served last (:mod:`leanml.monitor.shadow`: live agreement with the original and its
fallback; a running server's own figures win when handed over in ``serving``).

Everything here is plain data (dataclasses of floats, lists and dicts); the charts, insights,
suggestions and the HTML are computed from it, so each of them can be tested on constructed data.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from leanml._intervals import wilson
from leanml.config import AlertRule, default_rules
from leanml.errors import MonitorError
from leanml.monitor.alerts import health_from_levels
from leanml.monitor.drift import DRIFT_SCORES, psi
from leanml.monitor.shadow import read_decision
from leanml.monitor.sketch import LogSketch
from leanml.monitor.store import MonitorStore
from leanml.registry import LoadedModel

__all__ = [
    "ModelData",
    "ReportData",
    "WindowPoint",
    "batch_figures",
    "collect",
    "collect_windows",
    "model_shadow_lines",
    "shadow_lines",
    "wilson_interval",
]


@dataclasses.dataclass
class WindowPoint:
    """One time window of one model, merged over every process that served it."""

    start: float
    width: float
    count: int = 0
    errors: int = 0
    confidence_sum: float = 0.0
    confidence_count: int | None = None  # predictions with a confidence (None: all of them)
    p50: float | None = None  # seconds
    p95: float | None = None
    p99: float | None = None
    labeled: int = 0  # predictions made in this window whose label has arrived
    labeled_correct: int = 0
    drift: dict[str, float] = dataclasses.field(default_factory=dict)  # keys: DRIFT_SCORES
    #: score -> [lower, upper] 95% (bootstrap), when one process scored the window alone (the
    #: intervals of several processes' samples do not combine)
    drift_intervals: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    label_counts: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Predictions per second over the window."""
        return self.count / self.width if self.width else 0.0

    @property
    def estimated_accuracy(self) -> float | None:
        n = self.count if self.confidence_count is None else self.confidence_count
        return self.confidence_sum / n if n else None

    @property
    def realized_accuracy(self) -> float | None:
        return self.labeled_correct / self.labeled if self.labeled else None


@dataclasses.dataclass
class ModelData:
    """Everything the report knows about one model."""

    name: str
    windows: list[WindowPoint] = dataclasses.field(default_factory=list)
    count: int = 0
    errors: int = 0
    latency: dict[str, Any] = dataclasses.field(default_factory=dict)  # seconds
    label_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    reference_counts: dict[str, int] | None = None
    joined: int = 0
    correct: int = 0
    confusion_labels: list[str] = dataclasses.field(default_factory=list)
    confusion: list[list[int]] = dataclasses.field(default_factory=list)  # rows true, cols pred
    estimated_accuracy: float | None = None
    estimated_n: int = 0  # predictions with a confidence behind the estimate
    alert_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    levels: dict[str, str] = dataclasses.field(default_factory=dict)  # rule -> worst level now
    reasons: list[str] = dataclasses.field(default_factory=list)
    health: str = "healthy"
    processes: list[str] = dataclasses.field(default_factory=list)
    variants_seen: list[str] = dataclasses.field(default_factory=list)
    sampled: int = 0
    sampled_unique_inputs: int = 0
    low_confidence_sampled: int = 0
    registry: dict[str, Any] | None = None  # ModelRegistry.report(name)
    compression: dict[str, Any] | None = None  # compact manifest: guard + details
    payload_sizes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    components: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    serving: dict[str, Any] | None = None  # live figures from leanml serve (cache, batching)
    rules: tuple[AlertRule, ...] | None = None  # this model's alert rules (None: the report's)
    #: the shadow check of the version that served last (the keys of
    #: leanml.monitor.shadow.read_decision); None when none ran on it
    shadow: dict[str, Any] | None = None
    served_version: str | None = None  # of the newest window
    served_variant: str | None = None

    @property
    def realized_accuracy(self) -> float | None:
        return self.correct / self.joined if self.joined else None

    @property
    def duplicate_rate(self) -> float | None:
        """Share of sampled predictions whose input was seen before in the sample."""
        if self.sampled < 1:
            return None
        return 1.0 - self.sampled_unique_inputs / self.sampled

    @property
    def label_coverage(self) -> float | None:
        return self.joined / self.count if self.count else None


@dataclasses.dataclass
class ReportData:
    since: float
    until: float
    models: dict[str, ModelData]
    resources: list[dict[str, Any]]  # ts, process, rss_bytes, cpu_percent, disk_bytes, gc
    store_url: str = ""
    rules: tuple[AlertRule, ...] = dataclasses.field(default_factory=default_rules)
    benchmarks: dict[str, Any] = dataclasses.field(default_factory=dict)
    retention_max_age_s: float | None = 30 * 86_400.0
    store_budget_bytes: int | None = None

    def rules_for(self, md: ModelData) -> tuple[AlertRule, ...]:
        """The alert rules the model was monitored with: its own if known, else the report's."""
        return md.rules if md.rules is not None else self.rules


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (None without data)."""
    lower, upper = wilson(correct, n, z)
    return None if lower is None or upper is None else (lower, upper)


def collect(
    store: MonitorStore,
    *,
    since: float | None = None,
    until: float | None = None,
    models: Sequence[str] | None = None,
    registry: Any | None = None,
    rules: Iterable[AlertRule] | Mapping[str, Iterable[AlertRule]] | None = None,
    serving: Mapping[str, Mapping[str, Any]] | None = None,
    benchmarks: Mapping[str, Any] | None = None,
    max_detail_rows: int = 200_000,
    loaded: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportData:
    """Read the store (and optionally a registry) into a :class:`ReportData`.

    ``loaded`` (model name -> ``{"original": m, "compact": m}``, each ``m`` a
    :class:`~leanml.registry.LoadedModel` or a bare model) hands over variants already in
    memory, so the report does not load them from the registry again: a LoadedModel also gives
    the registry report its load time and size; a bare model only serves the size breakdown.

    ``rules`` are the alert rules the models were monitored with (thresholds drawn on the charts,
    drift limits of the suggestions): one set for every model, or a set per model name (the
    others get the default rules).
    """
    per_model: dict[str, Iterable[AlertRule]] = {}
    shared = default_rules()
    if isinstance(rules, Mapping):
        per_model = dict(rules)
    elif rules is not None:
        shared = tuple(rules)
    until = time.time() if until is None else until
    since = until - 3600.0 if since is None else since
    if not sa.inspect(store.engine).has_table(store.snapshots.name):
        raise MonitorError(f"{store.url} holds no leanml monitor data (no {store.snapshots.name})")
    snaps = store.read_snapshots(since=since, until=until)
    names = sorted({r["model"] for r in snaps})
    if registry is not None:
        names = sorted(set(names) | set(registry.list_models()))
    if models:
        names = [n for n in names if n in set(models)]
    out: dict[str, ModelData] = {}
    for name in names:
        rows = [r for r in snaps if r["model"] == name]
        md = _model_windows(name, rows, store, since, until, max_detail_rows)
        if registry is not None and name in registry.list_models():
            _fill_registry(md, registry, (loaded or {}).get(name))
        _fill_samples(md, store, since, until, max_detail_rows)
        _fill_alerts(md, store, until)
        if md.reference_counts:
            for w in md.windows:
                if w.label_counts:
                    w.drift["class_psi"] = _psi(md.reference_counts, w.label_counts)
        if serving and name in serving:
            md.serving = dict(serving[name])
        _fill_shadow(md, store)
        if name in per_model:
            md.rules = tuple(per_model[name])
        out[name] = md
    return ReportData(
        since=since,
        until=until,
        models=out,
        resources=_resources(store, since, until),
        store_url=store.url,
        rules=shared,
        benchmarks=dict(benchmarks or {}),
    )


def collect_windows(
    store: MonitorStore,
    *,
    since: float,
    until: float | None = None,
    max_detail_rows: int = 200_000,
) -> dict[str, ModelData]:
    """Per model in the store: its merged windows with their realized accuracy, nothing else.

    What the live dashboard seeds its charts with; :func:`collect` reads the same and, on top,
    the registry, the sampled predictions, the alerts and the resources.
    """
    until = time.time() if until is None else until
    snaps = store.read_snapshots(since=since, until=until)
    return {
        name: _model_windows(
            name, [r for r in snaps if r["model"] == name], store, since, until, max_detail_rows
        )
        for name in sorted({r["model"] for r in snaps})
    }


def _model_windows(
    name: str,
    rows: list[dict[str, Any]],
    store: MonitorStore,
    since: float,
    until: float,
    cap: int,
) -> ModelData:
    """One model's windows (from its snapshot ``rows``) and the labels joined to them."""
    md = ModelData(name)
    _fill_windows(md, rows)
    _fill_labels(md, store, since, until, cap)
    return md


def _psi(reference: Mapping[str, int], live: Mapping[str, int]) -> float:
    keys = list(reference) + [k for k in live if k not in reference]
    exp = np.asarray([reference.get(k, 0) for k in keys], dtype=np.float64)
    act = np.asarray([live.get(k, 0) for k in keys], dtype=np.float64)
    return psi(exp, act)


def _fill_windows(md: ModelData, rows: list[dict[str, Any]]) -> None:
    by_start: dict[float, list[dict[str, Any]]] = defaultdict(list)
    total = None
    for r in rows:
        by_start[float(r["window_start"])].append(r)
    for start in sorted(by_start):
        group = by_start[start]
        w = WindowPoint(start, float(group[0]["window_s"]))
        sketch: LogSketch | None = None
        drift_sum: dict[str, float] = defaultdict(float)
        drift_n: dict[str, int] = defaultdict(int)
        for r in group:
            w.count += int(r["count"])
            w.errors += int(r["errors"])
            w.confidence_sum += float(r["confidence_sum"])
            if r.get("confidence_count") is not None:  # stores written since the column exists
                w.confidence_count = (w.confidence_count or 0) + int(r["confidence_count"])
            md.joined += int(r["joined"])
            md.correct += int(r["correct"])
            for lab, c in json.loads(r["label_counts"]).items():
                w.label_counts[lab] = w.label_counts.get(lab, 0) + int(c)
            if r["sketch"]:
                sk = LogSketch.from_bytes(bytes(r["sketch"]))
                if sketch is None:
                    sketch = sk
                else:
                    sketch.merge(sk)
            if r["drift"]:
                d = json.loads(r["drift"])
                for key in DRIFT_SCORES:  # weighted by the process's predictions in the window
                    if d.get(key) is not None and math.isfinite(d[key]):
                        drift_sum[key] += float(d[key]) * int(r["count"])
                        drift_n[key] += int(r["count"])
            if r["process"] not in md.processes:
                md.processes.append(r["process"])
            if r["variant"] not in md.variants_seen:
                md.variants_seen.append(r["variant"])
            md.served_version, md.served_variant = str(r["version"]), str(r["variant"])
        if sketch is not None and sketch.count:
            w.p50, w.p95, w.p99 = (float(v) for v in sketch.quantiles([0.5, 0.95, 0.99]))
            if total is None:
                total = LogSketch.from_bytes(sketch.to_bytes())
            else:
                total.merge(sketch)
        w.drift = {k: drift_sum[k] / drift_n[k] for k in drift_sum if drift_n[k]}
        scored = [json.loads(r["drift"]) for r in group if r["drift"]]
        if len(scored) == 1:
            w.drift_intervals = dict(scored[0].get("intervals") or {})
        md.windows.append(w)
        md.count += w.count
        md.errors += w.errors
        for lab, c in w.label_counts.items():
            md.label_counts[lab] = md.label_counts.get(lab, 0) + c
    conf = sum(w.confidence_sum for w in md.windows)
    conf_n = sum(w.count if w.confidence_count is None else w.confidence_count for w in md.windows)
    md.estimated_accuracy = conf / conf_n if conf_n else None
    md.estimated_n = conf_n
    if total is not None and total.count:
        qs = total.quantiles([0.5, 0.95, 0.99, 0.999])
        md.latency = {
            "count": total.count,
            "avg": total.mean,
            "max": total.max,
            **{k: float(v) for k, v in zip(("p50", "p95", "p99", "p999"), qs, strict=True)},
        }


def _fill_registry(md: ModelData, registry: Any, loaded: Mapping[str, Any] | None = None) -> None:
    in_memory = [m for m in (loaded or {}).values() if isinstance(m, LoadedModel)]
    try:
        md.registry = registry.report(md.name, loaded=in_memory)
        original = registry.manifest(md.name, variant="original")
    except Exception as exc:  # a broken artifact must not break the report
        md.registry = {"error": str(exc)}
        return
    ref = original.extra.get("reference") or {}
    if ref.get("class_counts"):
        md.reference_counts = {str(k): int(v) for k, v in ref["class_counts"].items()}
    md.payload_sizes["original"] = {k: int(v["size"]) for k, v in original.payload.items()}
    if "compact" in (md.registry or {}).get("variants", {}):
        try:
            compact = registry.manifest(md.name, variant="compact")
        except Exception:
            return
        md.payload_sizes["compact"] = {k: int(v["size"]) for k, v in compact.payload.items()}
        md.compression = {
            k: v for k, v in compact.extra.items() if k not in ("reference", "dataset")
        }
        md.compression.setdefault("test_accuracy", compact.metrics.get("test", {}).get("accuracy"))
        md.components = _components(registry, md.name, loaded)


def _components(
    registry: Any, name: str, loaded: Mapping[str, Any] | None = None
) -> dict[str, dict[str, int]]:
    """Bytes per model component of both variants (leanml.compress.size_breakdown); ``loaded``
    holds variants the caller has in memory already (``{"original": ..., "compact": ...}``,
    models or LoadedModel), the others are loaded from the registry (a compact that falls back
    reuses a loaded original)."""
    loaded = loaded or {}
    try:
        from leanml.compress import size_breakdown

        held = loaded.get("original")
        if held is None:
            held = registry.load(name, variant="original")
        original = held.model if isinstance(held, LoadedModel) else held
        compact = loaded.get("compact")
        if isinstance(compact, LoadedModel):
            compact = compact.model
        if compact is None:
            reuse = held if isinstance(held, LoadedModel) else None
            served = registry.load(name, variant="compact", original=reuse)
            compact = served.model if served.variant == "compact" else None
        if compact is None:  # fell back: the guard rejected it
            return {"original": size_breakdown(original)["before"]}
        parts = size_breakdown(original, compact)
    except Exception:  # the breakdown is a nicety; never let it break the report
        return {}
    return {
        "original": {k: int(v) for k, v in parts["before"].items() if v},
        "compact": {k: int(v["raw"]) for k, v in parts.get("after", {}).items() if v["raw"]},
    }


def _fill_shadow(md: ModelData, store: MonitorStore) -> None:
    """The shadow check of the version that served last: a running server's figures when the
    report was handed them (``serving``), else the store's merged counts and decision."""
    live = (md.serving or {}).get("shadow")
    if isinstance(live, Mapping):
        md.shadow = dict(live)
        return
    version = md.served_version
    if version is None and md.registry and md.registry.get("version") is not None:
        version = str(md.registry["version"])
    if version is None:
        return
    try:
        md.shadow = read_decision(store, md.name, version)
    except Exception:  # a figure of the report, never a reason for it to fail
        md.shadow = None


def _pct(value: float | None, lower: float | None, upper: float | None) -> str:
    if value is None:
        return "-"
    if lower is None or upper is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{lower:.3f}, {upper:.3f}]"


def shadow_lines(shadow: Mapping[str, Any] | None, *, serving_compact: bool = False) -> list[str]:
    """The shadow check in a few sentences: live agreement with the original (95% Wilson
    interval, shadowed predictions, threshold), the fallback state and its reason, and both
    variants' realized accuracy where ground truth joined. Nothing without figures, or
    ``["shadow check off"]`` when a compact variant serves without one (``serving_compact``)."""
    if not shadow:
        return ["shadow check off"] if serving_compact else []
    n = int(shadow.get("shadowed") or 0)
    th = shadow.get("threshold")
    threshold = f" (threshold {th:g})" if isinstance(th, int | float) else ""
    if n:
        agreement = _pct(
            shadow.get("agreement"), shadow.get("agreement_lower"), shadow.get("agreement_upper")
        )
        line = f"live agreement with the original: {agreement} over {n:,} shadowed{threshold}"
        diff = shadow.get("proba_diff_mean")
        if isinstance(diff, int | float):
            line += f"; mean top-class probability difference {diff:.4f}"
    else:
        line = f"live agreement with the original: nothing shadowed yet{threshold}"
    lines = [line]
    reason = shadow.get("reason") or "no reason recorded"
    if shadow.get("alarm") and not shadow.get("fallen_back"):
        lines.append(f"agreement test failed (fallback off: alert only): {reason}")
    elif shadow.get("fallen_back"):
        lines.append(f"fell back to the original: {reason}")
    else:
        lines.append("fallback: none (the agreement test holds)")
    j = int(shadow.get("joined") or 0)
    if j:
        compact = _pct(
            shadow.get("accuracy_compact"),
            shadow.get("accuracy_compact_lower"),
            shadow.get("accuracy_compact_upper"),
        )
        original = _pct(
            shadow.get("accuracy_original"),
            shadow.get("accuracy_original_lower"),
            shadow.get("accuracy_original_upper"),
        )
        lines.append(
            f"realized accuracy of the {j:,} shadowed with ground truth: compact {compact}, "
            f"original {original}"
        )
    return lines


def model_shadow_lines(md: ModelData) -> list[str]:
    """``md``'s shadow check in sentences (:func:`shadow_lines`): nothing without figures,
    "shadow check off" when the stats of a server handed over in ``serving`` say so."""
    serving = md.serving or {}
    off_known = "shadow" in serving and serving.get("variant") == "compact"
    return shadow_lines(md.shadow, serving_compact=off_known)


def _fill_labels(md: ModelData, store: MonitorStore, since: float, until: float, cap: int) -> None:
    t = store.labels
    q = (
        sa.select(t.c.pred_ts, t.c.true_label, t.c.predicted_label)
        .where(t.c.model == md.name, t.c.pred_ts >= since, t.c.pred_ts < until)
        .order_by(t.c.id.desc())
        .limit(cap)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    if not rows:
        return
    index = {w.start: w for w in md.windows}
    width = md.windows[0].width if md.windows else 60.0
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    for pred_ts, true, pred in rows:
        start = math.floor(pred_ts / width) * width
        w = index.get(start)
        if w is not None:
            w.labeled += 1
            w.labeled_correct += int(true == pred)
        pairs[(str(true), str(pred))] += 1
    # realized accuracy over the range: predictions made in it whose labels arrived
    md.joined = len(rows)
    md.correct = sum(c for (a, b), c in pairs.items() if a == b)
    labels = sorted({a for a, _ in pairs} | {b for _, b in pairs})
    pos = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for (a, b), c in pairs.items():
        matrix[pos[a]][pos[b]] += c
    md.confusion_labels, md.confusion = labels, matrix


def _fill_samples(md: ModelData, store: MonitorStore, since: float, until: float, cap: int) -> None:
    rows = list(itertools.islice(store.read_details(md.name, since, until, newest_first=True), cap))
    keys = [r["input_hash"] or r["input_text"] for r in rows if r["input_hash"] or r["input_text"]]
    md.sampled = len(keys)
    md.sampled_unique_inputs = len(set(keys))
    md.low_confidence_sampled = sum(1 for r in rows if r["reason"] == "low_confidence")


def _fill_alerts(md: ModelData, store: MonitorStore, until: float) -> None:
    t = store.alerts
    q = sa.select(t).where(t.c.model == md.name, t.c.ts < until).order_by(t.c.ts, t.c.id)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    current: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        current[(r["variant"], r["process"], r["rule"])] = r
    worst: dict[str, dict[str, Any]] = {}
    rank = {"ok": 0, "warning": 1, "critical": 2}
    for (_, _, rule), r in current.items():
        if rule not in worst or rank[r["level"]] > rank[worst[rule]["level"]]:
            worst[rule] = r
    md.levels = {rule: r["level"] for rule, r in sorted(worst.items())}
    md.health = health_from_levels(md.levels.values())
    md.reasons = [
        f"{rule}: {r['level']} - {r['reason']}"
        for rule, r in sorted(worst.items(), key=lambda kv: -rank[kv[1]["level"]])
        if r["level"] != "ok"
    ]
    md.alert_history = rows[-200:]


def _resources(store: MonitorStore, since: float, until: float) -> list[dict[str, Any]]:
    t = store.resources
    q = sa.select(t).where(t.c.ts >= since, t.c.ts < until).order_by(t.c.ts)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    seen: set[tuple[str, int]] = set()
    out = []
    for r in rows:  # several monitors of one process sample the same process: keep one per second
        key = (r["process"], int(r["ts"]))
        if key in seen:
            continue
        seen.add(key)
        try:
            r["gc"] = json.loads(r["gc"]) if r["gc"] else {}
        except ValueError:
            r["gc"] = {}
        out.append(r)
    return out


def batch_figures(batching: Mapping[str, Any] | None) -> dict[str, Any]:
    """Micro-batch sizes ``{label: count}``, mean size and queue-wait p99 (seconds) from the
    serving layer's batcher stats: either ``batch_sizes`` ({size: count}) or leanml serve's
    histogram (``size_buckets`` [(upper bound, count)], ``size_counts`` with an overflow
    bucket, ``wait_counts`` over the upper bounds ``wait_buckets``, no p99 without them);
    ``queue_wait_p99_s`` wins when given."""
    b = batching or {}
    sizes: dict[str, int] = {}
    if b.get("batch_sizes"):
        sizes = {
            str(k): int(v) for k, v in sorted(b["batch_sizes"].items(), key=lambda kv: int(kv[0]))
        }
    elif b.get("size_buckets"):
        lo = 1
        for upper, count in b["size_buckets"]:
            label = str(upper) if upper == lo else f"{lo}-{upper}"
            if count:
                sizes[label] = int(count)
            lo = int(upper) + 1
        counts = b.get("size_counts") or []
        if len(counts) > len(b["size_buckets"]) and counts[-1]:
            sizes[f">{lo - 1}"] = int(counts[-1])
    mean = b.get("mean_batch_size")
    if mean is None and b.get("batch_sizes"):
        n = sum(int(c) for c in b["batch_sizes"].values())
        mean = sum(int(k) * int(c) for k, c in b["batch_sizes"].items()) / n if n else None
    wait = b.get("queue_wait_p99_s")
    if wait is None and b.get("wait_counts"):
        # the stats carry their bucket bounds; figures without them (a server older than
        # the ``wait_buckets`` key) give no p99 rather than one read against guessed bounds
        bounds = b.get("wait_buckets")
        counts = list(b["wait_counts"])
        total = sum(counts)
        if bounds and total:
            seen = 0
            for i, c in enumerate(counts):
                seen += c
                if seen >= 0.99 * total:
                    wait = float(bounds[min(i, len(bounds) - 1)])  # bucket upper bound
                    break
    return {"sizes": sizes, "mean": mean, "queue_wait_p99_s": wait}
