"""Masking of personal data in input texts before they are stored (``store_inputs="redacted"``).

Replaced, in this order, each by a placeholder that keeps the text readable for an audit:

* e-mail addresses -> ``<email>``;
* URLs (``scheme://...`` and ``www....``) -> ``<url>``;
* phone-like numbers (7+ digits, optionally with ``+``, spaces, dots, dashes or parentheses
  between them) -> ``<phone>``;
* any other run of 5 or more digits (ids, account and card numbers, postcodes) -> ``<number>``.

What is stored is therefore the text with those spans masked; the input hash stored beside it
is of the original text, so duplicates still match without keeping the text.

Cost: one pass over the text per kind of mark, in C (:mod:`leanml._native`):
:func:`~leanml._native.sub_marks` matches the e-mail and URL patterns only over the
whitespace-delimited stretches around an ``@`` / ``://`` / ``www.``, and
:func:`~leanml._native.mask_digits` the phone and digit patterns from each digit, ``+`` or
``(``. The patterns below are the definition the C matchers follow: the output is the same as
their ``sub`` over the whole text, in order (tests/monitor and tests/test_native.py compare them
on random texts and every SpamAssassin e-mail).
"""

from __future__ import annotations

import re

from leanml._native import mask_digits, sub_marks

__all__ = ["redact"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?![\w])")
_DIGITS = re.compile(r"\d{5,}")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, URLs, phone-like numbers and long digit runs masked
    (see the module docstring for how little of the text the patterns see). The flusher
    redacts its sampled texts with :func:`leanml._native.detail_fields`, these same steps in
    C, in one call for the list."""
    text = sub_marks(text, False)  # _EMAIL, matched in C (the text itself when it has no "@")
    text = sub_marks(text, True)  # _URL, matched in C
    return mask_digits(text)  # _PHONE, then _DIGITS, matched in C
