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
    ``://`` or ``www.``; 7 or 5 digits), and the e-mail and URL patterns only over the
    whitespace-delimited stretches around those marks (neither can match across whitespace,
    nor looks beyond its match): a long text with one address costs one short match, not a
    scan of every position. Same output as the patterns over the whole text."""
    if "@" in text:
        text = _around(text, ("@",), _EMAIL, "<email>")
    if "://" in text or "www." in text:
        text = _around(text, ("://", "www."), _URL, "<url>")
    if text.isascii():
        digits = sum(map(text.count, _DIGIT_CHARS))
    else:  # \d matches every Unicode decimal digit: no count, both patterns when any
        digits = 7 if _ANY_DIGIT.search(text) is not None else 0
    if digits >= 5:
        if digits >= 7:
            text = _PHONE.sub("<phone>", text)
        text = _DIGITS.sub("<number>", text)
    return text


_DIGIT_CHARS = "0123456789"
_WS = " \t\n\r\f\v"


def _around(text: str, marks: tuple[str, ...], pattern: re.Pattern[str], repl: str) -> str:
    """``pattern.sub(repl, text)`` for a pattern whose matches hold one of ``marks`` and no
    ASCII whitespace: the substitution runs over the stretches between whitespace that hold
    a mark (a stretch starts after whitespace, as the pattern's ``\\b`` expects)."""
    spans: list[tuple[int, int]] = []
    for mark in marks:
        i = text.find(mark)
        while i >= 0:
            lo = max(text.rfind(c, 0, i) for c in _WS) + 1
            hi = len(text)
            for c in _WS:
                j = text.find(c, i)
                if 0 <= j < hi:
                    hi = j
            spans.append((lo, hi))
            i = text.find(mark, hi)
    spans.sort()
    out: list[str] = []
    at = 0
    for lo, hi in spans:
        if lo < at:  # the same stretch (found by another mark)
            continue
        out.append(text[at:lo])
        out.append(pattern.sub(repl, text[lo:hi]))
        at = hi
    out.append(text[at:])
    return "".join(out)
