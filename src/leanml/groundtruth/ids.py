"""Prediction ids that cannot be guessed: ``<prefix>-<counter>-<tag>``.

* ``prefix``: 8 random hex digits per :class:`IdIssuer` (per served model per process); it names
  the issuer in the shared store so that feedback reaching another worker finds the owner.
* ``counter``: the issuer's prediction counter in hex; it indexes the pending-join ring
  (:class:`~leanml.groundtruth.ring.PendingRing`), so a join costs no dict and no id string
  lives on after the answer.
* ``tag``: 16 hex digits. Counters come in blocks of 8 (``counter >> 3``); one keyed BLAKE2b
  (its MAC mode, 64-byte digest) of ``prefix-block`` under a 32-byte secret drawn per issuer
  from :mod:`secrets` gives the 8 tags of a block: the id of counter ``c`` takes the 64 bits
  at slot ``c & 7`` of its block's digest.

Knowing every id a client was ever given does not help guess another: the tag of a counter
you have not seen is 64 bits of a PRF output whose other bits say nothing about them (2**-64
per guess), whether or not you hold ids of the same block. An altered or forged id fails
:meth:`IdIssuer.verify` (a constant-time compare) and is answered ``unknown`` before the ring
is read or written. The secret never leaves the process (not in the store, not in ``/health``):
feedback for another worker's id is forwarded to that worker through the durable log, and only
the owner checks the tag (:mod:`leanml.groundtruth.log`).

Cost: one keyed hash per 8 ids. :meth:`IdIssuer.take` hashes each block of a batch once and
slices the tags; consecutive single ids (:meth:`IdIssuer.make`) share the issuer's last block
(``benchmarks/id_cost.py``; figures in the CHANGELOG).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TAG_HEX", "IdIssuer", "parse_id"]

#: hex digits of the tag (64 bits)
TAG_HEX = 16
#: ids per keyed hash (a 64-byte digest holds 8 tags of 64 bits)
_BLOCK = 8
_SHIFT, _MASK = 3, 7
_SLOTS = range(0, _BLOCK * TAG_HEX, TAG_HEX)
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


class IdIssuer:
    """Mints and verifies the ids of one prefix (see the module docstring).

    Not thread-safe by itself: :class:`~leanml.groundtruth.path.GroundTruth` reserves counters
    under its lock.
    """

    def __init__(self, prefix: str | None = None, secret: bytes | None = None) -> None:
        self.prefix = prefix if prefix is not None else secrets.token_hex(4)
        if "-" in self.prefix or not self.prefix or len(self.prefix) > 32:
            raise ValueError(
                f"The 'prefix' parameter of IdIssuer must be 1-32 characters without '-', "
                f"got {self.prefix!r} instead."
            )
        key = secret if secret is not None else secrets.token_bytes(32)
        self._mac = hashlib.blake2b(key=key, digest_size=_BLOCK * TAG_HEX // 2)
        self._mac.update(self.prefix.encode() + b"-")
        self._fmt = (self.prefix + "-%x-%s").__mod__
        #: (block, its 128 hex digits) last hashed by make/take: one tuple, swapped atomically
        self._last: tuple[int, str] = (-1, "")

    def _digest(self, block: int) -> str:
        """The 128 hex digits holding the tags of counters ``8 * block .. 8 * block + 7``."""
        h = self._mac.copy()
        h.update(b"%x" % block)
        return h.hexdigest()

    def _block(self, block: int) -> str:
        last = self._last
        if last[0] == block:
            return last[1]
        digest = self._digest(block)
        self._last = (block, digest)
        return digest

    def tag(self, counter: int) -> str:
        """The 16-hex-digit tag of ``counter``."""
        j = (counter & _MASK) * TAG_HEX
        return self._block(counter >> _SHIFT)[j : j + TAG_HEX]

    def make(self, counter: int) -> str:
        """The id of ``counter``."""
        j = (counter & _MASK) * TAG_HEX
        return self._fmt((counter, self._block(counter >> _SHIFT)[j : j + TAG_HEX]))

    def take(self, start: int, n: int) -> list[str]:
        """The ids of counters ``start .. start + n - 1`` (one hash per block they touch)."""
        if n <= 0:
            return []
        first, last = start >> _SHIFT, (start + n - 1) >> _SHIFT
        digests = [self._block(first)] + [self._digest(b) for b in range(first + 1, last + 1)]
        if last > first:
            self._last = (last, digests[-1])
        tags = [d[j : j + TAG_HEX] for d in digests for j in _SLOTS]
        lo = start & _MASK
        return list(map(self._fmt, zip(range(start, start + n), tags[lo : lo + n], strict=True)))

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
        if counter < 0:
            return -1
        j = (counter & _MASK) * TAG_HEX  # not through the issuing cache: joins hit old blocks
        expected = self._fmt((counter, self._digest(counter >> _SHIFT)[j : j + TAG_HEX]))
        if not hmac.compare_digest(prediction_id, expected):
            return -1
        return counter
