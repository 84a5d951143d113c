"""Intent recognition: CLINC150 (150 intents), or the small email-assistant set leanml ships.

CLINC150 is CC BY 3.0 and is not part of this repository. :func:`find_clinc150` looks, in order:

1. an explicit path;
2. ``$LEANML_DATA_DIR/clinc150/data_full.json``;
3. the user cache, ``~/.cache/leanml/clinc150/data_full.json`` (``LEANML_CACHE_DIR``);
4. a download from the canonical public location, checked against its sha256, when
   ``allow_download`` is on (``leanml datasets fetch clinc150`` does this explicitly);

and otherwise raises :class:`~leanml.errors.DatasetNotFoundError` naming these options.
``load_intent(source="auto")`` (what the demo uses) tries 1-3 only, then falls back to the
bundled email-assistant intents and says so in ``Dataset.notes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from leanml.config import Settings
from leanml.datasets._base import Dataset, split_dataset
from leanml.errors import DatasetError, DatasetNotFoundError, ParameterError

__all__ = [
    "fetch_clinc150",
    "find_clinc150",
    "load_clinc150",
    "load_email_intents",
    "load_intent",
]

_CLINC150_URL = (
    "https://raw.githubusercontent.com/clinc/oos-eval/"
    "828f8093932c8fe6ca7936c3d2e52903b1c523de/data/data_full.json"
)
_CLINC150_SHA256 = "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0"
_CLINC150_LICENSE = "CC BY 3.0 Unported (https://creativecommons.org/licenses/by/3.0/)"
_CLINC150_CITATION = (
    '"An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction" (CLINC150), '
    "Larson, Mahendran, Peper, Clarke, Lee, Hill, Kummerfeld, Leach, Laurenzano, Tang and Mars "
    "(Clinc, Inc.), EMNLP-IJCNLP 2019, https://www.aclweb.org/anthology/D19-1131; data from "
    "https://github.com/clinc/oos-eval, licensed under CC BY 3.0. Unmodified copy."
)
_BUNDLED_INTENTS = Path(__file__).parent / "data" / "email_intents.jsonl"
_BUNDLED_LICENSE = "CC0-1.0 (written for leanml)"


def _clinc150_candidates(settings: Settings) -> list[Path]:
    out = []
    if settings.data_dir is not None:
        out.append(settings.data_dir / "clinc150" / "data_full.json")
    out.append(settings.cache_dir / "clinc150" / "data_full.json")
    return out


def find_clinc150(
    path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    download: bool | None = None,
) -> Path:
    """Locate ``data_full.json`` (see the module docstring for the order)."""
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise DatasetNotFoundError(f"The CLINC150 file {candidate} does not exist.")
        return candidate
    settings = settings or Settings.load()
    for candidate in _clinc150_candidates(settings):
        if candidate.is_file():
            return candidate
    if download if download is not None else settings.allow_download:
        return fetch_clinc150(settings=settings)
    raise DatasetNotFoundError(_not_found_message(settings))


def _not_found_message(settings: Settings) -> str:
    looked = ", ".join(str(p) for p in _clinc150_candidates(settings))
    return (
        f"CLINC150 was not found (looked in: {looked}). Pass its path, set LEANML_DATA_DIR to a "
        "folder holding clinc150/data_full.json, or run `leanml datasets fetch clinc150` "
        f"with network access to download it into {settings.cache_dir / 'clinc150'}."
    )


def fetch_clinc150(*, settings: Settings | None = None, url: str = _CLINC150_URL) -> Path:
    """Download CLINC150 into the user cache, checking its sha256; returns the file's path."""
    settings = settings or Settings.load()
    target = settings.cache_dir / "clinc150" / "data_full.json"
    if target.is_file() and _sha256(target.read_bytes()) == _CLINC150_SHA256:
        return target
    try:
        with urllib.request.urlopen(url, timeout=settings.download_timeout_s) as response:
            data = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DatasetNotFoundError(
            f"Downloading CLINC150 from {url} failed ({exc}). " + _not_found_message(settings)
        ) from exc
    digest = _sha256(data)
    if digest != _CLINC150_SHA256:
        raise DatasetError(
            f"The download from {url} has sha256 {digest}, expected {_CLINC150_SHA256}; not saved."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".data_full-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    (target.parent / "ATTRIBUTION.txt").write_text(
        _CLINC150_CITATION + "\n" + _CLINC150_LICENSE + "\n"
    )
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_clinc150(
    path: str | Path | None = None,
    *,
    with_oos: bool = False,
    settings: Settings | None = None,
    download: bool | None = None,
) -> Dataset:
    """The official CLINC150 train / val / test split (optionally with the ``oos`` class)."""
    file = find_clinc150(path, settings=settings, download=download)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        splits = {}
        for split in ("train", "val", "test"):
            rows = data[split] + (data["oos_" + split] if with_oos else [])
            splits[split] = ([t for t, _ in rows], [label for _, label in rows])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"Cannot read CLINC150 from {file}: {exc}") from exc
    import numpy as np

    return Dataset(
        name="clinc150",
        task="intent",
        X_train=splits["train"][0],
        y_train=np.asarray(splits["train"][1], dtype=str),
        X_val=splits["val"][0],
        y_val=np.asarray(splits["val"][1], dtype=str),
        X_test=splits["test"][0],
        y_test=np.asarray(splits["test"][1], dtype=str),
        source=str(file),
        license=_CLINC150_LICENSE,
        citation=_CLINC150_CITATION,
    )


def load_email_intents(path: str | Path | None = None, *, seed: int = 0) -> Dataset:
    """The bundled email-assistant intents (written for leanml), stratified 70 / 10 / 20."""
    file = Path(path) if path is not None else _BUNDLED_INTENTS
    texts, labels = [], []
    try:
        with open(file, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    texts.append(row["text"])
                    labels.append(row["intent"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"Cannot read the email intents {file}: {exc}") from exc
    return split_dataset(
        texts,
        labels,
        name="email-intents",
        task="intent",
        seed=seed,
        source="bundled" if path is None else str(file),
        license=_BUNDLED_LICENSE,
        citation="leanml's email-assistant intents, written for the project (CC0-1.0).",
    )


def load_intent(
    path: str | Path | None = None,
    *,
    source: str = "auto",
    settings: Settings | None = None,
) -> Dataset:
    """Intent data: ``source`` is "clinc150", "email-intents", or "auto" (CLINC150 when a
    local copy exists, else the bundled set, with the reason in ``notes``)."""
    if source == "clinc150":
        return load_clinc150(path, settings=settings)
    if source == "email-intents":
        return load_email_intents(path)
    if source != "auto":
        raise ParameterError(
            "The 'source' parameter of load_intent must be one of 'auto', 'clinc150', "
            f"'email-intents', got {source!r} instead."
        )
    try:
        return load_clinc150(path, settings=settings, download=False)
    except DatasetNotFoundError as exc:
        fallback = load_email_intents()
        return Dataset(
            **{
                **{f: getattr(fallback, f) for f in fallback.__dataclass_fields__},
                "notes": f"CLINC150 unavailable, using the bundled email intents instead: {exc}",
            }
        )
