"""PNG charts of a :class:`~leanml.dashboard.data.ReportData` (matplotlib, Agg canvas).

Each function returns PNG bytes, or ``None`` when there is nothing to draw (the report then says
what is missing instead of showing an empty chart). Figures are built with
``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot, so rendering holds no global
state and is safe from any thread. Times are UTC; latencies in milliseconds.

The charts over time (latency, throughput, accuracy, drift) and the data they are drawn from live
in :mod:`~leanml.dashboard.timecharts`; they are listed here too, as :func:`model_charts` draws
them with the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from leanml.config import AlertRule
from leanml.dashboard._figure import new_figure, to_png
from leanml.dashboard.data import ModelData, ReportData, batch_figures
from leanml.dashboard.timecharts import (
    accuracy_chart,
    drift_chart,
    latency_chart,
    throughput_chart,
    time_axis,
    time_chart_data,
)

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
    "model_chart_data",
    "model_charts",
    "report_chart_data",
    "resources_chart",
    "throughput_chart",
]

_CRIT = "#d7263d"


def _times(ts: Iterable[float]) -> Any:
    return [dt.datetime.fromtimestamp(t, tz=dt.UTC) for t in ts]


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
    fig = new_figure(size, size + 1.0)
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
    return to_png(fig)


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
    fig = new_figure(max(2.6, 0.32 * len(keys) + 1.2))
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
    return to_png(fig)


def cache_chart(md: ModelData) -> bytes | None:
    cache = (md.serving or {}).get("cache") or {}
    hits, misses = cache.get("hits"), cache.get("misses")
    if hits is None or misses is None or hits + misses == 0:
        return None
    fig = new_figure(2.9)
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
    return to_png(fig)


def batch_chart(md: ModelData) -> bytes | None:
    fig_data = batch_figures((md.serving or {}).get("batching"))
    sizes: dict[str, int] = fig_data["sizes"]
    if not sizes:
        return None
    fig = new_figure(2.8)
    ax = fig.add_subplot()
    ax.bar(list(sizes), list(sizes.values()), color="#2b7bba")
    ax.set_xlabel("texts per vectorized predict (micro-batch size)")
    ax.set_ylabel("batches")
    mean = fig_data["mean"]
    ax.set_title(f"{md.name}: micro-batch sizes" + (f" (mean {mean:.1f})" if mean else ""))
    ax.grid(axis="y", alpha=0.3)
    return to_png(fig)


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


def model_chart_data(md: ModelData, rules: Sequence[AlertRule] = ()) -> dict[str, dict[str, Any]]:
    """The data behind each chart of :func:`model_charts` that has some (the report writes it
    as JSON beside the PNG): the time charts' series, and what the other charts plot."""
    out: dict[str, dict[str, Any]] = dict(time_chart_data(md, rules))
    if md.confusion:
        out["confusion"] = {"labels": md.confusion_labels, "matrix": md.confusion}
    if md.label_counts:
        out["class-mix"] = {"live": md.label_counts, "reference": md.reference_counts}
    cache = (md.serving or {}).get("cache")
    if cache:
        out["cache"] = dict(cache)
    batches = batch_figures((md.serving or {}).get("batching"))
    if batches["sizes"]:
        out["batches"] = batches
    for d in out.values():
        d.setdefault("model", md.name)
    return out


def report_chart_data(data: ReportData) -> dict[str, dict[str, Any]]:
    """The data behind the report-wide charts: resources and compression."""
    models = list(data.models.values())
    out: dict[str, dict[str, Any]] = {}
    if data.resources:
        keys = ("ts", "process", "cpu_percent", "rss_bytes", "disk_bytes")
        out["resources"] = {"rows": [{k: r.get(k) for k in keys} for r in data.resources]}
    if any(md.payload_sizes for md in models):
        out["compression-size"] = {md.name: md.payload_sizes for md in models}
    if any(md.components for md in models):
        out["compression-components"] = {md.name: md.components for md in models}
    quality = {
        md.name: {
            "variants": {
                v: f.get("test_accuracy")
                for v, f in (md.registry or {}).get("variants", {}).items()
            },
            "agreement": ((md.compression or {}).get("guard") or {}).get("agreement"),
        }
        for md in models
        if md.registry
    }
    if quality:
        out["compression-quality"] = quality
    return out


def resources_chart(data: ReportData) -> bytes | None:
    rows = data.resources
    if not rows:
        return None
    procs = sorted({r["process"] for r in rows})
    fig = new_figure(6.0, 9.0)
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
        time_axis(ax, maxticks=5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("System resources per serving process")
    return to_png(fig)


def _stacked_sizes(models: Sequence[ModelData], attr: str, xlabel: str, title: str) -> bytes | None:
    rows = [md for md in models if getattr(md, attr)]
    if not rows:
        return None
    fig = new_figure(max(2.8, 0.9 * len(rows) + 1.8), 8.5)
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
    return to_png(fig)


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
    fig = new_figure(3.2, 8.0)
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
    return to_png(fig)
