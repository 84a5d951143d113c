import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from leanml.datasets import load_email_intents
from leanml.errors import ParameterError
from leanml.training import ESTIMATORS, build_pipeline, evaluate, make_reference, train_model


@pytest.fixture(scope="module")
def intents():
    return load_email_intents()


def test_unknown_estimator_is_a_clear_error():
    with pytest.raises(ParameterError, match="'estimator' parameter of build_pipeline"):
        build_pipeline("xgboost")


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_trains_and_beats_chance(estimator, intents):
    trained = train_model("intent", estimator, dataset=intents, heldout_folds=0)
    test = trained.metrics["test"]
    assert test["accuracy"] > 3 / len(intents.classes)  # well above chance for 20 intents
    predicted = trained.pipeline.predict(intents.X_test)
    assert test["accuracy"] == pytest.approx(accuracy_score(intents.y_test, predicted))
    assert test["macro_f1"] == pytest.approx(f1_score(intents.y_test, predicted, average="macro"))
    assert set(test["per_class"]) >= set(intents.y_test.tolist())


def test_logreg_reference_describes_validation_predictions(intents):
    trained = train_model("intent", dataset=intents, heldout_folds=0)
    ref = trained.reference
    assert ref["n"] == len(intents.X_val)
    assert sum(ref["class_counts"].values()) == len(intents.X_val)
    assert len(ref["confidences"]) == min(2000, len(intents.X_val))
    assert all(0 < c <= 1 for c in ref["confidences"])
    assert 0.0 <= ref["oov_rate"] < 0.5
    # text made of unseen words is fully out of vocabulary
    assert make_reference(trained.pipeline, ["zzqx wvvy"])["oov_rate"] == 1.0


def test_evaluate_per_class_matches_counts():
    class Echo:
        def predict(self, X):
            return np.asarray(X)

    metrics = evaluate(Echo(), ["a", "a", "b"], np.array(["a", "b", "b"]))
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["a"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": 0.6667,
        "support": 1,
    }


def test_out_of_fold_counts_join_the_calibration_map(intents):
    """The 20-intent fixture (658 training rows): the map's confusion counts are the
    validation ones plus one out-of-fold prediction per training row."""
    trained = train_model("intent", "complementnb", dataset=intents, heldout_folds=3)
    cal = trained.reference["calibration"]
    assert sum(map(sum, cal["heldout_confusion"])) == len(intents.X_train)
    assert sum(map(sum, cal["confusion"])) == len(intents.X_train) + len(intents.X_val)
    with pytest.raises(ParameterError, match="heldout_folds"):
        train_model("intent", "complementnb", dataset=intents, heldout_folds=1)


def test_out_of_fold_counts_only_when_the_validation_split_is_thin_for_a_class() -> None:
    from leanml.training import HELDOUT_BELOW, _thin_validation

    enough = ["a"] * HELDOUT_BELOW + ["b"] * HELDOUT_BELOW
    assert not _thin_validation(enough, ["a", "b"])
    assert _thin_validation(enough[:-1], ["a", "b"])  # b: one row short
    assert _thin_validation(["a"] * 500, ["a", "b"])  # b missing from validation
