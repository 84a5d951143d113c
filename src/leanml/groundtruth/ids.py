"""Prediction ids that cannot be guessed: ``<prefix>-<counter>-<tag>``.

* ``prefix``: 8 random hex digits per :class:`IdIssuer` (per served model per process); it names
  the issuer in the shared store so that feedback reaching another worker finds the owner.
* ``counter``: the issuer's prediction counter in hex; it indexes the pending-join ring
  (:class:`~leanml.groundtruth.ring.PendingRing`), so a join costs no dict and no id string
  lives on after the answer.
* ``tag``: 16 hex digits, the first 64 bits of keyed BLAKE2b (its MAC mode) of
  ``prefix-counter`` under a 32-byte secret drawn per issuer from :mod:`secrets`.

Knowing every id a client was ever given does not help guess another: the tag of a counter
you have not seen is a 64-bit PRF output (2**-64 per guess). An altered or forged id fails
:meth:`IdIssuer.verify` (a constant-time compare) and is answered ``unknown`` before the ring
is read or written. The secret never leaves the process (not in the store, not in ``/health``):
feedback for another worker's id is forwarded to that worker through the durable log, and only
the owner checks the tag (:mod:`leanml.groundtruth.log`).

Cost (``timeit``, this machine class; figures in the CHANGELOG): a tag is one C call on a copied
keyed BLAKE2b state; :meth:`IdIssuer.take` makes a batch with one list comprehension.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TAG_HEX", "IdIssuer", "parse_id"]

#: hex digits of the tag (64 bits)
TAG_HEX = 16
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
        self._mac = hashlib.blake2b(key=key, digest_size=TAG_HEX // 2)
        self._mac.update(self.prefix.encode() + b"-")
        self._fmt = (self.prefix + "-%x-%s").__mod__

    def tag(self, counter: int) -> str:
        """The 16-hex-digit tag of ``counter``."""
        h = self._mac.copy()
        h.update(b"%x" % counter)
        return h.hexdigest()

    def make(self, counter: int) -> str:
        """The id of ``counter``."""
        return self._fmt((counter, self.tag(counter)))

    def take(self, start: int, n: int) -> list[str]:
        """The ids of counters ``start .. start + n - 1``."""
        mac = self._mac
        fmt = self._fmt
        out = []
        for c in range(start, start + n):
            h = mac.copy()
            h.update(b"%x" % c)
            out.append(fmt((c, h.hexdigest())))
        return out

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
        if counter < 0 or not hmac.compare_digest(prediction_id, self.make(counter)):
            return -1
        return counter
