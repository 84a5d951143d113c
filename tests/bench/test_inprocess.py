import numpy as np
import pytest

from leanml.bench.inprocess import latency_summary, run_single_text_load


def test_every_call_is_timed_and_texts_cycle():
    seen = []
    result = run_single_text_load(
        lambda batch: seen.append(batch[0]), ["a", "b", "c"], 10, warmup=0
    )
    assert seen == ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"]
    assert result.n == 10 and result.latencies_ns.shape == (10,)
    assert np.all(result.latencies_ns > 0)
    summary = result.summary()
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["predictions_per_s"] > 0


def test_latency_summary_matches_numpy():
    ns = np.arange(1, 1001) * 1_000_000  # 1..1000 ms
    summary = latency_summary(ns)
    assert summary["p50_ms"] == pytest.approx(np.percentile(np.arange(1, 1001), 50))
    assert summary["max_ms"] == 1000.0


def test_needs_texts():
    with pytest.raises(ValueError, match="at least one text"):
        run_single_text_load(lambda b: None, [], 5)
