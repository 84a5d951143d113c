from __future__ import annotations

import secrets

import pytest

from leanml.groundtruth import IdIssuer, parse_id
from leanml.groundtruth.ids import TAG_HEX


def test_ids_are_unique_parse_and_verify() -> None:
    a, b = IdIssuer(), IdIssuer()
    ids = a.take(0, 1000) + [a.make(1000 + i) for i in range(10)] + b.take(0, 1000)
    assert len(set(ids)) == len(ids)
    for c, pid in enumerate(ids[:1010]):
        prefix, counter, tag = parse_id(pid)  # type: ignore[misc]
        assert (prefix, counter, len(tag)) == (a.prefix, c, TAG_HEX)
        assert a.verify(pid) == c
    assert a.take(5, 3) == [a.make(5), a.make(6), a.make(7)]
    assert all(b.verify(pid) == -1 for pid in ids[:1010])  # another issuer's prefix
    # same prefix, another secret (another process): the tags differ, so ids do not verify
    twin = IdIssuer(a.prefix)
    assert twin.make(3) != a.make(3) and twin.verify(a.make(3)) == -1
    # same prefix and secret: the same ids (what a restarted issuer would need to keep them)
    key = secrets.token_bytes(32)
    assert IdIssuer("k", key).make(9) == IdIssuer("k", key).make(9)


def test_forged_and_altered_ids_do_not_verify() -> None:
    a = IdIssuer("abc")
    pid = a.make(41)
    prefix, counter, tag = pid.split("-")
    flipped = "0" if tag[-1] != "0" else "1"
    forged = [
        f"{prefix}-{counter}-{tag[:-1]}{flipped}",  # one tag digit changed
        f"{prefix}-{int(counter, 16) + 1:x}-{tag}",  # the next counter with this tag
        f"{prefix}-{counter}-{'0' * TAG_HEX}",
        f"{prefix}-0{counter}-{tag}",  # another spelling of the same counter
        f"{prefix}-{counter.upper()}-{tag}" if counter.upper() != counter else f"{prefix}-x-{tag}",
        f"{prefix}-{counter}",  # the 0.1.0 form: no tag
        pid + "0",
        pid.upper(),
    ]
    for bad in forged:
        assert a.verify(bad) == -1, bad
    assert a.verify(pid) == 41


@pytest.mark.parametrize(
    "bad", ["nohyphen", "abc-zz-0000000000000000", "-1-0000000000000000", 5, None, "a" * 80]
)
def test_malformed_ids_do_not_parse(bad) -> None:
    assert parse_id(bad) is None


def test_a_prefix_with_a_dash_is_refused() -> None:
    with pytest.raises(ValueError, match="'prefix' parameter of IdIssuer"):
        IdIssuer("a-b")
