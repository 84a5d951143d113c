"""Cost of prediction ids in ns: 0.1.0-wave ids (<prefix>-<hex>, serving IdSpace) vs tagged ids
(leanml.groundtruth.GroundTruth), each in its own interpreter, best of 5 timeit repeats.

    git archive 1b3f9c0 src | tar -x -C /tmp/gt_old    # the tree before issue #14
    python benchmarks/id_cost.py /tmp/gt_old/src src     # prints JSON
"""

import ast
import json
import subprocess
import sys
import textwrap

OLD = textwrap.dedent("""
import timeit, numpy as np
from leanml.serving.handle import IdSpace, parse_id
from leanml._ids import IdGenerator
sp = IdSpace(capacity=100_000); p = np.zeros(64, np.int64); c = np.zeros(64)
n = 200_000
def best(f, num): return min(timeit.repeat(f, number=num, repeat=5)) / num * 1e9
r = {}
r["issue_1"] = best(lambda: sp.issue(1, 0, 0, 0.5), n)
r["issue_64_per_id"] = best(lambda: sp.issue(64, 0, p, c), n // 64) / 64
pid = sp.issue(1, 0)[0]
r["parse"] = best(lambda: parse_id(pid), n)
k = parse_id(pid)[1]
r["lookup_status"] = best(lambda: sp.status(parse_id(pid)[1]), n)
print(r)
""")
NEW = textwrap.dedent("""
import timeit, numpy as np
from leanml.groundtruth import GroundTruth
gt = GroundTruth(100_000); p = np.zeros(64, np.int64); c = np.zeros(64)
n = 200_000
def best(f, num): return min(timeit.repeat(f, number=num, repeat=5)) / num * 1e9
r = {}
r["issue_1"] = best(lambda: gt.issue(1, 0, 0, 0.5), n)
r["issue_64_per_id"] = best(lambda: gt.issue(64, 0, p, c), n // 64) / 64
pid = gt.issue(1, 0)[0]
r["parse"] = best(lambda: gt.issuer.verify(pid), n)
r["lookup_status"] = best(lambda: gt.lookup(pid), n)
bad = pid[:-1] + ("0" if pid[-1] != "0" else "1")
r["lookup_forged"] = best(lambda: gt.lookup(bad), n)
print(r)
""")
result = {}
for name, path, code in (("before", sys.argv[1], OLD), ("after", sys.argv[2], NEW)):
    env = {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    result[name] = {k: round(v) for k, v in ast.literal_eval(out.stdout.strip()).items()}
print(json.dumps(result))
