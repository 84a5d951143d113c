"""Prediction ids that cannot be guessed: ``<prefix>-<counter>-<tag>``.

* ``prefix``: 8 random hex digits per :class:`IdIssuer` (per served model per process); it names
  the issuer in the shared store so that feedback reaching another worker finds the owner.
* ``counter``: the issuer's prediction counter in hex; it indexes the pending-join ring
  (:class:`~leanml.groundtruth.ring.PendingRing`), so a join costs no dict and no id string
  lives on after the answer.
* ``tag``: 16 hex digits. Counters come in blocks of 8 (``counter >> 3``); a pseudo-random
  function of the block under a 32-byte secret drawn per issuer from :mod:`secrets` gives 64
  bytes, the 8 tags of the block: the id of counter ``c`` takes the 64 bits at slot ``c & 7``.
  With the x86 AES instructions the function is AES-128 of ``(block, 0..3)`` under a key
  derived from the secret and the prefix (keyed BLAKE2b); elsewhere the keyed BLAKE2b (its MAC
  mode, 64-byte digest) of ``prefix-block`` (:class:`leanml._native.IssuerCore`).

Knowing every id a client was ever given does not help guess another: the tag of a counter
you have not seen is 64 bits of a PRF output whose other bits say nothing about them (2**-64
per guess), whether or not you hold ids of the same block. An altered or forged id fails
:meth:`IdIssuer.verify` (a constant-time compare) and is answered ``unknown`` before the ring
is read or written. The secret never leaves the process (not in the store, not in ``/health``):
feedback for another worker's id is forwarded to that worker through the durable log, and only
the owner checks the tag (:mod:`leanml.groundtruth.log`).

Cost: one call of that function per 8 ids (AES: ~20 ns; BLAKE2b: ~300 ns). Minting is C
(:class:`leanml._native.IssuerCore`, AES and BLAKE2b included, checked against
``cryptography``'s AES and ``hashlib.blake2b`` in the tests): the last block's tags are cached,
so consecutive ids (:meth:`~leanml._native.IssuerCore.make`, and
:meth:`~leanml._native.IssuerCore.take` for a batch) share them (``benchmarks/id_cost.py``;
figures in the CHANGELOG).
"""

from __future__ import annotations

import hmac
import secrets

from leanml._native import IssuerCore

__all__ = ["TAG_HEX", "IdIssuer", "parse_id"]

#: hex digits of the tag (64 bits)
TAG_HEX = 16
#: counters are C ``long long``: 0 .. 2**63 - 1
_COUNTERS = 1 << 63
#: longest id the parser looks at (prefix <= 32, counter <= 16, tag 16, two dashes)
_MAX_LEN = 66


def parse_id(prediction_id: object) -> tuple[str, int, str] | None:
    """``"<prefix>-<hex counter>-<tag>"`` -> (prefix, counter, tag), or None when malformed.

    Only the shape is checked here; :meth:`IdIssuer.verify` checks the tag.
    """
    if type(prediction_id) is not str or len(prediction_id) > _MAX_LEN:
        return None
    parts = prediction_id.split("-")
    if len(parts) != 3:
        return None
    prefix, count, tag = parts
    if not prefix or not count or len(tag) != TAG_HEX or len(count) > 16:
        return None
    try:
        counter = int(count, 16)
        int(tag, 16)
    except ValueError:
        return None
    if count != f"{counter:x}":  # one spelling per counter: no "0x", "+", "_" or zero padding
        return None
    return prefix, counter, tag


class IdIssuer(IssuerCore):
    """Mints and verifies the ids of one prefix (see the module docstring).

    Not thread-safe by itself: :class:`~leanml.groundtruth.path.GroundTruth` reserves counters
    under its lock.
    """

    def __init__(self, prefix: str | None = None, secret: bytes | None = None) -> None:
        prefix = prefix if prefix is not None else secrets.token_hex(4)
        if "-" in prefix or not prefix or len(prefix) > 32 or not prefix.isascii():
            raise ValueError(
                f"The 'prefix' parameter of IdIssuer must be 1-32 ASCII characters without "
                f"'-', got {prefix!r} instead."
            )
        self.prefix = prefix
        key = secret if secret is not None else secrets.token_bytes(32)
        self.set_key(key)

    def verify(self, prediction_id: object) -> int:
        """The counter of an id this issuer made, else -1 (malformed, other prefix, bad tag).

        The id is compared whole, in constant time, with the one :meth:`make` gives for its
        counter: any other spelling of the counter, or any other tag, does not verify."""
        if type(prediction_id) is not str or len(prediction_id) > _MAX_LEN:
            return -1
        head, _, count = prediction_id[: -TAG_HEX - 1].partition("-")
        if head != self.prefix:
            return -1
        try:
            counter = int(count, 16)
        except ValueError:
            return -1
        if not 0 <= counter < _COUNTERS:  # the C minting's range (a ring never gets there)
            return -1
        if not hmac.compare_digest(prediction_id, self.expected(counter)):
            return -1
        return counter
