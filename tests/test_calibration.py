"""The confidence -> P(correct) map: its fit, its choice, its JSON form and its interval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leanml._calibration import ConfidenceMap, fit_confidence_map, log_loss
from leanml.errors import ParameterError
from leanml.monitor.drift import Reference
from leanml.registry import ModelRegistry
from leanml.workflows import register_model


def _underconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 150-class model's shape: confidences low, P(correct) = sqrt(c) (much higher)."""
    rng = np.random.default_rng(seed)
    c = rng.beta(2, 2, n)
    return c, rng.random(n) < np.sqrt(c)


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """P(correct) = sigmoid(logit(c) / 2): a temperature of 2 is the truth."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.5, 0.999, n)
    z = np.log(c / (1 - c)) / 2
    return c, rng.random(n) < 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("make", [_underconfident, _overconfident])
def test_the_map_brings_the_estimate_to_the_realized_accuracy_on_fresh_data(make):
    c, ok = make(3000, 0)
    cmap = fit_confidence_map(c, ok)
    c2, ok2 = make(20_000, 1)
    assert abs(c2.mean() - ok2.mean()) > 0.05  # raw confidences are off
    assert abs(cmap.apply(c2).mean() - ok2.mean()) < 0.01
    assert log_loss(cmap.apply(c2), ok2) < log_loss(c2, ok2)


def test_the_lower_out_of_fold_log_loss_wins():
    c, ok = _overconfident(4000, 2)
    cmap = fit_confidence_map(c, ok)
    assert set(cmap.log_loss) == {"identity", "temperature", "isotonic"}
    assert cmap.method == min(cmap.log_loss, key=cmap.log_loss.__getitem__)
    # a one-parameter truth: the temperature map wins and finds T close to 2
    assert cmap.method == "temperature"
    assert cmap.temperature == pytest.approx(2.0, rel=0.15)
    c, ok = _underconfident(4000, 3)  # not a temperature shape: isotonic wins
    assert fit_confidence_map(c, ok).method == "isotonic"


def test_isotonic_knots_are_non_decreasing_and_within_0_1():
    c, ok = _underconfident(2000, 4)
    cmap = fit_confidence_map(c, ok)
    assert np.all(np.diff(cmap.knots_y) >= 0) and np.all(np.diff(cmap.knots_x) >= 0)
    assert cmap.knots_y.min() >= 0 and cmap.knots_y.max() <= 1
    p = cmap.apply(np.linspace(0, 1, 101))
    assert np.all(np.diff(p) >= -1e-12)


@pytest.mark.parametrize("make", [_underconfident, _overconfident])
def test_the_map_survives_json(make):
    c, ok = make(1500, 5)
    cmap = fit_confidence_map(c, ok)
    back = ConfidenceMap.from_dict(json.loads(json.dumps(cmap.to_dict())))
    assert back.method == cmap.method and back.n == 1500
    np.testing.assert_allclose(back.apply(c), cmap.apply(c), atol=1e-5)


def test_a_bad_map_is_refused_with_its_field():
    with pytest.raises(ParameterError, match="method"):
        ConfidenceMap.from_dict({"method": "platt"})
    with pytest.raises(ParameterError, match="knots"):
        ConfidenceMap.from_dict({"method": "isotonic", "knots_x": [0.1], "knots_y": []})
    with pytest.raises(ParameterError, match="temperature"):
        ConfidenceMap.from_dict({"method": "temperature", "temperature": 0})
    with pytest.raises(ParameterError, match="correct"):
        fit_confidence_map([0.5, 0.6], [True])


def test_the_interval_covers_the_realized_accuracy_of_windows():
    c, ok = _underconfident(3000, 6)
    cmap = fit_confidence_map(c, ok)
    c2, ok2 = _underconfident(200 * 300, 7)
    covered = 0
    for w in range(300):
        sl = slice(200 * w, 200 * (w + 1))
        est, lo, hi = cmap.interval(cmap.apply(c2[sl]))
        assert lo < est < hi
        covered += lo <= ok2[sl].mean() <= hi
    assert covered / 300 >= 0.92


def test_the_map_survives_a_save_and_load_through_the_manifest(tmp_path, tiny_pipeline):
    X = ["buy cheap pills now", "meeting notes attached", "win money fast", "lunch at noon"] * 30
    rng = np.random.default_rng(0)
    # noisy labels, so that the model is wrong sometimes and the map has something to fit
    y = np.where(rng.random(len(X)) < 0.8, tiny_pipeline.predict(X), "spam").tolist()
    registry = ModelRegistry(tmp_path / "models")
    register_model(registry, "email", tiny_pipeline, X, y)
    stored = ModelRegistry(tmp_path / "models").manifest("email").extra["reference"]
    assert stored["calibration"]["method"] in ("identity", "temperature", "isotonic")
    cmap = Reference.from_dict(stored).calibration
    assert cmap is not None and cmap.n == len(X)
    conf = tiny_pipeline.predict_proba(X).max(axis=1)
    correct = tiny_pipeline.predict(X) == np.asarray(y)
    expected = fit_confidence_map(conf, correct)
    np.testing.assert_allclose(cmap.apply(conf), expected.apply(conf), atol=1e-5)
    assert cmap.val_accuracy == pytest.approx(correct.mean())


@pytest.mark.slow
@pytest.mark.parametrize("task", ["email", "intent", "sentiment"])
def test_demo_models_estimate_and_interval_coverage_on_the_real_test_split(task, data_dir):
    """Issue 18's targets on a demo model: the calibrated estimate within 2 points of the
    realized test accuracy, within 3 under class-mix shift; over 200 seeded windows of 200
    rows resampled from the test split (real labels), the Wilson interval covers the split's
    accuracy and the estimate's interval the window's realized accuracy in >= 90% of them."""
    from leanml._intervals import wilson
    from leanml._predict import predict_with_confidence
    from leanml.training import train_model

    trained = train_model(task)
    cmap = Reference.from_dict(trained.reference).calibration
    assert cmap is not None
    data = trained.dataset
    labels, conf, _ = predict_with_confidence(trained.pipeline, data.X_test)
    ok = labels == np.asarray(data.y_test)
    p = cmap.apply(conf)
    assert abs(p.mean() - ok.mean()) <= 0.02
    assert abs(p.mean() - ok.mean()) < abs(conf.mean() - ok.mean())  # better than raw
    wilson_hits = estimate_hits = 0
    for w in range(200):
        idx = np.random.default_rng(1000 + w).choice(ok.size, 200)
        lo, hi = wilson(float(ok[idx].sum()), 200)
        wilson_hits += lo <= ok.mean() <= hi
        _, elo, ehi = cmap.interval(p[idx])
        estimate_hits += elo <= ok[idx].mean() <= ehi
    assert wilson_hits / 200 >= 0.9 and estimate_hits / 200 >= 0.9
    # class-mix shift: 5 seeded resamplings of the test split, Dirichlet(1) class weights,
    # corrected as the monitor does: within 3 points (email's rare class needs the out-of-fold
    # counts: 4.9 points off with the validation ones alone)
    classes, codes = np.unique(np.asarray(data.y_test), return_inverse=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        weights = rng.dirichlet(np.ones(classes.size))[codes] / np.bincount(codes)[codes]
        idx = rng.choice(ok.size, ok.size, p=weights / weights.sum())
        adjusted = cmap.shift_adjusted(p[idx], labels[idx])
        assert abs(adjusted.mean() - ok[idx].mean()) <= 0.03


def _three_class_model(n: int, prior: list[float], seed: int):
    """Labels drawn with ``prior``; the model right 90% / 80% / 50% of the time per true class
    (its errors spread over the other classes), confidences uninformative (0.8)."""
    rng = np.random.default_rng(seed)
    true = rng.choice(3, n, p=prior)
    recall = np.array([0.9, 0.8, 0.5])[true]
    right = rng.random(n) < recall
    wrong = (true + rng.integers(1, 3, n)) % 3
    pred = np.where(right, true, wrong)
    names = np.array(["a", "b", "c"])
    return names[pred], names[true], np.full(n, 0.8), pred == true


def test_the_class_mix_shift_correction_follows_the_prior():
    pred, true, conf, ok = _three_class_model(6000, [0.4, 0.4, 0.2], 0)
    cmap = fit_confidence_map(conf, ok, predicted=pred, true=true)
    assert cmap.classes == ["a", "b", "c"] and cmap.confusion.sum() == 6000
    back = ConfidenceMap.from_dict(json.loads(json.dumps(cmap.to_dict())))
    np.testing.assert_array_equal(back.confusion, cmap.confusion)
    # the same mix: left alone
    pred2, _, conf2, ok2 = _three_class_model(2000, [0.4, 0.4, 0.2], 1)
    p2 = cmap.apply(conf2)
    assert cmap.shift_adjusted(p2, pred2) is p2
    # the weak class now dominates: the map alone is 10+ points off, corrected within 3
    pred3, _, conf3, ok3 = _three_class_model(6000, [0.1, 0.1, 0.8], 2)
    p3 = cmap.apply(conf3)
    assert abs(p3.mean() - ok3.mean()) > 0.1
    assert abs(back.shift_adjusted(p3, pred3).mean() - ok3.mean()) < 0.03


def test_held_out_counts_pool_with_validation_and_survive_json():
    """Validation alone (300 rows, ~30 of the weak class) against pooled with 3000 out-of-fold
    rows, when the weak class comes to dominate: over 5 seeds the pool's shift-corrected
    estimate is off by under 60% as much (mean absolute error; measured 0.071 -> 0.036);
    the counts and their held-out share survive JSON."""
    from leanml._calibration import confusion_counts

    alone, pooled = [], []
    for seed in range(5):
        pred, true, conf, ok = _three_class_model(300, [0.45, 0.45, 0.1], 10 + seed)
        hp, ht, _, _ = _three_class_model(3000, [0.45, 0.45, 0.1], 20 + seed)
        held = confusion_counts(hp, ht, ["a", "b", "c"])
        val = fit_confidence_map(conf, ok, predicted=pred, true=true)
        cmap = fit_confidence_map(
            conf, ok, predicted=pred, true=true, heldout=(["a", "b", "c"], held)
        )
        assert cmap.confusion.sum() == 3300 and cmap.n == 300
        np.testing.assert_array_equal(cmap.confusion, val.confusion + held)
        back = ConfidenceMap.from_dict(json.loads(json.dumps(cmap.to_dict())))
        np.testing.assert_array_equal(back.heldout, held)
        np.testing.assert_array_equal(back.confusion, cmap.confusion)
        pred3, _, conf3, ok3 = _three_class_model(6000, [0.1, 0.1, 0.8], 30 + seed)
        p3 = back.apply(conf3)
        alone.append(abs(val.shift_adjusted(p3, pred3).mean() - ok3.mean()))
        pooled.append(abs(back.shift_adjusted(p3, pred3).mean() - ok3.mean()))
    assert np.mean(pooled) < 0.6 * np.mean(alone)
    with pytest.raises(ParameterError, match="heldout"):
        fit_confidence_map(conf, ok, predicted=pred, true=true, heldout=(["a"], held))


def test_shrinkage_gives_an_unseen_error_pattern_to_a_small_class():
    """A class seen 4 times, never mistaken in validation: without shrinkage a window full of it
    would read 100% precise; the pseudo-rows lend it the others' error rate."""
    from leanml._calibration import SHRINK_ROWS, _shrunk

    c = np.array([[90.0, 10.0, 0.0], [10.0, 90.0, 0.0], [0.0, 0.0, 4.0]])
    s = _shrunk(c)
    np.testing.assert_allclose(s.sum(axis=0) - c.sum(axis=0), SHRINK_ROWS)
    assert s[2, 2] / s[:, 2].sum() < 1.0 and s[0, 2] > 0 and s[1, 2] > 0
    # a large class is barely moved
    assert abs(s[0, 0] / s[:, 0].sum() - 0.9) < 0.01


def test_held_out_confusion_of_the_training_split():
    from leanml.training import build_pipeline, heldout_confusion

    X = ["buy cheap pills now", "meeting notes attached", "win money fast", "lunch at noon"] * 10
    y = ["spam", "ham", "spam", "ham"] * 10
    classes, counts = heldout_confusion(build_pipeline(), X, y)
    assert classes == ["ham", "spam"] and counts.sum() == len(X)
    many = [f"c{i}" for i in range(25)] * 4
    assert heldout_confusion(build_pipeline(), [f"text {v}" for v in many], many) is None
