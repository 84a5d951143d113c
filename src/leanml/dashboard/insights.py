"""Text insights: sentences generated from the report data, each citing the numbers behind it.

Every rule is a small pure function of a :class:`~leanml.dashboard.data.ModelData` (or the whole
:class:`~leanml.dashboard.data.ReportData`) that returns an :class:`Insight` or ``None``: it fires
only when its evidence is there and strong enough (minimum counts, minimum changes), so the
report never states a cause from thin data. "Baseline" is the first third of the windows with
data in the range, "recent" the last third.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from leanml.dashboard.data import ModelData, ReportData, WindowPoint
from leanml.monitor.drift import DRIFT_SCORES

__all__ = [
    "MODEL_RULES",
    "Insight",
    "accuracy_drop",
    "calibration_gap",
    "class_mix_shift",
    "compression_result",
    "error_rate",
    "generate_insights",
    "label_coverage",
    "latency_vs_load",
    "memory_growth",
]


@dataclasses.dataclass(frozen=True)
class Insight:
    rule: str
    model: str | None
    severity: str  # "info" | "warning" | "critical"
    text: str
    evidence: dict[str, Any]


def _thirds(windows: Sequence[WindowPoint]) -> tuple[list[WindowPoint], list[WindowPoint]]:
    k = max(1, len(windows) // 3)
    return list(windows[:k]), list(windows[-k:])


def _wmean(
    windows: Sequence[WindowPoint],
    value: Callable[[WindowPoint], float | None],
    weight: Callable[[WindowPoint], float],
) -> float | None:
    num = den = 0.0
    for w in windows:
        v = value(w)
        if v is not None and math.isfinite(v) and weight(w) > 0:
            num += v * weight(w)
            den += weight(w)
    return num / den if den else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def latency_vs_load(md: ModelData, min_windows: int = 4, rise: float = 1.5) -> Insight | None:
    """p99 rose by ``rise``x: say whether throughput (load) rose with it, or not (the model)."""
    pts = [w for w in md.windows if w.p99 is not None and w.count]
    if len(pts) < min_windows:
        return None
    base, recent = _thirds(pts)
    p99_b = _wmean(base, lambda w: w.p99, lambda w: w.count)
    p99_r = _wmean(recent, lambda w: w.p99, lambda w: w.count)
    tp_b = sum(w.throughput for w in base) / len(base)
    tp_r = sum(w.throughput for w in recent) / len(recent)
    if not p99_b or p99_r is None or p99_r < rise * p99_b:
        return None
    ev: dict[str, Any] = {
        "p99_before_s": p99_b,
        "p99_after_s": p99_r,
        "throughput_before": tp_b,
        "throughput_after": tp_r,
    }
    wait = ((md.serving or {}).get("batching") or {}).get("queue_wait_p99_s")
    head = (
        f"{md.name}: p99 latency rose from {_ms(p99_b)} to {_ms(p99_r)} "
        f"({p99_r / p99_b:.1f}x) while throughput went from {tp_b:.1f} to {tp_r:.1f} predictions/s"
    )
    if tp_b > 0 and tp_r >= 1.5 * tp_b:
        ev["queue_wait_p99_s"] = wait
        extra = f" and queue wait p99 is {_ms(wait)}" if wait is not None else ""
        text = f"{head}{extra}, so the cause is load, not the model: add workers or capacity."
        return Insight("latency_vs_load", md.name, "warning", text, ev)
    text = (
        f"{head} (load roughly unchanged), so the cause is not load: look at the model variant, "
        "input sizes or the host."
    )
    return Insight("latency_vs_load", md.name, "warning", text, ev)


def _mean_drift(windows: Sequence[WindowPoint]) -> dict[str, float | None]:
    """Each drift score (DRIFT_SCORES) averaged over the windows, weighted by predictions."""
    out: dict[str, float | None] = {}
    for key in DRIFT_SCORES:
        out[key] = _wmean(windows, lambda w: w.drift.get(key), lambda w: w.count)  # noqa: B023
    return out


def accuracy_drop(md: ModelData, drop: float = 0.05, min_windows: int = 3) -> Insight | None:
    """Estimated (or realized) accuracy fell by ``drop``; name input drift as the cause if seen."""
    pts = [w for w in md.windows if w.count]
    if len(pts) < min_windows:
        return None
    base, recent = _thirds(pts)
    kind = "estimated"
    before = _wmean(base, lambda w: w.estimated_accuracy, lambda w: w.count)
    after = _wmean(recent, lambda w: w.estimated_accuracy, lambda w: w.count)
    rb = _wmean(base, lambda w: w.realized_accuracy, lambda w: w.labeled)
    ra = _wmean(recent, lambda w: w.realized_accuracy, lambda w: w.labeled)
    if rb is not None and ra is not None and rb - ra >= drop:
        kind, before, after = "realized", rb, ra
    if before is None or after is None or before - after < drop:
        return None
    drift = _mean_drift(recent)
    psi, ks = drift["class_psi"], drift["confidence_ks"]
    ev = {"kind": kind, "before": before, "after": after, **drift}
    head = f"{md.name}: {kind} accuracy fell from {before:.3f} to {after:.3f}"
    drifted = (psi is not None and psi >= 0.1) or (ks is not None and ks >= 0.1)
    if drifted:
        parts = []
        if psi is not None:
            parts.append(f"class PSI {psi:.2f}")
        if ks is not None:
            parts.append(f"confidence KS {ks:.2f}")
        text = (
            f"{head} while the inputs drifted from the training reference "
            f"({', '.join(parts)} in recent windows): the traffic changed, not the service."
        )
        return Insight("accuracy_drop", md.name, "critical", text, ev)
    text = f"{head} without input drift (class PSI {psi or 0:.2f}): check the labels and upstream."
    return Insight("accuracy_drop", md.name, "warning", text, ev)


def calibration_gap(md: ModelData, gap: float = 0.05, min_labels: int = 100) -> Insight | None:
    """The confidence-based estimate disagrees with the joined labels by ``gap`` or more."""
    labeled = [w for w in md.windows if w.labeled]
    n = sum(w.labeled for w in labeled)
    if n < min_labels:
        return None
    real = sum(w.labeled_correct for w in labeled) / n
    est = _wmean(labeled, lambda w: w.estimated_accuracy, lambda w: w.labeled)
    if est is None or abs(est - real) < gap:
        return None
    way = "over" if est > real else "under"
    text = (
        f"{md.name}: the estimated accuracy ({est:.3f}) is {way}-confident by "
        f"{abs(est - real):.3f} against the realized accuracy ({real:.3f}) of {n} labeled "
        "predictions in the same windows: trust the realized figure."
    )
    return Insight(
        "calibration_gap", md.name, "warning", text, {"estimated": est, "realized": real, "n": n}
    )


def class_mix_shift(md: ModelData, shift: float = 0.10, min_count: int = 200) -> Insight | None:
    """One predicted class's share moved by ``shift`` or more against the reference."""
    ref = md.reference_counts
    total = sum(md.label_counts.values())
    if not ref or total < min_count:
        return None
    rt = sum(ref.values())
    keys = set(ref) | set(md.label_counts)
    diffs = {k: md.label_counts.get(k, 0) / total - ref.get(k, 0) / rt for k in keys}
    label = max(diffs, key=lambda k: abs(diffs[k]))
    if abs(diffs[label]) < shift:
        return None
    live, base = md.label_counts.get(label, 0) / total, ref.get(label, 0) / rt
    text = (
        f"{md.name}: '{label}' is {100 * live:.1f}% of predictions against "
        f"{100 * base:.1f}% in the validation reference ({total} predictions)."
    )
    return Insight(
        "class_mix_shift",
        md.name,
        "warning",
        text,
        {"label": label, "live_share": live, "reference_share": base, "n": total},
    )


def label_coverage(md: ModelData, low: float = 0.05, min_count: int = 500) -> Insight | None:
    """Few predictions have ground truth: realized accuracy rests on a small sample."""
    cov = md.label_coverage
    if cov is None or md.count < min_count or cov >= low:
        return None
    text = (
        f"{md.name}: only {100 * cov:.1f}% of {md.count} predictions received ground truth "
        f"({md.joined} labels), so realized accuracy is uncertain; rely on the estimate meanwhile."
        if md.joined
        else f"{md.name}: none of {md.count} predictions received ground truth, so accuracy is "
        "only estimated; send labels to POST /v1/models/{name}/feedback.".replace("{name}", md.name)
    )
    return Insight(
        "label_coverage",
        md.name,
        "info",
        text,
        {"coverage": cov, "joined": md.joined, "count": md.count},
    )


def error_rate(md: ModelData, high: float = 0.01, min_count: int = 100) -> Insight | None:
    n = md.count + md.errors
    if n < min_count or md.errors / n < high:
        return None
    rate = md.errors / n
    text = f"{md.name}: {md.errors} of {n} predictions failed ({100 * rate:.2f}%)."
    return Insight(
        "error_rate",
        md.name,
        "critical" if rate >= 0.05 else "warning",
        text,
        {"errors": md.errors, "n": n, "rate": rate},
    )


def compression_result(md: ModelData) -> Insight | None:
    """What the accuracy guard decided for the compact variant."""
    guard = (md.compression or {}).get("guard")
    if not guard:
        return None
    ob, cb = guard.get("original_bytes"), guard.get("compact_bytes")
    if guard.get("passed") and ob and cb:
        acc_b, acc_a = guard.get("accuracy_before"), guard.get("accuracy_after")
        delta = f" with accuracy {acc_b:.4f} -> {acc_a:.4f}" if acc_b is not None else ""
        agree = guard.get("agreement")
        text = (
            f"{md.name}: the compact variant is {100 * (1 - cb / ob):.1f}% smaller "
            f"({ob / 2**20:.2f} -> {cb / 2**20:.2f} MiB){delta}"
            + (f" and {100 * agree:.2f}% agreement with the original." if agree else ".")
        )
        return Insight(
            "compression_result",
            md.name,
            "info",
            text,
            {"original_bytes": ob, "compact_bytes": cb, **guard},
        )
    text = f"{md.name}: no compact variant passed the accuracy guard ({guard.get('reason', '')})."
    return Insight("compression_result", md.name, "info", text, dict(guard))


def memory_growth(data: ReportData, ratio: float = 1.2, min_mib: float = 50.0) -> Insight | None:
    """A process's RSS grew by ``ratio`` and at least ``min_mib`` over the range."""
    worst = None
    for proc in sorted({r["process"] for r in data.resources}):
        rows = [r for r in data.resources if r["process"] == proc]
        if len(rows) < 2:
            continue
        a, b = rows[0]["rss_bytes"], rows[-1]["rss_bytes"]
        if a > 0 and b >= ratio * a and (b - a) / 2**20 >= min_mib:
            if worst is None or b - a > worst[2] - worst[1]:
                worst = (proc, a, b, rows[-1]["ts"] - rows[0]["ts"])
    if worst is None:
        return None
    proc, a, b, span = worst
    text = (
        f"process {proc}: resident memory grew from {a / 2**20:.0f} to {b / 2**20:.0f} MiB "
        f"in {span / 60:.0f} min; check the cache and buffer bounds."
    )
    return Insight(
        "memory_growth",
        None,
        "warning",
        text,
        {"process": proc, "rss_before": a, "rss_after": b, "span_s": span},
    )


MODEL_RULES: tuple[Callable[[ModelData], Insight | None], ...] = (
    latency_vs_load,
    accuracy_drop,
    calibration_gap,
    class_mix_shift,
    label_coverage,
    error_rate,
    compression_result,
)


def generate_insights(data: ReportData) -> list[Insight]:
    """Every rule over every model, then the process-level rules."""
    out = [i for md in data.models.values() for rule in MODEL_RULES if (i := rule(md))]
    mem = memory_growth(data)
    if mem is not None:
        out.append(mem)
    return out
