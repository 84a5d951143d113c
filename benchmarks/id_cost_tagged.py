"""Cost of tagged prediction ids in ns, two source trees each in its own interpreter (best of
5 timeit repeats): one keyed BLAKE2b per id (before #17) vs one per block of 8 ids.

    git archive dea33f8 src | tar -x -C /tmp/ids_old     # the tree before #17
    flock /tmp/bench.lock python benchmarks/id_cost_tagged.py /tmp/ids_old/src src
"""

import ast
import json
import subprocess
import sys
import textwrap

CODE = textwrap.dedent("""
import timeit, numpy as np
from leanml.groundtruth import GroundTruth
gt = GroundTruth(100_000); p = np.zeros(64, np.int64); c = np.zeros(64)
n = 100_000
def best(f, num): return min(timeit.repeat(f, number=num, repeat=5)) / num * 1e9
r = {}
r["issue_1"] = best(lambda: gt.issue(1, 0, 0, 0.5), n)
r["issue_64_per_id"] = best(lambda: gt.issue(64, 0, p, c), n // 64) / 64
pid = gt.issue(1, 0)[0]
r["verify"] = best(lambda: gt.issuer.verify(pid), n)
print(r)
""")
out = {}
for name, path in (("before", sys.argv[1]), ("after", sys.argv[2])):
    env = {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    out[name] = {k: round(v) for k, v in ast.literal_eval(r.stdout.strip()).items()}
print(json.dumps(out))
