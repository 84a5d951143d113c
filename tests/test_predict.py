import numpy as np
from sklearn.svm import LinearSVC

from leanml._predict import predict_with_confidence, scores_to_proba


def test_uses_predict_proba_when_available(tiny_pipeline, tiny_texts):
    X, _ = tiny_texts
    labels, conf, proba = predict_with_confidence(tiny_pipeline, X)
    np.testing.assert_array_equal(labels, tiny_pipeline.predict(X))
    np.testing.assert_allclose(conf, tiny_pipeline.predict_proba(X).max(axis=1))


def test_decision_function_models_get_softmax_confidences(tiny_texts):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    X, y = tiny_texts
    svc = make_pipeline(TfidfVectorizer(), LinearSVC()).fit(X, y)
    labels, conf, proba = predict_with_confidence(svc, X)
    np.testing.assert_array_equal(labels, svc.predict(X))
    assert np.all((conf >= 0.5) & (conf <= 1.0))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_scores_to_proba_softmax_and_sigmoid():
    p = scores_to_proba(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 100.0]]))
    np.testing.assert_allclose(p[0], [1 / 3] * 3)
    assert p[1, 2] > 0.999
    binary = scores_to_proba(np.array([0.0, 10.0]))
    np.testing.assert_allclose(binary[0], [0.5, 0.5])
    assert binary[1, 1] > 0.9999
