"""What the shadow check adds to ``leanml demo``'s simulated day (issue #19).

Usage (the machine is shared: serialize benchmark runs with the lock)::

    flock /tmp/bench.lock python benchmarks/demo_shadow.py --models-dir /tmp/demo-shadow-models

For each demo model, as the demo prepares it (trained and compressed into ``--models-dir`` the
first time, reused after), the simulated day is run into a fresh SQLite store without and with
the shadow check (:class:`leanml.demo.shadow.DayShadow` at the default rate against the default
threshold, the demo's own loaded original), alternating for ``--pairs`` pairs. Prints JSON per
model: the day's wall seconds without and with (medians), their difference, the check's own
measured wall time (``DayShadow.seconds``, median) and the figures of the last run. Nothing
here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from leanml.config import ServingConfig, Settings
from leanml.datasets import load_dataset
from leanml.demo.day import day_start_for, simulate_day
from leanml.demo.models import ensure_compact, ensure_model
from leanml.demo.run import DEMO_MODELS
from leanml.demo.shadow import DayShadow
from leanml.monitor import MonitorStore
from leanml.monitor.shadow import default_threshold
from leanml.registry import ModelRegistry


def _day(served: Any, dataset: Any, name: str, task: str, shadow: DayShadow | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        MonitorStore(url).close()
        t0 = time.perf_counter()
        simulate_day(
            served.model,
            dataset,
            url,
            name=name,
            task=task,
            day_start=day_start_for(time.time()),
            version=str(served.version),
            variant=served.variant,
            reference=served.manifest.extra.get("reference"),
            shadow=shadow,
        )
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(DEMO_MODELS))
    args = parser.parse_args()
    settings = Settings.load()
    config = ServingConfig()
    registry = ModelRegistry(args.models_dir)
    out: dict[str, Any] = {"pairs": args.pairs, "rate": config.shadow_rate, "models": {}}
    for seed, name in enumerate(args.models):
        task = DEMO_MODELS[name]
        dataset = load_dataset(task, settings=settings)
        action, _ = ensure_model(registry, name, task, dataset, retrain=False)
        original = registry.load(name, variant="original")
        ensure_compact(registry, name, dataset, fresh=action == "trained", original=original)
        served = registry.load(name, original=original)
        if served.variant != "compact":
            out["models"][name] = {"served_variant": served.variant}
            continue
        threshold = default_threshold(config.shadow_threshold, served.manifest.extra.get("guard"))
        off, on, own = [], [], []
        figures: dict[str, Any] = {}
        for _ in range(args.pairs):
            off.append(_day(served, dataset, name, task, None))
            shadow = DayShadow(original.model, rate=config.shadow_rate, threshold=threshold,
                               alpha=config.shadow_alpha, seed=seed)  # fmt: skip
            on.append(_day(served, dataset, name, task, shadow))
            own.append(shadow.seconds)
            figures = shadow.summary()
        out["models"][name] = {
            "day_s_without": round(statistics.median(off), 3),
            "day_s_with": round(statistics.median(on), 3),
            "added_s": round(statistics.median(on) - statistics.median(off), 3),
            "shadow_own_s": round(statistics.median(own), 3),
            "runs_without": [round(x, 3) for x in off],
            "runs_with": [round(x, 3) for x in on],
            "shadowed": figures.get("shadowed"),
            "agreement": figures.get("agreement"),
            "agreement_interval": [figures.get("agreement_lower"), figures.get("agreement_upper")],
            "threshold": threshold,
            "fallen_back": figures.get("fallen_back"),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
