"""Types of the C module built from ``_native.pyx`` (see its docstring)."""

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

def top_softmax(scores: Any) -> tuple[int, float]: ...
def sub_marks(text: str, urls: bool) -> str: ...
def mark_spans(text: str, urls: bool) -> list[tuple[int, int]]: ...
def mask_digits(text: str) -> str: ...

AES_NI: bool

class IssuerCore:
    def set_key(self, key: bytes, aes: bool | None = ...) -> None: ...
    prefix: str
    @property
    def tag_function(self) -> str: ...
    def digest(self, block: int) -> bytes: ...
    def make(self, counter: int) -> str: ...
    def expected(self, counter: int) -> str: ...
    def take(self, start: int, n: int) -> list[str]: ...

class RingCore:
    issued: int
    capacity: int
    max_age_s: float
    clock: Callable[[], float]
    evicted_age: int
    evicted_capacity: int
    def bind(self, ts: Any, state: Any, code: Any, pred: Any, conf: Any) -> None: ...
    def put_one(self, code: int, pred: int, conf: float) -> int: ...
    def put(self, n: int, code: int, pred: Any = ..., conf: Any = ...) -> int: ...

class RingLock:
    @property
    def held(self) -> bool: ...
    def acquire(self) -> bool: ...
    def release(self) -> None: ...
    def locked(self) -> bool: ...
    def __enter__(self) -> RingLock: ...
    def __exit__(self, *exc: object) -> None: ...

class IssueCore:
    issuer: IssuerCore
    ring: RingCore
    @property
    def lock(self) -> RingLock: ...
    def issue(self, n: int, code: int = ..., pred: Any = ..., conf: Any = ...) -> list[str]: ...
    def issue_one(self, code: int, pred: int, conf: float) -> str: ...

#: what SingleBuffer.take and take_batches return, in the order of TAKEN_COLUMNS
Taken = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray | None,
    np.ndarray,
    np.ndarray,
    float,
    bool,
    list[int],
    list[Any],
    np.ndarray,
    np.ndarray | None,
    list[Any],
    list[Any] | None,
]
TAKEN_COLUMNS: tuple[str, ...]

class Sampler:
    def __init__(self, rate: float, below: float | None, hash_of: Callable[[Any], int]) -> None: ...
    @property
    def low_on(self) -> bool: ...

class SingleBuffer:
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> tuple[Any, ...]: ...
    def take(self, limit: int, label_index: dict[Any, int], sampler: Sampler) -> Taken: ...

class Recorder:
    cap: int
    due: float
    def __init__(
        self,
        buf: SingleBuffer,
        cap: int,
        clock: Callable[[], float],
        drop: Callable[[str, int], None],
        invalid: Callable[[str], None],
        wake: Callable[[], object] | None = None,
        on_due: Callable[[], object] | None = None,
    ) -> None: ...
    def bind(
        self,
        buf: SingleBuffer,
        cap: int,
        clock: Callable[[], float],
        drop: Callable[[str, int], None],
        invalid: Callable[[str], None],
        wake: Callable[[], object] | None = None,
        on_due: Callable[[], object] | None = None,
    ) -> None: ...
    def record(
        self,
        prediction_id: Hashable,
        label: Any,
        confidence: float,
        latency_s: float,
        input: str | None = None,
        tokens: int = -1,
        known: int = 0,
    ) -> None: ...

FUSED: int
PROBA: int
DECISION: int

class LastIds:
    def set(self, ids: list[str]) -> None: ...
    def get(self) -> list[str]: ...

class OneCall:
    def __init__(
        self,
        kind: int,
        model: Callable[..., Any],
        labels: Any,
        gt: IssueCore,
        rec: Recorder,
        inputs: bool,
        last: LastIds,
        note: Callable[[int], None],
        error: Callable[[int], None],
        sample_every: int,
        fallback: Callable[[Any], Any],
        fallback_ids: Callable[[Any], tuple[Any, list[str]]],
    ) -> None: ...
    def predict(self, X: Any) -> Any: ...
    def predict_with_ids(self, X: Any) -> tuple[Any, list[str]]: ...

def sample_hashes_of_str(ids: list[Any]) -> np.ndarray | None: ...

SHA_NI: bool

def sha256_hex(data: bytes, ni: bool) -> str: ...

STORE_TEXT: int
STORE_REDACTED: int
STORE_HASH: int
STORE_NONE: int

def detail_fields(
    ids: list[Any], inputs: list[Any] | None, at: list[int], mode: int
) -> tuple[list[str], list[Any], list[str | None]]: ...
def take_at(items: list[Any], at: np.ndarray) -> list[Any]: ...
def take_batches(
    bbuf: deque[tuple[Any, ...]], limit: int, label_index: dict[Any, int], sampler: Sampler
) -> Taken: ...
def sketch_add_many(sk: Any, values: Any) -> None: ...
