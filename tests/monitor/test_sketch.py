from __future__ import annotations

import numpy as np
import pytest

from leanml.errors import ParameterError
from leanml.monitor.sketch import LogSketch, QuantileSketch, ReqSketch, merge_sketches

QS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]


def _dists(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    return {
        "lognormal": rng.lognormal(-7, 1.0, n),
        "uniform": rng.uniform(1e-4, 0.02, n),
        "exponential": rng.exponential(0.003, n),
        "pareto": (rng.pareto(1.5, n) + 1) * 1e-4,
        "bimodal": np.concatenate([rng.normal(2e-4, 2e-5, n // 2), rng.normal(0.05, 5e-3, n // 2)]),
        "constant": np.full(n, 0.00123),
    }


@pytest.mark.parametrize("name", list(_dists(10)))
@pytest.mark.parametrize("alpha", [0.005, 0.01])
def test_relative_error_contract(name: str, alpha: float) -> None:
    x = np.abs(_dists(20_000)[name])
    sk = LogSketch(alpha)
    for chunk in np.array_split(x, 37):
        sk.add_many(chunk)
    xs = np.sort(x)
    for q in QS:
        exact = xs[int(np.floor(q * (x.size - 1)))]
        got = sk.quantile(q)
        assert abs(got - exact) <= alpha * exact + 1e-15, (name, q, got, exact)
    assert sk.count == x.size
    assert sk.min == x.min() and sk.max == x.max()
    assert sk.sum == pytest.approx(x.sum())


def test_merge_of_serialized_shards_equals_single_sketch() -> None:
    x = _dists(40_000)["lognormal"]
    whole = LogSketch()
    whole.add_many(x)
    shards = []
    for part in np.array_split(x, 4):
        s = LogSketch()
        s.add_many(part)
        shards.append(s.to_bytes())
    merged = merge_sketches(shards)
    assert merged is not None
    assert merged.count == whole.count
    np.testing.assert_array_equal(merged.quantiles(QS), whole.quantiles(QS))
    xs = np.sort(x)
    for q in (0.5, 0.95, 0.99, 0.999):
        exact = xs[int(np.floor(q * (x.size - 1)))]
        assert abs(merged.quantile(q) - exact) <= 0.005 * exact


def test_roundtrip_and_zero_values() -> None:
    sk = LogSketch()
    sk.add_many([0.0, 0.0, 1e-3, 2e-3, -1.0])
    assert sk.zero_count == 3
    back = LogSketch.from_bytes(sk.to_bytes())
    assert back.count == 5 and back.zero_count == 3
    np.testing.assert_array_equal(back.quantiles(QS), sk.quantiles(QS))
    assert back.quantile(0.0) == 0.0  # values <= min_value share the zero bucket
    assert back.quantile(1.0) == pytest.approx(2e-3, rel=0.005)
    empty = LogSketch()
    assert np.isnan(empty.quantile(0.5))
    assert LogSketch.from_bytes(empty.to_bytes()).count == 0
    assert merge_sketches([]) is None


def test_add_single_and_bucket_counts() -> None:
    sk = LogSketch()
    for v in (1e-4, 5e-4, 1e-3, 1e-2):
        sk.add(v)
    cum = sk.bucket_counts([2e-4, 1.1e-3, 1.0])
    assert cum.tolist() == [1, 3, 4]


def test_out_of_range_values_are_clamped() -> None:
    sk = LogSketch(max_value=10.0)
    sk.add_many([1.0, 1e9])
    assert sk.count == 2
    assert sk.quantile(1.0) <= 1e9


def test_invalid_parameters_and_merge() -> None:
    with pytest.raises(ParameterError, match="'relative_accuracy' parameter of LogSketch"):
        LogSketch(0.0)
    with pytest.raises(ParameterError):
        LogSketch(0.01).merge(LogSketch(0.02))
    with pytest.raises(ParameterError):
        LogSketch.from_bytes(b"nope")
    with pytest.raises(ParameterError):
        LogSketch().quantiles([1.5])


def test_sketches_implement_the_interface() -> None:
    assert isinstance(LogSketch(), QuantileSketch)
    r = ReqSketch()
    assert isinstance(r, QuantileSketch)
    r.add_many(np.linspace(1, 100, 1000))
    other = ReqSketch.from_bytes(r.to_bytes())
    r.merge(other)
    assert r.count == 2000
    assert 40 < r.quantile(0.5) < 60
    with pytest.raises(ParameterError):
        r.merge(LogSketch())


def _numpy_add_many(sk: LogSketch, values: np.ndarray) -> None:
    """The vectorized numpy ingest LogSketch.add_many replaced (NaN left out first)."""
    v = values[~np.isnan(values)]
    if not v.size:
        return
    sk.count += v.size
    sk.sum += float(v.sum())
    sk.min, sk.max = min(sk.min, float(v.min())), max(sk.max, float(v.max()))
    small = v <= sk.min_value
    sk.zero_count += int(small.sum())
    v = v[~small]
    if not v.size:
        return
    with np.errstate(invalid="ignore"):
        idx = np.ceil(np.log(v) * sk._inv_log_gamma)
    idx = np.minimum(np.where(v > sk.max_value, sk._max_index, idx), sk._max_index)
    idx = idx.astype(np.int64)
    sk._ensure(int(idx.min()), int(idx.max()))
    np.add.at(sk._counts, idx - sk._offset, 1)


def test_add_many_in_c_equals_the_numpy_ingest() -> None:
    """Chunks of latencies (tiny, huge, zero, negative, NaN among them) into two sketches,
    one through add_many (C), one through the numpy reference: the same buckets and totals."""
    rng = np.random.default_rng(5)
    ours, ref = LogSketch(0.01), LogSketch(0.01)
    for k in range(40):
        x = rng.lognormal(-6, 2, rng.integers(1, 500))
        if k % 3 == 0:
            x[::7] = rng.choice([0.0, -1.0, 1e-12, 5e7, 1e300, np.nan], x[::7].size)
        ours.add_many(x)
        _numpy_add_many(ref, x)
    assert ours.count == ref.count and ours.zero_count == ref.zero_count
    assert ours._offset == ref._offset and np.array_equal(ours._counts, ref._counts)
    assert (ours.min, ours.max) == (ref.min, ref.max) and ours.sum == pytest.approx(ref.sum)
    ours.add_many(np.array([np.nan, np.nan]))  # no latency at all: nothing changes
    assert ours.count == ref.count
