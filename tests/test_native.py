"""leanml._native: the C id minting, ring put and record, against Python references."""

from __future__ import annotations

import collections
import hashlib
import math
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from leanml._ids import input_hash, sample_hash, sample_hashes
from leanml._native import (
    AES_NI,
    DECISION,
    FUSED,
    PROBA,
    SHA_NI,
    STORE_HASH,
    STORE_NONE,
    STORE_REDACTED,
    STORE_TEXT,
    IssuerCore,
    LastIds,
    OneCall,
    Recorder,
    Sampler,
    SingleBuffer,
    detail_fields,
    mark_spans,
    mask_digits,
    sample_hashes_of_str,
    sha256_hex,
    sub_marks,
    take_at,
    take_batches,
)
from leanml._predict import scores_to_proba
from leanml.groundtruth import GroundTruth, IdIssuer, PendingRing

_needs_aes = pytest.mark.skipif(not AES_NI, reason="no AES instructions")


def _reference_digest(prefix: str, key: bytes, block: int, aes: bool) -> bytes:
    """The 64 bytes of a block's tags as IssuerCore's docstring defines them, with hashlib and
    the cryptography package's AES."""
    if not aes:
        return hashlib.blake2b(f"{prefix}-{block:x}".encode(), key=key, digest_size=64).digest()
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    aes_key = hashlib.blake2b(b"leanml-aes-128:" + prefix.encode(), key=key, digest_size=64)
    enc = Cipher(algorithms.AES(aes_key.digest()[:16]), modes.ECB()).encryptor()
    plain = b"".join(block.to_bytes(8, "little") + j.to_bytes(8, "little") for j in range(4))
    return enc.update(plain) + enc.finalize()


def _reference_id(prefix: str, key: bytes, counter: int, aes: bool) -> str:
    """The id as the module docstring of leanml.groundtruth.ids defines it, in Python."""
    tag = _reference_digest(prefix, key, counter >> 3, aes).hex()
    slot = counter & 7
    return f"{prefix}-{counter:x}-{tag[16 * slot : 16 * slot + 16]}"


#: the tag functions this CPU can run (BLAKE2b everywhere, AES-128 with the AES instructions)
TAG_FUNCTIONS = [False, pytest.param(True, marks=_needs_aes)]


@pytest.mark.parametrize("aes", TAG_FUNCTIONS)
@pytest.mark.parametrize("key", [b"", b"k", bytes(range(32)), bytes(range(64))])
def test_the_c_tags_are_hashlibs_blake2b_or_aes(key: bytes, aes: bool) -> None:
    issuer = IdIssuer("pre", key)
    issuer.set_key(key, aes=aes)
    assert issuer.tag_function == ("aes-128" if aes else "blake2b")
    for block in [0, 1, 9, 255, 2**40 + 1, 2**60 - 1]:
        assert issuer.digest(block) == _reference_digest("pre", key, block, aes), block


def test_the_tags_are_aes_where_the_cpu_has_it() -> None:
    assert IdIssuer("p").tag_function == ("aes-128" if AES_NI else "blake2b")
    if not AES_NI:
        with pytest.raises(ValueError, match="AES"):
            IdIssuer("p").set_key(b"k", aes=True)


@pytest.mark.parametrize("aes", TAG_FUNCTIONS)
@pytest.mark.parametrize("prefix", ["a", "3f9c01d2", "x" * 32])
def test_minted_ids_are_the_keyed_tags(prefix: str, aes: bool) -> None:
    key = bytes(range(32))
    issuer = IdIssuer(prefix, key)
    issuer.set_key(key, aes=aes)
    counters = [0, 1, 7, 8, 9, 15, 16, 255, 4096, 2**40 + 3, 2**63 - 1]
    for c in counters:  # make uses its block cache, expected never does: both agree
        assert issuer.make(c) == issuer.expected(c) == _reference_id(prefix, key, c, aes)
    assert issuer.take(5, 20) == [_reference_id(prefix, key, c, aes) for c in range(5, 25)]
    assert issuer.take(3, 0) == []


@pytest.mark.parametrize("aes", TAG_FUNCTIONS)
def test_a_new_prefix_gets_its_own_tags(aes: bool) -> None:
    """The AES key is derived from the prefix: changing the prefix changes every tag."""
    key = bytes(range(32))
    issuer = IdIssuer("one", key)
    issuer.set_key(key, aes=aes)
    first = issuer.make(3)
    issuer.prefix = "two"
    assert issuer.make(3) == _reference_id("two", key, 3, aes)
    assert issuer.make(3).split("-")[2] != first.split("-")[2]


@pytest.mark.parametrize("prefix", ["é", "x" * 33])
def test_a_prefix_the_c_buffer_cannot_hold_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        IdIssuer(prefix)
    issuer = IdIssuer("ok")
    with pytest.raises(ValueError, match="32 ASCII"):
        issuer.prefix = prefix
    assert issuer.prefix == "ok"


def test_c_cores_refuse_what_would_make_them_read_or_write_out_of_bounds() -> None:
    import array

    with pytest.raises(ValueError, match="at most 64 bytes"):  # as hashlib's BLAKE2b
        IdIssuer("p", bytes(65))
    with pytest.raises(RuntimeError, match="set_key"):  # no key: no id
        IssuerCore().make(5)
    ring = PendingRing(4)
    with pytest.raises(ValueError, match="capacity=4"):
        ring.bind(*(array.array(code, bytes(3 * array.array(code).itemsize)) for code in "dbhid"))
    with pytest.raises(ValueError, match="n >= 0"):
        ring.put(-1, 0)
    assert ring.issued == 0


def test_a_counter_beyond_the_c_range_does_not_verify() -> None:
    issuer = IdIssuer("p")
    assert issuer.verify(f"p-{2**63:x}-{'0' * 16}") == -1
    assert issuer.verify(issuer.make(2**63 - 1)) == 2**63 - 1


def test_put_writes_every_slot_from_arrays_lists_or_one_value() -> None:
    ring = PendingRing(8, 100.0, lambda: 50.0)
    assert ring.put(3, 2, [4, 5, 6], np.array([0.1, 0.2, 0.3])) == 0
    assert ring.put(2, 1, np.array([7, 8], dtype=np.int32), 0.5) == 3
    assert ring.put(1, 0, [9], [0.75]) == 5  # one prediction: the one-slot put
    assert ring.issued == 6
    got = [ring.take(c) for c in range(6)]
    assert [(code, pred, conf) for code, pred, conf, _ in got] == [
        (2, 4, 0.1),
        (2, 5, 0.2),
        (2, 6, 0.3),
        (1, 7, 0.5),
        (1, 8, 0.5),
        (0, 9, 0.75),
    ]
    with pytest.raises(ValueError, match="pred: 4 numbers expected"):
        ring.put(4, 0, [1, 2, 3], 0.5)
    with pytest.raises(ValueError, match="conf: 4 numbers expected"):
        ring.put(4, 0, np.arange(4), np.ones(5))
    with pytest.raises((TypeError, ValueError)):  # not a number
        ring.put(4, 0, [1, 2, "x", 3], 0.5)
    assert ring.put(0, 0, np.array([], dtype=np.int64), np.array([])) == 6  # nothing to put
    assert ring.issued == 6  # nothing reserved by a refused put


def test_issue_one_and_issue_from_many_threads_never_share_a_counter() -> None:
    gt = GroundTruth(capacity=1_000)
    ids: list[list[str]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        for i in range(2_000):
            if (i + k) % 3:
                ids[k].append(gt.issue_one(k, i % 5, 0.5))
            else:
                ids[k].extend(gt.issue(3, k, i % 5, 0.5))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [pid for part in ids for pid in part]
    assert len(set(every)) == len(every) == gt.ring.issued
    assert sorted(gt.issuer.verify(pid) for pid in every) == list(range(len(every)))
    # the ring held 1,000 of them: the rest left it unlabeled, each counted once
    assert gt.ring.counters["evicted_capacity"] == len(every) - 1_000


def test_the_recorder_appends_until_its_cap_then_drops() -> None:
    buf = SingleBuffer()
    dropped: list[tuple[str, int]] = []
    rec = Recorder(buf, 2, lambda: 12.5, lambda w, n: dropped.append((w, n)), print)
    rec.record("a", "ham", 0.9, 0.001)
    rec.record("b", "spam", 0.6, 0.002, input="hi", tokens=1, known=1)
    rec.record("c", "ham", 0.7, 0.003)
    assert list(buf) == [
        ("a", "ham", 0.9, 0.001, None, 12.5, -1, 0),
        ("b", "spam", 0.6, 0.002, "hi", 12.5, 1, 1),
    ]
    assert dropped == [("record_buffer", 1)]
    rec.cap = 3
    rec.record("c", "ham", 0.7, 0.003)
    assert len(buf) == 3 and dropped == [("record_buffer", 1)]


def test_the_recorder_wakes_the_flusher_once_when_half_full() -> None:
    buf = SingleBuffer()
    woken: list[int] = []
    rec = Recorder(buf, 8, lambda: 1.0, lambda w, n: None, print, lambda: woken.append(len(buf)))
    for i in range(10):  # 8 kept, 2 dropped
        rec.record(str(i), "ham", 0.9, 0.001)
    assert woken == [4] and len(buf) == 8
    Recorder(SingleBuffer(), 2, lambda: 1.0, lambda w, n: None, print).record("a", "b", 0.5, 0.1)


def test_the_first_record_at_its_due_time_runs_on_due_once_it_is_buffered() -> None:
    buf = SingleBuffer()
    now = [1.0]
    ran: list[int] = []
    rec = Recorder(
        buf, 8, lambda: now[0], lambda w, n: None, print, None, lambda: ran.append(len(buf))
    )
    rec.record("a", "ham", 0.9, 0.001)  # due is +inf until the owner sets it
    rec.due = 2.0
    rec.record("b", "ham", 0.9, 0.001)
    now[0] = 2.0
    rec.record("c", "ham", 0.9, 0.001)
    assert ran == [3]  # after "c" was put in the buffer
    assert rec.due == math.inf  # until on_due sets the next
    rec.record("d", "ham", 0.9, 0.001)
    assert ran == [3]
    rec.due = 0.0
    rec.cap = 4
    rec.record("e", "ham", 0.9, 0.001)  # dropped: the buffer is full, nothing is due for it
    assert ran == [3] and len(buf) == 4


def test_the_recorder_reads_time_time_in_c() -> None:
    """With ``time.time`` as its clock the recorder reads the same clock without calling it."""
    buf = SingleBuffer()
    rec = Recorder(buf, 10, time.time, lambda w, n: None, print)
    before = time.time()
    rec.record("a", "ham", 0.9, 0.001)
    after = time.time()
    assert before - 1e-6 <= buf[0][5] <= after + 1e-6


class _Calls:
    """What a OneCall hands back: fallback calls, errors, noted costs."""

    def __init__(self) -> None:
        self.fallback: list[object] = []
        self.errors: list[int] = []
        self.noted: list[int] = []

    def one_call(self, kind: int, model, every: int = 64, inputs: bool = True):
        gt = GroundTruth()
        buf = SingleBuffer()
        rec = Recorder(buf, 100, lambda: 7.0, lambda which, n: None, print)
        last = LastIds()
        one = OneCall(
            kind,
            model,
            np.array(["ham", "spam", "eggs"]),
            gt,
            rec,
            inputs,
            last,
            self.noted.append,
            self.errors.append,
            every,
            lambda X: self.fallback.append(X) or "fallback",
            lambda X: (self.fallback.append(X) or "fallback", []),
        )
        return one, gt, buf, last


def test_one_call_answers_and_records_the_top_probability() -> None:
    calls = _Calls()
    one, gt, buf, last = calls.one_call(PROBA, lambda X: np.array([[0.2, 0.5, 0.3]]))
    labels = one.predict(["hello"])
    assert labels.tolist() == ["spam"]
    pid, label, conf, latency, text, ts, tokens, known = buf[0]
    assert (label, conf, text, ts, tokens, known) == ("spam", 0.5, "hello", 7.0, -1, 0)
    assert latency >= 0 and last.get() == [pid] and gt.issuer.verify(pid) == 0
    assert gt.ring.take(0)[1:3] == (1, 0.5)  # the ring holds the class index and confidence
    # equal maxima: the first, as numpy's argmax; a float32 answer is read as float64
    one, _, buf, _ = calls.one_call(PROBA, lambda X: np.array([[0.4, 0.4, 0.2]], np.float32))
    labels, ids = one.predict_with_ids([[1.0, 2.0]])  # not a text: no input recorded
    assert labels.tolist() == ["ham"] and len(ids) == 1
    assert buf[0][1:3] == ("ham", pytest.approx(0.4)) and buf[0][4] is None
    assert calls.fallback == [] and calls.errors == []


def test_one_call_runs_a_due_step_after_the_timed_record() -> None:
    """The step the record makes due runs once the call's own cost is noted: a caller's
    timed share never holds it."""
    order: list[str] = []
    rec = Recorder(
        SingleBuffer(),
        100,
        lambda: 7.0,
        lambda w, n: None,
        print,
        None,
        lambda: order.append("step"),
    )
    one = OneCall(
        PROBA,
        lambda X: np.array([[0.2, 0.5, 0.3]]),
        np.array(["ham", "spam", "eggs"]),
        GroundTruth(),
        rec,
        True,
        LastIds(),
        lambda ns: order.append("note"),
        print,
        1,  # every call timed
        print,
        print,
    )
    one.predict(["a"])
    rec.due = 7.0
    assert one.predict(["b"]).tolist() == ["spam"]
    assert order == ["note", "note", "step"]


@pytest.mark.parametrize(
    ("scores", "want"),
    [
        (np.array([[1.0, 3.0, 2.0]]), 1),  # softmax over the scores
        (np.array([0.7]), 1),  # one binary margin: sigmoid, positive class
        (np.array([-0.7]), 0),
    ],
)
def test_one_call_turns_decision_scores_into_the_confidence_of_scores_to_proba(
    scores: np.ndarray, want: int
) -> None:
    calls = _Calls()
    one, _, buf, _ = calls.one_call(DECISION, lambda X: scores)
    assert one.predict(["x"]).tolist() == [["ham", "spam", "eggs"][want]]
    proba = scores_to_proba(scores.reshape(1, -1) if scores.ndim == 2 else scores)[0]
    assert buf[0][2] == pytest.approx(proba.max(), rel=1e-12)
    assert int(proba.argmax()) == want


def test_one_call_hands_other_inputs_and_answers_to_the_fallback() -> None:
    calls = _Calls()
    one, gt, buf, _ = calls.one_call(PROBA, lambda X: [[0.1, 0.9, 0.0]])  # not an ndarray
    assert one.predict(["a"]) == "fallback"
    assert one.predict(["a", "b"]) == "fallback"  # two inputs
    assert one.predict(("a",)) == "fallback"  # not a list
    fused, *_ = calls.one_call(FUSED, lambda text: (0, 0.9, 1, 1))
    assert fused.predict([b"bytes"]) == "fallback"  # the fused path takes one str only
    assert len(calls.fallback) == 4 and not buf and gt.ring.issued == 0  # nothing issued

    def refuses(X):
        raise AttributeError("predict_proba is not available")

    one, *_ = calls.one_call(PROBA, refuses)  # the name exists but the model refuses
    assert one.predict(["a"]) == "fallback" and calls.errors == []
    one, *_ = calls.one_call(FUSED, lambda text: (3, 0.9, 1, 1))  # not one of the 3 classes
    assert one.predict(["a"]) == "fallback"
    one, *_ = calls.one_call(PROBA, lambda X: np.array([[0.1, 0.1, 0.1, 0.7]]))  # 4 columns
    assert one.predict(["a"]) == "fallback"


def test_one_call_counts_a_failing_model_and_times_one_call_in_sample_every() -> None:
    calls = _Calls()

    def broken(text):
        raise RuntimeError("boom")

    one, *_ = calls.one_call(FUSED, broken)
    with pytest.raises(RuntimeError, match="boom"):
        one.predict(["a"])
    assert calls.errors == [1]
    one, _, buf, _ = calls.one_call(FUSED, lambda text: (2, 0.8, 5, 3), every=4)
    for _ in range(10):
        one.predict(["some text"])
    assert len(buf) == 10 and buf[0][1:] == ("eggs", 0.8, buf[0][3], "some text", 7.0, 5, 3)
    assert len(calls.noted) == 2 and all(ns > 0 for ns in calls.noted)


def _texts(seed: int, n: int) -> list[str]:
    """Random texts over marks, digits, separators and whitespace, in 1-, 2- and 4-byte
    kinds (Latin-1 'é' and NBSP, Arabic-Indic digits, an emoji)."""
    import random

    rng = random.Random(seed)
    alpha = ["a", "w", "ww", "www.", "@", ":", "://", "/", "1", "12345", "6789012", " ",
             "\t", "\n", "\x0b", "\x1c", "(", ")", ".", "+", "-", "é", "\u00a0", "٣٤٥",
             "\U0001f600"]  # fmt: skip
    return ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def test_mark_spans_are_the_stretches_between_whitespace_that_hold_a_mark() -> None:
    import re

    for text in _texts(5, 5000):
        for urls, marks in ((False, ("@",)), (True, ("://", "www."))):
            want = [
                m.span()
                for m in re.finditer(r"[^ \t\n\r\f\v]+", text)
                if any(mark in m.group() for mark in marks)
            ]
            assert mark_spans(text, urls) == want, (text, urls)


def test_mask_digits_masks_what_the_phone_then_digit_patterns_match() -> None:
    from leanml.monitor._redact import _DIGITS, _PHONE

    texts = _texts(6, 20000) + [
        "+1 (555) 010-9999",
        "1234567a",
        "a1234567",
        "12 34 5 6789",
        "(12) 345-67 x",
        "+44 20 7946 0958\u00a0ok",
        "٣٤٥٦٧٨٩ and 12345",
    ]
    for text in texts:
        assert mask_digits(text) == _DIGITS.sub("<number>", _PHONE.sub("<phone>", text)), text
    assert sum("<phone>" in mask_digits(t) for t in texts) > 1000


def test_redact_gives_the_patterns_text_on_every_spamassassin_e_mail(data_dir) -> None:
    import gzip
    import json

    from leanml.monitor._redact import _DIGITS, _EMAIL, _PHONE, _URL, redact

    with gzip.open(data_dir / "spamassassin" / "emails.jsonl.gz", "rt", encoding="utf-8") as f:
        texts = [f"{r['subject']}\n{r['body']}" for r in map(json.loads, f)]
    assert len(texts) > 5000
    for text in texts:
        want = _URL.sub("<url>", _EMAIL.sub("<email>", text))
        assert redact(text) == _DIGITS.sub("<number>", _PHONE.sub("<phone>", want))


def test_sub_marks_masks_what_the_e_mail_and_url_patterns_match() -> None:
    """The C matchers against the patterns themselves, on texts dense in what decides a match:
    word characters of several scripts, scheme characters, quotes and angle brackets, the
    characters a URL may not end with, Unicode spaces inside a stretch."""
    import random

    from leanml.monitor._redact import _EMAIL, _URL

    rng = random.Random(7)
    alpha = ["a", "Z", "é", "ß", "日", "_", "1", "٣", "w", "ww", "www.", "W", "http", "h2", "+",
             ".", "-", "@", "@@", ":", "/", "://", "<", ">", "'", '"', ",", ";", "!", "?", ")",
             "(", "\u00a0", "\u2003", " ", "\t", "\n", "x.y", "co", "\U0001f600",
             "s3+x"]  # fmt: skip
    texts = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 25))) for _ in range(20000)]
    for text in texts:
        assert sub_marks(text, False) == _EMAIL.sub("<email>", text), text
        assert sub_marks(text, True) == _URL.sub("<url>", text), text
    assert sum(sub_marks(t, True) != t for t in texts) > 1000  # URLs were there to mask


def _random_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Texts of every length class (0 to 3 SHA-256 blocks and a long one), in several
    scripts: ASCII, Latin-1, CJK and astral characters."""
    alphabet = "ab c.-9é€你😀\n"
    lengths = [*range(0, 130), 1000, 5000, *rng.integers(0, 300, n).tolist()]
    return ["".join(rng.choice(list(alphabet), size=k)) for k in lengths]


def _every(texts: list, mode: int) -> tuple[list, list]:
    """detail_fields' stored texts and hashes of every text."""
    return detail_fields(list(range(len(texts))), texts, list(range(len(texts))), mode)[1:]


def test_the_input_hashes_are_sha256_of_utf8() -> None:
    rng = np.random.default_rng(5)
    texts: list = _random_texts(rng, 300)
    texts += [None, "lone \udc80 surrogate"]
    got = _every(texts, STORE_HASH)[1]
    assert got == [None if t is None else input_hash(t) for t in texts]
    assert got[3] == hashlib.sha256(texts[3].encode()).hexdigest()


@pytest.mark.parametrize(
    "ni",
    [
        False,
        pytest.param(True, marks=pytest.mark.skipif(not SHA_NI, reason="no SHA instructions")),
    ],
)
def test_sha256_in_c_is_hashlibs_at_every_padding_length(ni: bool) -> None:
    """Every tail length around the 55/56 and 64-byte padding edges, and multi-block inputs,
    with the SHA instructions and in plain C."""
    rng = np.random.default_rng(11)
    for n in [*range(0, 200), 1000, 1479, 4096, 65_537]:
        data = rng.bytes(n)
        assert sha256_hex(data, ni) == hashlib.sha256(data).hexdigest(), n


def test_sample_hashes_of_str_are_zlib_crc32_then_fmix32() -> None:
    rng = np.random.default_rng(6)
    ids = _random_texts(rng, 300) + GroundTruth().issue(500)
    got = sample_hashes_of_str(ids)
    assert got is not None and got.dtype == np.uint64
    assert got.tolist() == [sample_hash(i) for i in ids]  # the per-id Python reference
    assert [sample_hash(i) for i in ids[:3]] == [int(x) for x in sample_hashes(list(ids[:3]))]
    assert sample_hashes_of_str(["a", 3]) is None  # not every id a str: the Python path
    assert sample_hashes(["a", 3]).tolist() == [sample_hash("a"), sample_hash(3)]


def test_the_redaction_in_c_is_redact_of_each_text() -> None:
    from leanml.monitor._redact import redact

    rng = np.random.default_rng(7)
    texts: list = _random_texts(rng, 200)
    texts += [
        None,
        12345678,
        "mail bob@example.com or see https://x.org/a?b=1, call +1 (555) 123-4567, id 998877",
        "www.example.org and 4111 1111 1111 1111",
    ]
    # the one-pass check that a text holds nothing to redact, at its edges: marks at the very
    # start or end, cut short, and digits of other scripts (Arabic-Indic, fullwidth)
    edges = ["@", "a@b.co", "x://", "://y", "see s://z.org", "ww.a", "www", "wwww.x.org"]
    edges += ["٣٤٥٦٧", "０１２３４５", "tel ١٢٣٤٥٦٧٨", "no marks at all", "ha:/ w.w 9"]
    texts += edges + [e + " 😀" for e in edges] + ["é " + e for e in edges]
    got = _every(texts, STORE_REDACTED)[0]
    assert got == [None if t is None else redact(str(t)) for t in texts]
    plain = _every(["no marks at all"], STORE_REDACTED)[0][0]
    assert plain == "no marks at all" and redact("tel ١٢٣٤٥٦٧٨") == "tel <phone>"
    assert _every([12345678], STORE_HASH)[1] == [input_hash("12345678")]  # as its str, too
    at = next(i for i, t in enumerate(texts) if str(t).startswith("mail bob"))
    assert got[at] == "mail <email> or see <url>, call <phone>, id <number>"


def test_the_redaction_steps_chained_in_c_are_the_patterns_subs_in_turn() -> None:
    """detail_fields runs the three steps over C buffers (no str between them): the same as
    the patterns' ``sub`` one after the other, on texts of every kind; and a result is a
    canonical ``str`` (of the narrowest kind) when the masks took every wide character."""
    from leanml.monitor._redact import _DIGITS, _EMAIL, _PHONE, _URL

    texts = _texts(8, 6000) + ["жук@почта.рф", "😀 ж@b.co", "é@b.co 12345", "see 你@x.cn"]
    want = [
        _DIGITS.sub("<number>", _PHONE.sub("<phone>", _URL.sub("<url>", _EMAIL.sub("<email>", t))))
        for t in texts
    ]
    got = _every(texts, STORE_REDACTED)[0]
    assert got == want
    narrowed = _every(["ж@b.co", "é@b.co 12345"], STORE_REDACTED)[0]
    assert narrowed == ["<email>", "<email> <number>"]
    assert all(
        t.isascii() and sys.getsizeof(t) == sys.getsizeof(t.encode().decode()) for t in narrowed
    )


def _kept_by_hand(ids: list, conf: list, rate: float, below: float | None) -> list[int]:
    """The positions a Sampler keeps, computed plainly: the id's sampling hash below
    ``rate * 2**32``, or a confidence below ``below``."""
    return [
        i
        for i, (pid, c) in enumerate(zip(ids, conf, strict=True))
        if sample_hash(pid) < rate * 2**32 or (below is not None and c < below)
    ]


def _check_kept(cols: tuple, ids: list, conf: list, inputs: list, rate: float, below: Any) -> None:
    kept, low_only, kept_ids, kept_inputs = cols[11:]
    want = _kept_by_hand(ids, conf, rate, below)
    assert kept.dtype == np.int64 and kept.tolist() == want
    assert kept_ids == [ids[i] for i in want]
    if any(x is not None for x in inputs):
        assert kept_inputs == [inputs[i] for i in want]
    else:
        assert kept_inputs is None
    if below is None:
        assert low_only is None
    else:
        by_rate = [sample_hash(ids[i]) < rate * 2**32 for i in want]
        assert low_only.tolist() == [not r for r in by_rate]


def test_the_single_buffer_takes_what_was_recorded_as_columns() -> None:
    rng = np.random.default_rng(8)
    index = {"ham": 0, "spam": 1}
    buf = SingleBuffer()
    invalid: list[str] = []
    rec = Recorder(buf, 1_000, lambda: 0.0, lambda which, n: None, invalid.append)
    want = []
    for i in range(300):
        lat = float("nan") if i % 17 == 0 else float(rng.uniform(1e-4, 1e-2))
        row = (
            [f"id-{i}", i][i % 29 == 0],  # an int id now and then: hashed in Python
            ["ham", "spam", "new", np.str_("ham"), "new" + str(i % 2)][i % 5],
            np.float64(rng.uniform()) if i % 2 else float(rng.uniform()),
            lat,
            None if i % 3 else f"text {i}",
            -1 if i % 5 else i % 7,
            0 if i % 5 else i % 3,
        )
        rec.record(*row)
        want.append(row)
    assert invalid == [] and len(buf) == 300
    sampler = Sampler(0.3, 0.2, sample_hash)
    cols = buf.take(250, index, sampler)
    codes, conf, lat, ts, lengths, tok, known, model_s, counted, unknown_at, unknown = cols[:11]
    assert len(buf) == 50 and buf[0][0] == "id-250"  # the oldest taken, the rest kept in order
    got = want[:250]
    assert codes.dtype == np.int32
    assert codes.tolist() == [index.get(r[1], -1) for r in got]
    assert unknown_at == [i for i, r in enumerate(got) if r[1] not in index]
    assert unknown == [got[i][1] for i in unknown_at]
    for col, k in ((conf, 2), (tok, 5), (known, 6)):
        assert col.tolist() == [float(r[k]) for r in got]
    np.testing.assert_array_equal(lat, [r[3] for r in got])
    assert ts.tolist() == [0.0] * 250
    np.testing.assert_array_equal(lengths, [np.nan if r[4] is None else len(r[4]) for r in got])
    assert model_s == pytest.approx(sum(r[3] for r in got if r[3] == r[3]), rel=1e-12)
    assert counted
    ids, confs, inputs = [r[0] for r in got], [float(r[2]) for r in got], [r[4] for r in got]
    _check_kept(cols, ids, confs, inputs, 0.3, 0.2)
    assert 0 < len(cols[11]) < 250
    rest = buf.take(100, index, Sampler(1.0, None, sample_hash))  # every one kept
    assert rest[13] == [r[0] for r in want[250:]] and len(buf) == 0
    assert rest[1].tolist() == [float(r[2]) for r in want[250:]]
    rec.record(*want[1])
    alone = buf.take(10, index, Sampler(0.0, None, sample_hash))  # none kept
    assert alone[4] is None and alone[14] is None  # no input at all: no lengths, no inputs
    assert not alone[8] and alone[11].size == 0 and alone[13] == []  # no count; none kept
    assert buf.take(10, index, sampler)[0].size == 0  # empty
    rec.record(*want[1][:2], None, *want[1][3:])  # a confidence that is not a number
    rec.record(*want[1][:3], "slow", *want[1][4:])
    assert len(buf) == 0 and len(invalid) == 2 and "id-1" in invalid[0]


def _batches_by_hand(batches: list[tuple]) -> dict[str, list]:
    """take_batches' columns, computed plainly from the batch tuples."""
    out: dict[str, list] = {k: [] for k in ("ids", "labels", "conf", "lat", "inp", "ts", "tok")}
    out["known"], out["model_s"] = [], 0.0
    for ids, labels, conf, lat, inputs, ts, counts, seconds in batches:
        n = len(ids)
        lats = [float(lat)] * n if np.ndim(lat) == 0 else [float(x) for x in lat]
        out["ids"] += list(ids)
        out["labels"] += list(np.asarray(labels).tolist())
        out["conf"] += [float(x) for x in conf]
        out["lat"] += lats
        out["inp"] += [None] * n if inputs is None else list(inputs)
        out["ts"] += [ts] * n
        out["tok"] += [-1.0] * n if counts is None else [float(x) for x in counts[0]]
        out["known"] += [0.0] * n if counts is None else [float(x) for x in counts[1]]
        finite = [x for x in lats if x == x]
        out["model_s"] += seconds if seconds is not None else max(finite, default=0.0)
    return out


def test_take_batches_transposes_the_batches_it_pops() -> None:
    rng = np.random.default_rng(9)
    index = {"ham": 0, "spam": 1}
    queue = collections.deque()
    for b in range(40):
        n = int(rng.integers(1, 30))
        conf = rng.uniform(size=2 * n)
        labels = [["ham", "spam", "new", f"new{b % 2}"][i % 4] for i in range(n)]
        lat = rng.uniform(1e-4, 1e-2, n)
        lat[::7] = np.nan
        queue.append(
            (
                [[f"b{b}-{i}" for i in range(n)], np.arange(n) + 1000 * b][int(b % 9 == 0)],
                [np.asarray(labels), labels, tuple(labels)][b % 3],
                [conf[:n], conf[::2].astype(np.float32), conf[:n].tolist(), conf[n:]][b % 4],
                [float(lat[0]), np.float32(0.002), np.asarray(0.003), lat, lat.tolist()][b % 5],
                None if b % 4 == 1 else [None if i % 5 == 0 else "x" * i for i in range(n)],
                1_700_000_000.0 + b,
                None if b % 3 else (np.arange(n), np.arange(n, dtype=np.int32) // 2),
                0.01 * b if b % 2 else None,
            )
        )
    want = list(queue)
    total = sum(len(b[0]) for b in want[:25])
    cols = take_batches(queue, total - 3, index, Sampler(0.25, 0.3, sample_hash))
    codes, conf, lat, ts, lengths, tok, known, model_s, counted, unknown_at, unknown = cols[:11]
    assert list(queue) == want[25:]  # stops at the batch that reaches the limit
    ref = _batches_by_hand(want[:25])
    labels = ref["labels"]
    assert codes.dtype == np.int32 and codes.tolist() == [index.get(x, -1) for x in labels]
    assert unknown_at == [i for i, x in enumerate(labels) if x not in index]
    assert unknown == [labels[i] for i in unknown_at]
    np.testing.assert_array_equal(conf, np.asarray(ref["conf"]))
    np.testing.assert_array_equal(lat, np.asarray(ref["lat"]))
    assert ts.tolist() == ref["ts"] and tok.tolist() == ref["tok"]
    assert known.tolist() == ref["known"] and counted
    np.testing.assert_array_equal(lengths, [np.nan if x is None else len(x) for x in ref["inp"]])
    assert model_s == pytest.approx(ref["model_s"], rel=1e-12)
    _check_kept(cols, ref["ids"], ref["conf"], ref["inp"], 0.25, 0.3)
    # without inputs or counts: None for lengths and inputs, not counted
    plain = (["a"], ["ham"], [0.5], 0.1, None, 1.0, None, None)
    one = take_batches(collections.deque([plain]), 1, index, Sampler(1.0, None, sample_hash))
    assert one[4] is None and one[14] is None and not one[8] and one[7] == 0.1
    assert one[13] == ["a"] and one[12] is None


@pytest.mark.parametrize(
    "batch",
    [
        (["a", "b"], ["x", "y"], [0.5, "high"], 0.1, None, 1.0, None, None),  # not a number
        (["a", "b"], ["x", "y"], [0.5, 0.6], [0.1], None, 1.0, None, None),  # 1 latency of 2
        (["a", "b"], ["x", "y"], np.ones(3), 0.1, None, 1.0, None, None),  # 3 confidences
        (["a", "b"], ["x", "y"], [0.5, 0.6], 0.1, None, 1.0, ([3], [1]), None),  # 1 count of 2
        (["a", "b"], ["x", "y"], [0.5, 0.6], 0.1, ["t"], 1.0, None, None),  # 1 input of 2
        (["a", "b"], ["x", "y"], [0.5, 0.6], 0.1, [7, "t"], 1.0, None, None),  # no len()
    ],
)
def test_take_batches_refuses_a_malformed_batch(batch: tuple) -> None:
    good = (["c"], ["x"], [0.5], 0.1, None, 1.0, None, None)
    queue = collections.deque([good, batch, good])
    with pytest.raises((TypeError, ValueError)):
        take_batches(queue, 100, {}, Sampler(1.0, None, sample_hash))
    assert list(queue) == []  # the whole chunk was taken (and is dropped by the caller)


def test_detail_fields_are_ids_stored_texts_and_hashes_in_one_pass() -> None:
    from leanml.monitor._redact import redact

    rng = np.random.default_rng(12)
    texts: list = _random_texts(rng, 50)
    texts[3] = None
    texts[4] = "mail me: jo@example.com or +1 (555) 010-9999"
    ids: list = [f"p-{i}" for i in range(len(texts))]
    ids[5] = 12345  # an id that is not a str is stored as its str
    at = sorted(rng.choice(len(texts), 60, replace=False).tolist()) + [3, 4, 5]
    want_ids = [str(ids[i]) for i in at]
    want_hash = [None if texts[i] is None else input_hash(texts[i]) for i in at]
    for mode, stored in (
        (STORE_TEXT, [texts[i] for i in at]),
        (STORE_REDACTED, [None if texts[i] is None else redact(texts[i]) for i in at]),
        (STORE_HASH, [None] * len(at)),
    ):
        assert detail_fields(ids, texts, at, mode) == (want_ids, stored, want_hash)
    assert detail_fields(ids, texts, at, STORE_NONE) == (want_ids, [None] * 63, [None] * 63)
    assert detail_fields(ids, None, at, STORE_TEXT) == (want_ids, [None] * 63, [None] * 63)
    for bad in ([len(texts)], [-1]):  # a position outside the ids or inputs
        with pytest.raises(IndexError):
            detail_fields(ids, texts, bad, STORE_TEXT)
    with pytest.raises(IndexError):
        detail_fields(ids, texts[:10], [10], STORE_HASH)


def test_take_at_picks_the_labels_of_class_indices() -> None:
    classes = ["ham", "spam", 7]
    at = np.array([2, 0, 0, 1], dtype=np.int64)
    got = take_at(classes, at)
    assert got == [7, "ham", "ham", "spam"] and got[1] is classes[0]  # the same objects
    assert take_at(classes, np.array([], dtype=np.int64)) == []
    for bad in (3, -1):
        with pytest.raises(IndexError):
            take_at(classes, np.array([0, bad], dtype=np.int64))


def test_records_and_takes_from_many_threads_stay_aligned() -> None:
    """Four threads record while the main thread takes: every record is taken once, and each
    id comes with its own numbers and input (the columns never shift against each other)."""
    buf = SingleBuffer()
    rec = Recorder(buf, 10**9, time.time, lambda w, n: None, print)
    per_thread = 20_000

    def work(t: int) -> None:
        for i in range(per_thread):
            rec.record(f"{t}-{i}", "ham", t + i / per_thread, float(i), f"text {t}-{i}", i, t)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    taken: list[tuple] = []
    while any(th.is_alive() for th in threads) or len(buf):
        cols = buf.take(997, {}, Sampler(1.0, None, sample_hash))  # every one kept
        conf, lat, tok, known, ids, inputs = cols[1], cols[2], cols[5], cols[6], *cols[13:]
        numbers = (conf.tolist(), lat.tolist(), inputs or [], tok.tolist(), known.tolist())
        taken.extend(zip(ids, *numbers, strict=True))
    assert len(taken) == 4 * per_thread
    assert len({pid for pid, *_ in taken}) == 4 * per_thread
    for pid, conf, lat, text, tok, known in taken:
        t, i = map(int, pid.split("-"))
        assert (conf, lat, text, tok, known) == (t + i / per_thread, i, f"text {pid}", i, t)
