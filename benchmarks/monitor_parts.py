"""The parts of monitoring's cost, paired between two source trees: id minting, the ring put
of a server's micro-batch, and the flusher's drain of batched predictions.

    git worktree add /tmp/before <rev> && (cd /tmp/before && python setup.py build_ext --inplace)
    flock /tmp/bench.lock python benchmarks/monitor_parts.py /tmp/before/src src [--rounds 3]

Each round runs one interpreter per tree, alternating (before, after), so the machine's load
hits both alike; each prints the best of several timeit repeats (ids, put) and the minimum and
median over 25 drains. Prints JSON: the figures of every round per tree.

* ``issue100_ns_per_id``: ``GroundTruth.issue(100, ...)`` (ring put + ids), per id;
* ``put11_us``: ``ring.put`` of 11 predictions (a server's mean micro-batch), per call;
* ``drain_ns_per_prediction_min`` / ``_median``: the flusher taking and ingesting 15,000
  batched CLINC150 predictions (100 a batch, texts given, 20% sampled into detail rows, no
  store), per prediction, warm.

Needs ``LEANML_DATA_DIR`` for the CLINC150 texts (else the bundled sample of 658).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

PART = textwrap.dedent("""
import json, time, timeit
import numpy as np
from leanml._native import take_at
from leanml.config import MonitorConfig
from leanml.datasets import load_intent
from leanml.groundtruth import GroundTruth
from leanml.monitor import ModelMonitor, _ingest

def best(f, number):
    return min(timeit.repeat(f, number=number, repeat=7)) / number

out = {}
gt = GroundTruth(100_000)
p, c = np.zeros(100, np.int64), np.zeros(100)
out["issue100_ns_per_id"] = best(lambda: gt.issue(100, 0, p, c), 2000) / 100 * 1e9
p11, c11 = np.zeros(11, np.int64), np.zeros(11)
out["put11_us"] = best(lambda: gt.ring.put(11, 0, p11, c11), 20000) * 1e6

texts = list(load_intent().X_train)
texts = (texts * (15000 // len(texts) + 1))[:15000]
m = ModelMonitor("parts", sinks=[], config=MonitorConfig(flush_interval_s=3600))
st = m.state
classes = ["ham", "hard_ham", "spam"]
pred = np.array([0, 2, 0, 1] * 25, dtype=np.int64)
conf = np.random.default_rng(0).uniform(0.5, 1.0, 100)
drains = []
for _ in range(25):
    for s in range(0, 15000, 100):
        m.record_batch(gt.issue(100, 0, pred, conf), take_at(classes, pred), conf, 0.00042,
                       texts[s:s + 100])
    t0 = time.thread_time_ns()
    with st.lock:
        while _ingest.drain_records(st):
            pass
    drains.append((time.thread_time_ns() - t0) / 15000)
    st.details.take()
m.close()
drains.sort()
out["drain_ns_per_prediction_min"] = drains[0]
out["drain_ns_per_prediction_median"] = drains[len(drains) // 2]
print(json.dumps(out))
""")


def run(src: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    done = subprocess.run(
        [sys.executable, "-c", PART], env=env, capture_output=True, text=True, check=True
    )
    return {k: round(v, 1) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the src directory of the tree measured first")
    ap.add_argument("after", help="the src directory of the tree measured second")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rounds: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        rounds["before"].append(run(args.before))
        rounds["after"].append(run(args.after))
    print(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
