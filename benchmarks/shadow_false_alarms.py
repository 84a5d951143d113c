"""No false fallback on the healthy demo models; how soon a damaged compact falls back (#19).

Usage (the machine is shared: serialize benchmark runs with the lock)::

    flock /tmp/bench.lock python benchmarks/shadow_false_alarms.py --models-dir /tmp/shadowfa

Each demo model (email, intent, sentiment) is trained and compressed behind the guard the way
``leanml demo`` does it (:func:`leanml.demo.models.ensure_model` / ``ensure_compact``; reused when
``--models-dir`` has them already). The compact variant's served labels and confidences on the
model's test texts (never seen by training or by the guard) are computed once, the way the
server computes them (``predict_fused`` of a compact model).

The decision is the server's own: a :class:`leanml.serving.shadow.ShadowGuard` with the default
``[serving]`` settings (rate 1%, alpha 0.01, threshold = the compact's guard ``min_agreement``
- 0.02) except ``shadow_budget``, set so high that the CPU budget never drops a sampled text
(every prediction sampled at the 1% rate is re-scored: the most looks, the worst case for false
alarms). It samples with its own geometric skips, re-scores with the real original model
(loaded once per model) and runs its :class:`~leanml._sequential.AgreementTest`; where the
server's guard thread scores what was sampled and checks once every ``shadow_interval_s`` (a
tick), here the guard is driven on this thread and checks after *every* 32 shadowed predictions
(``store=None``: the counts are this process's, as in a server without a store). That is more
looks than a server makes below 16 shadowed predictions a second (3,200 predictions/s at 1%
with the 2 s tick): the worst case for false alarms. For time to fallback a server decides at
its first tick after the count given here, so up to one tick's sample later.

* healthy: ``--runs`` seeded runs (default 20) of ``--predictions`` single-text predictions
  (default 50,000, ~500 shadowed) drawing test texts with replacement; a run "falls back" when
  the guard decides so. Reported: the guard's threshold, the per-text agreement of compact and
  original on the test set, per run the shadowed count, the live agreement and the largest
  log mixture ratio the test saw against its boundary log(1/alpha).
* damaged: the original compressed again with pruning pushed until the compact agrees with it
  on about ``--damaged-agreement`` (0.89) of the test texts (bisection on the sparsity, the
  guard's limits lifted so the over-pruned model is built); ``--damage-runs`` seeded runs until
  the guard falls back: the shadowed count at the fallback (the target: within 500).

Prints JSON (``--json FILE`` writes it too). Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from leanml._predict import predict_top
from leanml.compress.quantizer import ModelQuantizer
from leanml.config import ServingConfig
from leanml.datasets import load_dataset
from leanml.demo.models import ensure_compact, ensure_model
from leanml.demo.run import DEMO_MODELS
from leanml.registry import LoadedModel, ModelRegistry
from leanml.serving.shadow import ShadowGuard

BATCH = 32  # shadowed predictions between two checks (a server checks once a tick)
#: Every sampled text is re-scored: the CPU budget is lifted (see the module docstring).
CONFIG = ServingConfig(shadow_budget=1e9)


class _LoadOnce:
    """The registry, each (name, version, variant) loaded once: the runs share one load."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._loaded: dict[tuple[Any, ...], LoadedModel] = {}

    def load(self, name: str, version: int | None = None, variant: str | None = None) -> Any:
        key = (name, version, variant)
        if key not in self._loaded:
            self._loaded[key] = self._registry.load(name, version=version, variant=variant)
        return self._loaded[key]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._registry, attr)


def served_labels(model: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """What the server answers for each text (labels as str, confidences) and the model's mean
    seconds per text, computed as ``ModelHandle._predict_batch`` does."""
    started = time.perf_counter()
    fused = getattr(model, "predict_fused", None)
    if fused is not None:
        top, conf, _, _ = fused(texts, True)
    else:
        top, conf, _ = predict_top(model, texts)
    per_text = (time.perf_counter() - started) / len(texts)
    labels = np.asarray(model.classes_)[top].astype(str)
    return labels, np.asarray(conf, dtype=float), per_text


def guard_run(
    registry: Any,
    name: str,
    version: int,
    texts: list[str],
    served: np.ndarray,
    conf: np.ndarray,
    model_s: float,
    *,
    seed: int,
    predictions: int,
    stop_at_fallback: bool,
) -> dict[str, Any]:
    """One seeded run of single-text predictions through a ShadowGuard (module docstring)."""
    guard = ShadowGuard(registry, name, CONFIG, store=None, seed=seed)
    # what follow() and the guard's thread do, on this thread: every batch of 32 is scored by
    # the original, then the counts are checked by the guard's AgreementTest
    guard.version, guard.serving_compact = version, True
    guard._load_original()
    test = guard.test
    assert test is not None and guard.threshold is not None
    draws = np.random.default_rng(1_000_003 + seed).integers(0, len(texts), predictions)
    max_log_ratio, checks, served_at_fallback = -math.inf, 0, None

    def check() -> None:
        nonlocal max_log_ratio, checks
        guard._score_batch()
        guard.sync()  # store=None: merge this process's counts, decide
        checks += 1
        n, k = int(guard.merged["n"]), int(guard.merged["agree"])
        max_log_ratio = max(max_log_ratio, test.stats(k, n)["log_ratio"])

    for i, j in enumerate(draws.tolist()):
        guard.offer([texts[j]], [f"{seed}-{i}"], [served[j]], conf[j : j + 1], model_s)
        while len(guard._queue) >= BATCH:
            check()
        if guard.fallen_back and served_at_fallback is None:
            served_at_fallback = i + 1
            if stop_at_fallback:
                break
    while guard._queue and not guard.fallen_back:  # the last partial batch, when due
        check()
    n, k = int(guard.merged["n"]), int(guard.merged["agree"])
    return {
        "seed": seed,
        "threshold": guard.threshold,
        "alpha": test.alpha,
        "log_boundary": round(test.log_boundary, 4),
        "served": served_at_fallback or predictions,
        "shadowed": n,
        "agreement": k / n if n else None,
        "checks": checks,
        "max_log_ratio": round(max_log_ratio, 4),
        "fell_back": guard.fallen_back,
        "fallback_at_shadowed": test.alarm_at,
        "reason": guard.reason,
    }


def damaged_model(
    original: Any, X_val: list[str], y_val: np.ndarray, X: list[str], ref: np.ndarray, target: float
) -> tuple[Any, float, float, list[dict[str, Any]]]:
    """The original over-pruned until its agreement with ``ref`` on ``X`` is about ``target``:
    bisection on -log10(1 - sparsity). Returns (model, sparsity, agreement, steps)."""
    lo, hi = 0.3, 4.0  # sparsity 0.5 .. 0.9999
    best: tuple[float, Any, float, float] | None = None
    steps = []
    for _ in range(10):
        x = (lo + hi) / 2
        sparsity = round(1 - 10**-x, 6)
        result = ModelQuantizer().compress(
            original, X_val, y_val, precision="int8", prune=sparsity,
            tolerance=1.0, min_agreement=0.0, confidence=None,
        )  # fmt: skip
        labels, _, _ = served_labels(result.model, X)
        agreement = float(np.mean(labels == ref))
        steps.append({"sparsity": sparsity, "agreement": round(agreement, 4)})
        if best is None or abs(agreement - target) < best[0]:
            best = (abs(agreement - target), result.model, sparsity, agreement)
        if abs(agreement - target) <= 0.005:
            break
        lo, hi = (x, hi) if agreement > target else (lo, x)
    assert best is not None
    return best[1], best[2], best[3], steps


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def one_model(registry: ModelRegistry, name: str, task: str, args: Any) -> dict[str, Any]:
    ds = load_dataset(task)
    action, _ = ensure_model(registry, name, task, ds, retrain=False)
    original = registry.load(name, variant="original")
    ensure_compact(registry, name, ds, fresh=action == "trained", original=original)
    compact = registry.load(name, original=original)
    version = compact.version
    out: dict[str, Any] = {"task": task, "version": version, "served_variant": compact.variant}
    if compact.variant != "compact":
        out["fallback_reason"] = compact.fallback_reason
        return out
    guard = compact.manifest.extra.get("guard") or {}
    once = _LoadOnce(registry)
    once._loaded[(name, version, "original")] = original
    texts = [str(t) for t in ds.X_test]
    ref, _, _ = served_labels(original.model, texts)
    served, conf, per_text = served_labels(compact.model, texts)
    agree = served == ref
    healthy = [
        guard_run(
            once,
            name,
            version,
            texts,
            served,
            conf,
            per_text,
            seed=seed,
            predictions=args.predictions,
            stop_at_fallback=False,
        )  # fmt: skip
        for seed in range(args.runs)
    ]
    first = healthy[0]
    out.update(
        {
            "test_texts": len(texts),
            "guard_min_agreement": guard.get("min_agreement"),
            "guard_val_agreement": guard.get("agreement"),
            "threshold": first["threshold"],
            "alpha": first["alpha"],
            "log_boundary": first["log_boundary"],
            "test_agreement": round(float(agree.mean()), 5),
            "healthy": {
                "runs": len(healthy),
                "predictions_per_run": args.predictions,
                "fallbacks": sum(r["fell_back"] for r in healthy),
                "shadowed": _summary([r["shadowed"] for r in healthy]),
                "agreement": _summary([r["agreement"] for r in healthy]),
                "max_log_ratio": max(r["max_log_ratio"] for r in healthy),
                "min_margin": round(
                    first["log_boundary"] - max(r["max_log_ratio"] for r in healthy), 4
                ),
                "shadowed_share": sum(r["shadowed"] for r in healthy)
                / (len(healthy) * args.predictions),
                "run_details": healthy,
            },
        }
    )
    if args.damage_runs:
        model, sparsity, d_agreement, steps = damaged_model(
            original.model, list(ds.X_val), np.asarray(ds.y_val), texts, ref, args.damaged_agreement
        )
        d_served, d_conf, d_per_text = served_labels(model, texts)
        damaged = [
            guard_run(
                once,
                name,
                version,
                texts,
                d_served,
                d_conf,
                d_per_text,
                seed=10_000 + seed,
                predictions=args.damage_max_predictions,
                stop_at_fallback=True,
            )  # fmt: skip
            for seed in range(args.damage_runs)
        ]
        at = [r["fallback_at_shadowed"] for r in damaged if r["fell_back"]]
        out["damaged"] = {
            "sparsity": sparsity,
            "test_agreement": round(d_agreement, 5),
            "bisection": steps,
            "runs": len(damaged),
            "fallbacks": len(at),
            "fallback_at_shadowed": _summary(at) if at else None,
            "fallback_at_shadowed_p90": float(np.percentile(at, 90)) if at else None,
            "within_500": sum(a <= 500 for a in at),
            "served_until_fallback": _summary([r["served"] for r in damaged if r["fell_back"]])
            if at
            else None,
            "reason_example": damaged[0]["reason"],
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--models", default=",".join(DEMO_MODELS), help="comma-separated")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--predictions", type=int, default=50_000)
    ap.add_argument("--damage-runs", type=int, default=100)
    ap.add_argument("--damage-max-predictions", type=int, default=200_000)
    ap.add_argument("--damaged-agreement", type=float, default=0.89)
    ap.add_argument("--quick", action="store_true", help="5 runs of 10,000; 20 damaged runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.predictions, args.damage_runs = 5, 10_000, 20
    registry = ModelRegistry(args.models_dir)
    started = time.perf_counter()
    models = {
        name: one_model(registry, name, DEMO_MODELS[name], args) for name in args.models.split(",")
    }
    out = {
        "settings": {
            "shadow_rate": CONFIG.shadow_rate,
            "shadow_alpha": CONFIG.shadow_alpha,
            "check_every": BATCH,
            "budget": "lifted (every sampled text re-scored)",
        },
        "models": models,
        "total_fallbacks_healthy": sum(
            m.get("healthy", {}).get("fallbacks", 0) for m in models.values()
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(out, indent=2, default=str)
    if args.json is not None:
        args.json.write_text(text)
    # the per-run details go to the file only
    brief = {
        **out,
        "models": {
            k: {
                **v,
                "healthy": {
                    kk: vv for kk, vv in (v.get("healthy") or {}).items() if kk != "run_details"
                },
            }
            for k, v in models.items()
        },
    }
    json.dump(brief, sys.stdout, indent=2, default=str)
    print()
    return out


if __name__ == "__main__":
    main()
