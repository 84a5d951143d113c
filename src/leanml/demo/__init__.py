"""``leanml demo``: the three email-product models, end to end, offline, in a few minutes.

For email categorization, intent recognition and sentiment analysis it:

1. trains the demo pipeline, or reuses the registered one trained on the same dataset;
2. compresses it behind the accuracy guard and registers the compact variant, which then serves
   when the guard passed (the registry falls back to the original otherwise, with the reason);
3. loads both variants back through the registry (checksums, allow-list, no pickle) and runs a
   single-text in-process load through each;
4. measures the monitoring overhead and replays delayed, partly missing ground truth to compare
   the accuracy joined by prediction id with the true and the estimated accuracy;
5. simulates a day of the served model (:mod:`~leanml.demo.day`: yesterday, midnight to midnight
   UTC, in seconds of wall time): a morning peak, a quiet night, bursts, late and partly missing
   labels, an afternoon drift that fires alerts, all written to the monitoring store; then writes
   the HTML report over that day.

It prints the tables and, with ``json_path``, writes everything as JSON.

The modules, by concept: :mod:`~leanml.demo.run` (the run, model by model),
:mod:`~leanml.demo.models` (train, compress, measure a variant),
:mod:`~leanml.demo.monitoring` (the monitoring phase), :mod:`~leanml.demo.day` (the simulated
day) and :mod:`~leanml.demo.output` (the printed tables and the JSON). The demo is a face of
leanml, like the CLI: it may import any layer, and no layer imports it.
"""

from __future__ import annotations

from leanml.demo.monitoring import monitoring_demo
from leanml.demo.run import DEMO_MODELS, run_demo

__all__ = ["DEMO_MODELS", "monitoring_demo", "run_demo"]
