"""What the load sends: the configuration, the texts and the request bodies.

Bodies are single-text predict requests. A ``duplicates`` fraction repeats one of :data:`HOT`
hot texts (exercising the prediction cache); every other request carries a unique suffix so it
can never hit the cache.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from leanml._validation import check_choice, check_number
from leanml.datasets import load_dataset

__all__ = ["HOT", "BenchConfig", "Bodies", "body_json", "load_texts", "request_path"]

#: how many hot texts the duplicate fraction draws from
HOT = 64


@dataclasses.dataclass
class BenchConfig:
    url: str
    model: str = "email"
    mode: str = "closed"
    concurrency: int = 32
    rate: float = 500.0
    pattern: str = "constant"
    rate_to: float | None = None
    steps: int = 4
    duration_s: float = 10.0
    warmup_s: float = 1.0
    duplicates: float = 0.0
    server_pid: int | None = None
    client: str = "auto"
    texts_file: str | None = None
    texts: list[str] | None = None
    path: str | None = None  # default /v1/models/{model}/predict
    body_format: str = "leanml"  # or "bentoml" ({"texts": [...]}), "plain" ({"text": ...})
    max_texts: int = 400

    def __post_init__(self) -> None:
        o = "BenchConfig"
        check_choice(self.mode, "mode", o, ("closed", "open"))
        check_choice(self.pattern, "pattern", o, ("constant", "step", "ramp"))
        check_choice(self.client, "client", o, ("auto", "wrk", "python"))
        check_choice(self.body_format, "body_format", o, ("leanml", "bentoml", "plain"))
        check_number(self.concurrency, "concurrency", o, low=1, integer=True)
        check_number(self.rate, "rate", o, low=0, low_open=True)
        check_number(self.duration_s, "duration_s", o, low=0, low_open=True)
        check_number(self.duplicates, "duplicates", o, low=0, high=1)


def load_texts(cfg: BenchConfig) -> list[str]:
    """The texts given, else the file's (one JSON string a line), else the demo test split."""
    if cfg.texts:
        return list(cfg.texts)[: cfg.max_texts]
    if cfg.texts_file:
        lines = Path(cfg.texts_file).read_text(encoding="utf-8").splitlines()
        return [json.loads(x) for x in lines if x.strip()][: cfg.max_texts]
    try:
        ds = load_dataset(cfg.model if cfg.model in ("email", "intent", "sentiment") else "email")
        return [str(x) for x in list(ds.X_test)[: cfg.max_texts]]
    except Exception:  # no dataset: synthetic texts
        rng = np.random.default_rng(0)
        words = ["meeting", "invoice", "free", "offer", "reply", "project", "cruise", "update"]
        return [" ".join(rng.choice(words, 40)) for _ in range(cfg.max_texts)]


def body_json(cfg: BenchConfig, text: str) -> str:
    """One predict request's JSON body in the configured format."""
    if cfg.body_format == "bentoml":
        return json.dumps({"texts": [text]})
    if cfg.body_format == "plain":
        return json.dumps({"text": text})
    return json.dumps({"inputs": [text]})


def request_path(cfg: BenchConfig) -> str:
    return cfg.path or f"/v1/models/{cfg.model}/predict"


class Bodies:
    """Unique bodies (text + counter suffix) and a hot pool for the duplicate fraction."""

    def __init__(self, cfg: BenchConfig, texts: list[str], seed: int = 0) -> None:
        self.cfg = cfg
        self.texts = texts
        self.rng = np.random.default_rng(seed)
        self.hot = [body_json(cfg, f"{texts[i % len(texts)]} d{i}").encode() for i in range(HOT)]
        self.n = 0

    def next(self) -> bytes:
        if self.cfg.duplicates > 0 and self.rng.random() < self.cfg.duplicates:
            return self.hot[int(self.rng.integers(HOT))]
        self.n += 1
        t = self.texts[self.n % len(self.texts)]
        return body_json(self.cfg, f"{t} u{self.n}").encode()
