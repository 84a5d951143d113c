from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from leanml._ids import input_hash, is_sampled, sample_hash, sample_hashes
from leanml.groundtruth import GroundTruth, IdIssuer


def test_sampling_rate_and_determinism() -> None:
    ids = IdIssuer("p").take(0, 50_000)
    h = sample_hashes(ids)
    assert h.max() < 2**32
    for rate in (0.01, 0.2, 0.5):
        frac = float((h < rate * 2**32).mean())
        assert abs(frac - rate) < 0.01
    assert all(is_sampled(i, 0.2) == bool(h[k] < 0.2 * 2**32) for k, i in enumerate(ids[:500]))
    # raising the rate keeps every id sampled before
    low = {i for i in ids if is_sampled(i, 0.1)}
    high = {i for i in ids if is_sampled(i, 0.3)}
    assert low <= high
    ints = sample_hashes(list(range(20_000)))
    assert abs(float((ints < 0.2 * 2**32).mean()) - 0.2) < 0.015
    assert sample_hash(7) == int(ints[7])
    mixed = sample_hashes(["a", 3, b"x"])
    assert mixed.shape == (3,) and int(mixed[0]) == sample_hash("a")


def test_sampling_is_the_same_in_another_process() -> None:
    ids = ["abc-1", "abc-2", "zz-99", "x"]
    code = f"from leanml._ids import sample_hash;print([sample_hash(i) for i in {ids!r}])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.strip() == str([sample_hash(i) for i in ids])
    assert np.all(sample_hashes(ids) == np.array([sample_hash(i) for i in ids]))


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4094, 4095, 10_000])
def test_input_hash_is_sha256_of_utf8_at_every_length(size) -> None:
    text = ("é" + "abc" * size)[:size]  # a 2-byte character: piece edges fall mid-character
    assert input_hash(text) == hashlib.sha256(text.encode()).hexdigest()


def test_monitor_reexports_the_ids() -> None:
    import leanml.monitor

    assert leanml.monitor.GroundTruth is GroundTruth
    assert leanml.monitor.sample_hash is sample_hash and leanml.monitor.is_sampled is is_sampled
