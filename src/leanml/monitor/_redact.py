"""Masking of personal data in input texts before they are stored (``store_inputs="redacted"``).

Replaced, in this order, each by a placeholder that keeps the text readable for an audit:

* e-mail addresses -> ``<email>``;
* URLs (``scheme://...`` and ``www....``) -> ``<url>``;
* phone-like numbers (7+ digits, optionally with ``+``, spaces, dots, dashes or parentheses
  between them) -> ``<phone>``;
* any other run of 5 or more digits (ids, account and card numbers, postcodes) -> ``<number>``.

What is stored is therefore the text with those spans masked; the input hash stored beside it
is of the original text, so duplicates still match without keeping the text.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?![\w])")
_DIGITS = re.compile(r"\d{5,}")
_ANY_DIGIT = re.compile(r"\d")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, URLs, phone-like numbers and long digit runs masked.

    Each pattern runs only when the text holds what any of its matches must contain (``@``;
    ``://`` or ``www.``; a digit): most texts skip every regex. Same output either way."""
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if "://" in text or "www." in text:
        text = _URL.sub("<url>", text)
    if _ANY_DIGIT.search(text) is not None:
        text = _PHONE.sub("<phone>", text)
        text = _DIGITS.sub("<number>", text)
    return text
