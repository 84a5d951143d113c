from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer

from leanml.errors import ParameterError
from leanml.monitor.drift import DriftDetector, Reference, oov_rate, oov_rates, psi

REF = {
    "n": 1000,
    "class_counts": {"ham": 600, "spam": 300, "hard_ham": 100},
    "confidences": np.random.default_rng(0).uniform(0.6, 1.0, 2000).tolist(),
    "input_lengths": np.random.default_rng(1).integers(100, 2000, 2000).tolist(),
    "oov_rate": 0.05,
}


def test_psi_by_hand() -> None:
    e = np.array([50, 50])
    a = np.array([80, 20])
    pe, pa = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    assert psi(e, a, eps=0) == pytest.approx(float(np.sum((pa - pe) * np.log(pa / pe))))
    assert psi(e, e) == pytest.approx(0.0)
    assert np.isfinite(psi(np.array([1, 0]), np.array([0, 1])))
    assert np.isnan(psi(np.array([0, 0]), np.array([1, 1])))


def test_reference_roundtrip_through_json() -> None:
    ref = Reference.from_dict(json.loads(json.dumps(REF)))
    assert ref.n == 1000 and ref.oov_rate == 0.05
    assert ref.confidences.size == 2000
    again = Reference.from_dict(ref.to_dict())
    assert again.class_counts == ref.class_counts
    with pytest.raises(ParameterError):
        Reference.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        Reference.from_dict({"class_counts": {"a": "x"}})


def test_no_drift_on_same_distribution_and_drift_when_shifted() -> None:
    det = DriftDetector(REF)
    rng = np.random.default_rng(5)
    same = det.score(
        {"ham": 598, "spam": 305, "hard_ham": 97},
        rng.uniform(0.6, 1.0, 1000),
        rng.integers(100, 2000, 1000).astype(float),
    )
    assert same["class_psi"] < 0.01
    assert same["class_chi2_p"] > 0.05
    assert same["confidence_ks"] < 0.1
    assert same["input_length_ks"] < 0.1
    shifted_conf = rng.uniform(0.4, 0.8, 1000)
    shifted = det.score(
        {"ham": 200, "spam": 750, "hard_ham": 50, "new": 20},
        shifted_conf,
        rng.integers(10, 200, 1000).astype(float),
        np.full(100, 0.3),
    )
    assert shifted["class_psi"] > 0.25
    assert shifted["class_chi2_p"] < 1e-6
    ks = stats.ks_2samp(shifted_conf, np.asarray(REF["confidences"]))
    assert shifted["confidence_ks"] == pytest.approx(ks.statistic)
    assert shifted["confidence_ks_p"] == pytest.approx(ks.pvalue)
    assert shifted["input_length_ks"] > 0.8
    assert shifted["oov_rate"] == pytest.approx(0.3)
    assert shifted["oov_delta"] == pytest.approx(0.25)


def test_chi_square_matches_scipy() -> None:
    det = DriftDetector({"class_counts": {"a": 500, "b": 500}})
    got = det.score({"a": 60, "b": 40})
    exp = stats.chisquare([60, 40], [50, 50])
    assert got["class_chi2"] == pytest.approx(exp.statistic, rel=1e-3)
    assert got["class_chi2_p"] == pytest.approx(exp.pvalue, rel=1e-2)
    # integer labels live, string keys in a JSON reference
    det2 = DriftDetector({"class_counts": {"0": 10, "1": 10}})
    assert det2.score({0: 10, 1: 10})["class_psi"] == pytest.approx(0.0)
    assert DriftDetector({}).score({"a": 1})["class_psi"] is None


def test_oov_with_a_vectorizer_and_reference_build() -> None:
    train = ["cheap meds now", "meeting at noon", "cheap flights at noon"]
    vec = TfidfVectorizer().fit(train)
    analyzer = vec.build_analyzer()
    assert oov_rate(["cheap meds"], analyzer, vec.vocabulary_) == 0.0
    assert oov_rates(["cheap unknownword", ""], analyzer, vec.vocabulary_)[0] == 0.5
    assert np.isnan(oov_rates([""], analyzer, vec.vocabulary_)[0])
    ref = Reference.build(
        ["a", "b", "a"],
        [0.9, 0.8, 0.7],
        ["x" * 10, "y" * 5, "zz"],
        analyzer=analyzer,
        vocabulary=vec.vocabulary_,
    )
    assert ref.class_counts == {"a": 2, "b": 1}
    assert sorted(ref.input_lengths.tolist()) == [2, 5, 10]
    assert ref.oov_rate == 1.0
    big = Reference.build(["a"] * 5000, np.linspace(0, 1, 5000), max_values=2000)
    assert big.confidences.size == 2000 and big.n == 5000


@pytest.mark.parametrize(
    ("name", "live_conf", "live_classes"),
    [
        ("beta(4,2) vs beta(5,2), 30/30/20/20 vs 50/30/15/5", (4, 2), [0.3, 0.3, 0.2, 0.2]),
        ("beta(2,2) vs beta(5,2), 10/10/40/40 vs 50/30/15/5", (2, 2), [0.1, 0.1, 0.4, 0.4]),
    ],
)
@pytest.mark.parametrize("n", [200, 1000])
def test_drift_intervals_cover_the_population_score(name, live_conf, live_classes, n) -> None:
    """The basic bootstrap's 95% interval covers the score of the population each window was
    sampled from in at least 90% of 200 windows, for the class PSI and the confidence KS."""
    rng = np.random.default_rng(0)
    ref_conf = rng.beta(5, 2, 2000)
    ref_p = np.array([0.5, 0.3, 0.15, 0.05])
    det = DriftDetector(
        {"class_counts": {str(i): int(c) for i, c in enumerate(ref_p * 10_000)},
         "confidences": ref_conf.tolist()}
    )  # fmt: skip
    population = rng.beta(*live_conf, 200_000)
    true_ks = stats.ks_2samp(population, ref_conf).statistic
    true_psi = psi(ref_p, np.asarray(live_classes))
    covered = {"confidence_ks": 0, "class_psi": 0}
    for w in range(200):
        r = np.random.default_rng(100 + w)
        counts = r.multinomial(n, live_classes)
        d = det.score(
            {str(i): int(c) for i, c in enumerate(counts)}, r.choice(population, n), seed=w
        )
        for key, truth in (("confidence_ks", true_ks), ("class_psi", true_psi)):
            lo, hi = d["intervals"][key]
            assert lo <= d[key] <= hi or lo == 0.0  # type: ignore[literal-required]
            covered[key] += lo <= truth <= hi
    assert covered["confidence_ks"] / 200 >= 0.9, name
    assert covered["class_psi"] / 200 >= 0.9, name


def test_no_intervals_without_data_or_when_asked_for_none() -> None:
    det = DriftDetector({"class_counts": {"a": 5, "b": 5}, "confidences": [0.5, 0.9]})
    d = det.score({}, None)
    assert d["intervals"] == {}
    assert det.score({"a": 3}, np.array([0.6, 0.7]), bootstrap=0)["intervals"] == {}


def test_no_psi_interval_below_five_predictions_per_reference_class() -> None:
    det = DriftDetector({"class_counts": {str(i): 10 for i in range(150)}})
    thin = det.score({str(i): 1 for i in range(200)}, None)
    assert thin["class_psi"] is not None and "class_psi" not in thin["intervals"]
    why = thin["no_interval"]["class_psi"]
    assert (why["n"], why["needed"]) == (200, 750) and "n too small" in why["reason"]
    thick = det.score({str(i): 5 for i in range(150)}, None)
    assert "class_psi" in thick["intervals"] and "no_interval" not in thick
