"""Calibrated accuracy estimate and interval coverage on the demo models (issue 18's targets).

    flock /tmp/bench.lock python benchmarks/calibration.py --models-dir DIR [--json out.json]

Reads the demo models from a registry (``leanml demo --models-dir DIR`` trains and compresses
them; a model missing there is trained, registered and compressed here as the demo does), both
variants of each, and their confidence maps from the manifests. On each test split:

* ``test``: the estimate before (mean raw top-class confidence) and after (mean P(correct)
  through the variant's map) against the realized accuracy; target: within 2 points;
* ``shift``: 5 seeded resamplings of the whole test split with class weights from a
  Dirichlet(1), the estimate corrected for the class-mix shift as the monitor does
  (``ConfidenceMap.shift_adjusted``; ``estimated_map_only`` without); target: within 3 points;
* ``coverage``: 200 seeded windows of 200 rows resampled from the test split (real labels):
  the share of windows whose Wilson 95% interval covers the test split's accuracy, and whose
  estimate's 95% interval covers the window's realized accuracy; target: >= 0.90 each;
* ``monitor``: the test split's predictions and labels fed to a ``ModelMonitor`` with the
  variant's reference and the default alert rules; its estimated and realized accuracy with
  their 95% intervals and sample sizes, and the worst level each accuracy rule reached. A
  false alert is an estimate rule worse than the realized rule on the same traffic (the
  sentiment model, 0.75 accurate, is truly below the generic 0.85 threshold);
* ``drift_coverage``: the same 200 windows drawn from a class-shifted test split (Dirichlet(1)
  weights, seed 0): the share whose class-PSI and confidence-KS intervals (basic bootstrap)
  cover the shifted population's score against the variant's reference (a window without a
  class-PSI interval: the reason the detector gives, ``no_interval_reason``).

Prints JSON (and writes it to ``--json``). No timing is measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from leanml._calibration import ConfidenceMap
from leanml._intervals import wilson
from leanml._predict import predict_top
from leanml.config import MonitorConfig, Settings
from leanml.datasets import load_dataset
from leanml.monitor import ModelMonitor
from leanml.monitor.drift import DriftDetector, psi
from leanml.registry import ModelRegistry
from leanml.workflows import compress_registered, train_and_register

MODELS = {"email": "email", "intent": "intent", "sentiment": "sentiment"}
_RANK = {"ok": 0, "warning": 1, "critical": 2}


def _dirichlet_sample(rng: np.random.Generator, y: np.ndarray, size: int) -> np.ndarray:
    classes, codes = np.unique(y, return_inverse=True)
    w = rng.dirichlet(np.ones(classes.size))
    p = w[codes] / np.bincount(codes)[codes]
    return rng.choice(y.size, size, p=p / p.sum())


def _variant(loaded: Any, X: list[str], y: np.ndarray) -> dict[str, Any]:
    reference = loaded.manifest.extra.get("reference") or {}
    cmap = ConfidenceMap.from_dict(reference.get("calibration") or {"method": "identity"})
    classes = np.asarray(loaded.model.classes_)
    top, conf, _ = predict_top(loaded.model, X)
    predicted = classes[top]
    ok = predicted.astype(str) == y.astype(str)
    p = cmap.apply(conf)
    out: dict[str, Any] = {
        "method": cmap.method,
        "test": {
            "realized": round(float(ok.mean()), 4),
            "estimated_before": round(float(conf.mean()), 4),
            "estimated_after": round(float(p.mean()), 4),
            "error_before": round(float(conf.mean() - ok.mean()), 4),
            "error_after": round(float(p.mean() - ok.mean()), 4),
        },
    }
    rng = np.random.default_rng(0)
    shift = []
    for _ in range(5):
        idx = _dirichlet_sample(rng, y, y.size)
        adjusted = cmap.shift_adjusted(p[idx], predicted[idx])
        shift.append(
            {
                "realized": round(float(ok[idx].mean()), 4),
                "estimated_map_only": round(float(p[idx].mean()), 4),
                "estimated": round(float(adjusted.mean()), 4),
                "error": round(float(adjusted.mean() - ok[idx].mean()), 4),
            }
        )
    out["shift"] = {"max_abs_error": max(abs(s["error"]) for s in shift), "runs": shift}
    truth = float(ok.mean())
    wilson_hits = est_hits = 0
    for w in range(200):
        idx = np.random.default_rng(1000 + w).choice(y.size, 200)
        lo, hi = wilson(float(ok[idx].sum()), 200)
        wilson_hits += lo is not None and hi is not None and lo <= truth <= hi
        _, elo, ehi = cmap.interval(cmap.shift_adjusted(p[idx], predicted[idx]))
        est_hits += elo <= float(ok[idx].mean()) <= ehi
    out["coverage"] = {"realized_wilson": wilson_hits / 200, "estimate": est_hits / 200}
    out["drift_coverage"] = _drift_coverage(reference, predicted, conf, y)
    out["monitor"] = _monitor(loaded, reference, predicted, conf, y)
    return out


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _monitor(
    loaded: Any, reference: dict[str, Any], predicted: np.ndarray, conf: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """Feed the test split to a monitor in batches of 100, labels joined as they come, and
    evaluate its default rules after each batch."""
    clock = _Clock()
    monitor = ModelMonitor(
        loaded.manifest.name, variant=loaded.variant, reference=reference, clock=clock,
        start=False, sinks=[], config=MonitorConfig(alert_interval_s=1.0),
    )  # fmt: skip
    worst = {"realized_accuracy": "ok", "estimated_accuracy": "ok"}
    for start in range(0, y.size, 100):
        sl = slice(start, start + 100)
        ids = [f"t{i}" for i in range(start, min(start + 100, y.size))]
        monitor.record_batch(ids, predicted[sl].tolist(), conf[sl], 0.001)
        monitor.record_joined(ids, y[sl].tolist(), predicted[sl].tolist(), conf[sl],
                              np.full(len(ids), clock.t))  # fmt: skip
        clock.t += 2.0
        monitor.flush()
        for rule in worst:
            level = monitor.stats()["alerts"]["levels"].get(rule, "ok")
            if _RANK[level] > _RANK[worst[rule]]:
                worst[rule] = level
    st = monitor.stats()
    monitor.close()
    acc = st["accuracy"]
    real = acc["realized"]
    return {
        "estimated": _r(acc["estimated"]),
        "estimated_interval": [_r(acc["estimated_lower"]), _r(acc["estimated_upper"])],
        "estimated_n": acc["estimated_n"],
        "realized": _r(real["accuracy"]),
        "realized_interval": [_r(real["accuracy_lower"]), _r(real["accuracy_upper"])],
        "realized_n": real["n"],
        "worst_accuracy_alert": worst,
        "health": st["health"],
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _drift_coverage(
    reference: dict[str, Any], predicted: np.ndarray, conf: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    detector = DriftDetector(reference)
    rng = np.random.default_rng(0)
    population = _dirichlet_sample(rng, y, 20 * y.size)  # the shifted traffic
    ref_counts = {str(k): v for k, v in reference["class_counts"].items()}
    labels, counts = np.unique(predicted[population].astype(str), return_counts=True)
    live = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    keys = list(ref_counts) + [k for k in live if k not in ref_counts]
    true_psi = psi(
        np.asarray([ref_counts.get(k, 0) for k in keys], float),
        np.asarray([live.get(k, 0) for k in keys], float),
    )
    true_ks = float(stats.ks_2samp(conf[population], detector.reference.confidences).statistic)
    hits = {"class_psi": 0, "confidence_ks": 0}
    given = {"class_psi": 0, "confidence_ks": 0}
    why: dict[str, str] = {}
    for w in range(200):
        idx = np.random.default_rng(2000 + w).choice(population, 200)
        lab, cnt = np.unique(predicted[idx].astype(str), return_counts=True)
        d = detector.score(dict(zip(lab.tolist(), cnt.tolist(), strict=True)), conf[idx], seed=w)
        for key, truth in (("class_psi", true_psi), ("confidence_ks", true_ks)):
            if key in d["intervals"]:  # no PSI interval under 5 predictions per class
                lo, hi = d["intervals"][key]
                given[key] += 1
                hits[key] += lo <= truth <= hi
            elif key in d.get("no_interval", {}):
                why[key] = d["no_interval"][key]["reason"]  # type: ignore[literal-required]
    return {
        "true_class_psi": round(true_psi, 4),
        "true_confidence_ks": round(true_ks, 4),
        **{k: (hits[k] / given[k] if given[k] else None) for k in hits},
        "windows_with_interval": given,
        "no_interval_reason": why,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings.load()
    registry = ModelRegistry(args.models_dir or settings.models_dir)
    results: dict[str, Any] = {}
    for name, task in MODELS.items():
        data = load_dataset(task, settings=settings)
        y = np.asarray(data.y_test)
        if not registry.versions(name):
            train_and_register(registry, name, data)
            compress_registered(registry, name, dataset=data, activate=True)
        for variant in registry.variants(name):
            loaded = registry.load(name, variant=variant)
            results[f"{name}/{variant}"] = _variant(loaded, list(data.X_test), y)
    targets = {
        "test_within_2_points": all(
            abs(r["test"]["error_after"]) <= 0.02 for r in results.values()
        ),
        "shift_within_3_points": all(r["shift"]["max_abs_error"] <= 0.03 for r in results.values()),
        "coverage_at_least_0.90": all(min(r["coverage"].values()) >= 0.9 for r in results.values()),
        # no estimate alert worse than the realized one on the same traffic
        "no_false_accuracy_alert": all(
            _RANK[r["monitor"]["worst_accuracy_alert"]["estimated_accuracy"]]
            <= _RANK[r["monitor"]["worst_accuracy_alert"]["realized_accuracy"]]
            for r in results.values()
        ),
    }
    text = json.dumps({"models": results, "targets": targets}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
