from collections import Counter

import pytest

from leanml.datasets import load_dataset, load_email
from leanml.datasets.email import find_email_file
from leanml.errors import DatasetNotFoundError


def test_bundled_corpus_splits_are_stratified_and_disjoint(settings):
    ds = load_email(settings=settings)
    assert ds.source == "bundled"
    assert find_email_file(settings=settings).name == "emails.jsonl.gz"
    assert len(ds.X_train) + len(ds.X_val) + len(ds.X_test) == 6046
    assert ds.classes == ["ham", "hard_ham", "spam"]
    total = Counter(ds.y_train.tolist()) + Counter(ds.y_val.tolist()) + Counter(ds.y_test.tolist())
    assert total == {"ham": 3900, "hard_ham": 250, "spam": 1896}
    test_share = Counter(ds.y_test.tolist())["spam"] / len(ds.y_test)
    assert abs(test_share - 1896 / 6046) < 0.01
    assert "PDDL" in ds.license and "SpamAssassin" in ds.citation


def test_same_seed_same_split(settings):
    a, b = load_email(settings=settings), load_dataset("email", settings=settings)
    assert a.X_test[:20] == b.X_test[:20]
    assert load_email(seed=1, settings=settings).X_test[:20] != a.X_test[:20]


def test_data_dir_copy_is_preferred(settings, data_dir):
    ds = load_email(settings=settings.replace(data_dir=data_dir))
    assert ds.source.endswith("spamassassin/emails.jsonl.gz")


def test_explicit_missing_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_email(tmp_path / "nope.jsonl.gz")
