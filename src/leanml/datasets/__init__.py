"""The demo datasets (email categorization, intent recognition, sentiment) and the user's files.

>>> from leanml.datasets import load_dataset, load_file
>>> ds = load_dataset("email")      # SpamAssassin, bundled
>>> ds.X_train[:1], ds.y_train[:1]
>>> mine = load_file("tickets.csv", text_column="text", label_column="label")

:func:`write_rows` writes rows (predictions, exported feedback) as a file these loaders read back.

Each loader returns stratified (or official) train / validation / test splits with a fixed seed,
and the source, licence and citation to show the user.
"""

from __future__ import annotations

from pathlib import Path

from leanml.config import Settings
from leanml.datasets._base import Dataset
from leanml.datasets._writers import OUTPUT_SUFFIXES, check_output, write_rows
from leanml.datasets.email import load_email
from leanml.datasets.files import MIN_PER_CLASS, load_file, read_labelled, read_texts
from leanml.datasets.intent import (
    fetch_clinc150,
    find_clinc150,
    load_clinc150,
    load_email_intents,
    load_intent,
)
from leanml.datasets.sentiment import load_sentiment
from leanml.errors import ParameterError

__all__ = [
    "MIN_PER_CLASS",
    "OUTPUT_SUFFIXES",
    "TASKS",
    "Dataset",
    "check_output",
    "fetch_clinc150",
    "find_clinc150",
    "load_clinc150",
    "load_dataset",
    "load_email",
    "load_email_intents",
    "load_file",
    "load_intent",
    "load_sentiment",
    "read_labelled",
    "read_texts",
    "write_rows",
]

#: task name -> what it classifies
TASKS = {
    "email": "email categorization (ham / hard_ham / spam)",
    "intent": "intent recognition (CLINC150, 150 intents; bundled email intents offline)",
    "sentiment": "sentiment analysis (negative / neutral / positive tweets)",
}


def load_dataset(
    task: str, path: str | Path | None = None, *, settings: Settings | None = None
) -> Dataset:
    """The dataset of one of the three demo tasks (see :data:`TASKS`)."""
    if task == "email":
        return load_email(path, settings=settings)
    if task == "intent":
        return load_intent(path, settings=settings)
    if task == "sentiment":
        return load_sentiment(path)
    raise ParameterError(
        "The 'task' parameter of load_dataset must be one of "
        f"{', '.join(repr(t) for t in TASKS)}, got {task!r} instead."
    )
