"""PNG charts of a :class:`~leanml.dashboard.data.ReportData` (matplotlib, Agg canvas).

Each function returns PNG bytes, or ``None`` when there is nothing to draw (the report then says
what is missing instead of showing an empty chart). Figures are built with
``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot, so rendering holds no global
state and is safe from any thread. Times are UTC; latencies in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure

from leanml.config import AlertRule
from leanml.dashboard.data import ModelData, ReportData, batch_figures
from leanml.monitor.drift import DRIFT_SCORES

__all__ = [
    "accuracy_chart",
    "batch_chart",
    "cache_chart",
    "class_mix_chart",
    "compression_components_chart",
    "compression_quality_chart",
    "compression_size_chart",
    "confusion_chart",
    "drift_chart",
    "latency_chart",
    "model_charts",
    "resources_chart",
    "throughput_chart",
]

_COLORS = {"p50": "#2b7bba", "p95": "#f0a202", "p99": "#d7263d", "warning": "#f0a202"}
_CRIT = "#d7263d"
#: the drift chart's legend, one entry per score of DRIFT_SCORES (a new score must be placed
#: here). None: not drawn, as it does not share the PSI / KS scale from 0: the chi-square
#: statistic grows with the window's size, and the OOV delta is a signed change of a rate.
_DRIFT_LABELS: dict[str, str | None] = {
    "class_psi": "class PSI",
    "class_chi2": None,
    "confidence_ks": "confidence KS",
    "input_length_ks": "input length KS",
    "oov_delta": None,
}


def _fig(height: float = 3.2, width: float = 7.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tick-placement notes on odd ranges are not errors
        warnings.filterwarnings("ignore", message="AutoDateLocator", category=UserWarning)
        fig.tight_layout()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _times(ts: Iterable[float]) -> Any:
    return [dt.datetime.fromtimestamp(t, tz=dt.UTC) for t in ts]


def _floats(values: Iterable[float | None]) -> Any:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _time_axis(ax: Any, maxticks: int = 8) -> None:
    lo, hi = ax.get_xlim()  # days; a single window would give the locator nothing to divide
    if hi - lo < 10 / 1440:
        mid = (lo + hi) / 2
        ax.set_xlim(mid - 5 / 1440, mid + 5 / 1440)
    ax.xaxis.set_major_locator(AutoDateLocator(maxticks=maxticks, tz=dt.UTC))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=dt.UTC))
    ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)


def _rule(rules: Iterable[AlertRule], metric: str) -> AlertRule | None:
    return next((r for r in rules if r.metric == metric), None)


def _thresholds(ax: Any, rule: AlertRule | None, scale: float = 1.0, unit: str = "") -> None:
    if rule is None:
        return
    for level, color in (("warning", _COLORS["warning"]), ("critical", _CRIT)):
        value = getattr(rule, level)
        if value is not None:
            ax.axhline(
                value * scale,
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{rule.name} {level} ({value * scale:g}{unit})",
            )


def latency_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    pts = [w for w in md.windows if w.p50 is not None]
    if not pts:
        return None
    fig = _fig()
    ax = fig.add_subplot()
    t = _times(w.start + w.width / 2 for w in pts)
    for q in ("p50", "p95", "p99"):
        ax.plot(t, [getattr(w, q) * 1000 for w in pts], marker=".", label=q, color=_COLORS[q])
    top = max(w.p99 or 0 for w in pts) * 1000
    rule = _rule(rules, "latency_p99_s")
    if rule is not None and rule.warning is not None and rule.warning * 1000 <= top * 1.5:
        _thresholds(ax, rule, 1000, " ms")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{md.name}: latency per window (all processes merged)")
    ax.legend(fontsize=8, loc="upper left")
    _time_axis(ax)
    return _png(fig)


def throughput_chart(md: ModelData) -> bytes | None:
    if not md.windows:
        return None
    fig = _fig()
    ax = fig.add_subplot()
    t = _times(w.start + w.width / 2 for w in md.windows)
    ax.plot(t, [w.throughput for w in md.windows], marker=".", color="#2b7bba", label="predictions")
    if any(w.errors for w in md.windows):
        ax.plot(t, [w.errors / w.width for w in md.windows], color=_CRIT, label="errors")
    ax.set_ylabel("predictions per second")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{md.name}: throughput per window")
    ax.legend(fontsize=8, loc="upper left")
    _time_axis(ax)
    return _png(fig)


def accuracy_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    est = [(w.start + w.width / 2, w.estimated_accuracy) for w in md.windows if w.count]
    real = [(w.start + w.width / 2, w.realized_accuracy) for w in md.windows if w.labeled]
    if not est and not real:
        return None
    fig = _fig()
    ax = fig.add_subplot()
    if est:
        ax.plot(
            _times(a for a, _ in est), _floats(b for _, b in est), marker=".", label="estimated"
        )
    if real:
        ax.plot(
            _times(a for a, _ in real),
            _floats(b for _, b in real),
            marker="o",
            color="#1b998b",
            label="realized (labels joined)",
        )
    _thresholds(ax, _rule(rules, "realized_accuracy"))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy (share correct)")
    ax.set_title(f"{md.name}: realized vs estimated accuracy, by prediction time")
    ax.legend(fontsize=8, loc="lower left")
    _time_axis(ax)
    return _png(fig)


def confusion_chart(md: ModelData, max_classes: int = 15) -> bytes | None:
    if not md.confusion:
        return None
    m = np.asarray(md.confusion, dtype=np.int64)
    labels = list(md.confusion_labels)
    if len(labels) > max_classes:  # keep the classes with most traffic, pool the rest
        keep = np.argsort(-(m.sum(0) + m.sum(1)))[: max_classes - 1]
        keep.sort()
        rest = np.setdiff1d(np.arange(len(labels)), keep)
        idx = [*keep.tolist(), -1]
        pooled = np.zeros((len(idx), len(idx)), dtype=np.int64)
        groups = [[int(k)] for k in keep] + [rest.tolist()]
        for i, gi in enumerate(groups):
            for j, gj in enumerate(groups):
                pooled[i, j] = m[np.ix_(gi, gj)].sum()
        m = pooled
        labels = [labels[k] for k in keep] + [f"other ({len(rest)})"]
    n = len(labels)
    size = min(9.0, 2.5 + 0.45 * n)
    fig = _fig(size, size + 1.0)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels=labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=labels, fontsize=8)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if n <= 20:
        hi = m.max() or 1
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    color = "white" if m[i, j] > hi / 2 else "black"
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, label="labeled predictions")
    ax.set_title(f"{md.name}: confusion matrix ({int(m.sum())} labeled)")
    return _png(fig)


def drift_chart(md: ModelData, rules: Sequence[AlertRule] = ()) -> bytes | None:
    pts = [w for w in md.windows if w.drift]
    if not pts:
        return None
    fig = _fig()
    ax = fig.add_subplot()
    t = _times(w.start + w.width / 2 for w in pts)
    for key in DRIFT_SCORES:
        label = _DRIFT_LABELS[key]
        if label is None:
            continue
        ys = [w.drift.get(key, np.nan) for w in pts]
        if not all(np.isnan(ys)):
            ax.plot(t, ys, marker=".", label=label)
    rule = _rule(rules, "drift_class_psi")
    if rule is not None and rule.warning is not None:
        ax.axhline(
            rule.warning,
            color=_COLORS["warning"],
            linestyle="--",
            linewidth=1,
            label=f"PSI warning ({rule.warning:g})",
        )
    if rule is not None and rule.critical is not None:
        ax.axhline(
            rule.critical,
            color=_CRIT,
            linestyle="--",
            linewidth=1,
            label=f"PSI critical ({rule.critical:g})",
        )
    ax.set_ylabel("drift score (PSI / KS statistic)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{md.name}: drift per window against the training reference")
    ax.legend(fontsize=8, loc="upper left")
    _time_axis(ax)
    return _png(fig)


def class_mix_chart(md: ModelData, top: int = 12) -> bytes | None:
    if not md.label_counts:
        return None
    live_total = sum(md.label_counts.values())
    ref = md.reference_counts or {}
    ref_total = sum(ref.values()) or 1
    keys = sorted(
        set(md.label_counts) | set(ref),
        key=lambda k: -(md.label_counts.get(k, 0) / live_total + ref.get(k, 0) / ref_total),
    )[:top]
    y = np.arange(len(keys))
    fig = _fig(max(2.6, 0.32 * len(keys) + 1.2))
    ax = fig.add_subplot()
    ax.barh(
        y - 0.2,
        [100 * md.label_counts.get(k, 0) / live_total for k in keys],
        0.4,
        label="live",
        color="#2b7bba",
    )
    if ref:
        ax.barh(
            y + 0.2,
            [100 * ref.get(k, 0) / ref_total for k in keys],
            0.4,
            label="reference (validation)",
            color="#9aa5b1",
        )
    ax.set_yticks(y, labels=keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of predictions (%)")
    ax.set_title(f"{md.name}: predicted-class mix vs reference (top {len(keys)})")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def cache_chart(md: ModelData) -> bytes | None:
    cache = (md.serving or {}).get("cache") or {}
    hits, misses = cache.get("hits"), cache.get("misses")
    if hits is None or misses is None or hits + misses == 0:
        return None
    fig = _fig(2.9)
    ax = fig.add_subplot()
    rate = 100 * hits / (hits + misses)
    ax.barh([0], [rate], color="#1b998b", label=f"hits ({hits:,})")
    ax.barh([0], [100 - rate], left=[rate], color="#d0d5db", label=f"misses ({misses:,})")
    dup = md.duplicate_rate
    if dup is not None:
        ax.axvline(
            100 * dup,
            color=_CRIT,
            linestyle="--",
            label=f"duplicate inputs in sample ({100 * dup:.0f}%)",
        )
    ax.set_xlim(0, 100)
    ax.set_yticks([])
    ax.set_xlabel("share of lookups (%)")
    ax.set_title(f"{md.name}: prediction cache hit rate {rate:.1f}%")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    return _png(fig)


def batch_chart(md: ModelData) -> bytes | None:
    fig_data = batch_figures((md.serving or {}).get("batching"))
    sizes: dict[str, int] = fig_data["sizes"]
    if not sizes:
        return None
    fig = _fig(2.8)
    ax = fig.add_subplot()
    ax.bar(list(sizes), list(sizes.values()), color="#2b7bba")
    ax.set_xlabel("texts per vectorized predict (micro-batch size)")
    ax.set_ylabel("batches")
    mean = fig_data["mean"]
    ax.set_title(f"{md.name}: micro-batch sizes" + (f" (mean {mean:.1f})" if mean else ""))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def model_charts(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, bytes]:
    """Every per-model chart that has data, keyed by a file-name stem."""
    out = {
        "latency": latency_chart(md, rules),
        "throughput": throughput_chart(md),
        "accuracy": accuracy_chart(md, rules),
        "confusion": confusion_chart(md),
        "drift": drift_chart(md, rules),
        "class-mix": class_mix_chart(md),
        "cache": cache_chart(md),
        "batches": batch_chart(md),
    }
    return {k: v for k, v in out.items() if v is not None}


def resources_chart(data: ReportData) -> bytes | None:
    rows = data.resources
    if not rows:
        return None
    procs = sorted({r["process"] for r in rows})
    fig = _fig(6.0, 9.0)
    axes = fig.subplots(2, 2, sharex=True)
    for proc in procs:
        mine = [r for r in rows if r["process"] == proc]
        t = _times(r["ts"] for r in mine)
        short = proc.split(":")[1] if proc.count(":") >= 1 else proc
        label = f"pid {short}" if len(procs) > 1 else None
        axes[0][0].plot(t, [r["cpu_percent"] for r in mine], label=label)
        axes[0][1].plot(t, [r["rss_bytes"] / 2**20 for r in mine], label=label)
        gens = [(r.get("gc") or {}).get("collections") or [0, 0, 0] for r in mine]
        for g, style in zip(range(3), ("-", "--", ":"), strict=True):
            axes[1][0].plot(
                t,
                [x[g] if len(x) > g else 0 for x in gens],
                linestyle=style,
                label=f"gen {g}" + (f" {label}" if label else ""),
            )
        disk = [(tt, r["disk_bytes"]) for tt, r in zip(t, mine, strict=True) if r["disk_bytes"]]
        if disk:
            axes[1][1].plot([a for a, _ in disk], [b / 2**20 for _, b in disk], label=label)
    titles = (
        ("CPU", "CPU (% of one core)"),
        ("RSS", "resident memory (MiB)"),
        ("GC collections", "collections since start"),
        ("store disk usage", "store size (MiB)"),
    )
    for ax, (title, ylabel) in zip([a for row in axes for a in row], titles, strict=True):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        _time_axis(ax, maxticks=5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("System resources per serving process")
    return _png(fig)


def _stacked_sizes(models: Sequence[ModelData], attr: str, xlabel: str, title: str) -> bytes | None:
    rows = [md for md in models if getattr(md, attr)]
    if not rows:
        return None
    fig = _fig(max(2.8, 0.9 * len(rows) + 1.8), 8.5)
    ax = fig.add_subplot()
    ticks: list[tuple[float, str]] = []
    colors: dict[str, Any] = {}
    palette = iter(["#2b7bba", "#f0a202", "#1b998b", "#d7263d", "#7d5ba6", "#9aa5b1", "#5c946e"])
    y = 0.0
    for md in rows:
        for variant in ("original", "compact"):
            sizes = getattr(md, attr).get(variant)
            if not sizes:
                continue
            left = 0.0
            for comp, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
                new = comp not in colors
                if new:
                    colors[comp] = next(palette, "#555555")
                ax.barh(
                    y,
                    size / 2**20,
                    left=left,
                    color=colors[comp],
                    height=0.7,
                    label=comp if new else None,
                )
                left += size / 2**20
            ax.text(left, y, f" {left:.2f} MiB", va="center", fontsize=8)
            ticks.append((y, f"{md.name} {variant}"))
            y += 1
        y += 0.5
    ax.set_yticks([a for a, _ in ticks], labels=[b for _, b in ticks], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def compression_size_chart(models: Sequence[ModelData]) -> bytes | None:
    """Artifact bytes on disk per payload file, original vs compact."""
    return _stacked_sizes(
        models,
        "payload_sizes",
        "artifact size on disk (MiB), by payload file",
        "Compression: stored artifact, original vs compact",
    )


def compression_components_chart(models: Sequence[ModelData]) -> bytes | None:
    """Bytes per model component (vocabulary, idf, weights...), original vs compact."""
    return _stacked_sizes(
        models,
        "components",
        "size in memory (MiB; compact arrays uncompressed), by model component",
        "Compression: size by component, original vs compact",
    )


def compression_quality_chart(models: Sequence[ModelData]) -> bytes | None:
    rows: list[tuple[str, Any, Any, Any]] = []
    for md in models:
        variants = (md.registry or {}).get("variants", {})
        guard = (md.compression or {}).get("guard") or {}
        orig = variants.get("original", {}).get("test_accuracy")
        comp = variants.get("compact", {}).get("test_accuracy")
        if orig is None and comp is None and not guard:
            continue
        rows.append((md.name, orig, comp, guard.get("agreement")))
    if not rows:
        return None
    fig = _fig(3.2, 8.0)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    bars = (
        ("original accuracy", 1, "#9aa5b1"),
        ("compact accuracy", 2, "#2b7bba"),
        ("agreement with original", 3, "#1b998b"),
    )
    for i, (label, col, color) in enumerate(bars):
        vals = [np.nan if r[col] is None else 100 * float(r[col]) for r in rows]
        b = ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=label, color=color)
        ax.bar_label(b, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, labels=[r[0] for r in rows])
    lows = [v for r in rows for v in r[1:] if v is not None]
    ax.set_ylim(max(0.0, 100 * min(lows) - 10) if lows else 0, 101)
    ax.set_ylabel("percent (test set)")
    ax.set_title("Compression: accuracy and agreement per variant")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
