"""Masking of personal data in input texts before they are stored (``store_inputs="redacted"``).

Replaced, in this order, each by a placeholder that keeps the text readable for an audit:

* e-mail addresses -> ``<email>``;
* URLs (``scheme://...`` and ``www....``) -> ``<url>``;
* phone-like numbers (7+ digits, optionally with ``+``, spaces, dots, dashes or parentheses
  between them) -> ``<phone>``;
* any other run of 5 or more digits (ids, account and card numbers, postcodes) -> ``<number>``.

What is stored is therefore the text with those spans masked; the input hash stored beside it
is of the original text, so duplicates still match without keeping the text.

Cost: nothing scans the whole text more than once. The e-mail and URL patterns are matched
in C (:func:`leanml._native.sub_marks`), only over the whitespace-delimited stretches around an
``@`` / ``://`` / ``www.``; the phone and digit patterns run (``re``) only over the stretches
that can hold a match (a digit followed by digits, whitespace and ``().+-``,
:func:`leanml._native.digit_regions`). ``_EMAIL`` and ``_URL`` stay as the definition the C
matchers follow. The output is the same as the four patterns' ``sub`` over the whole text, in
order (tests/monitor and tests/test_native.py compare them on random texts).
"""

from __future__ import annotations

import re

from leanml._native import digit_regions, sub_marks

__all__ = ["redact"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?![\w])")
_DIGITS = re.compile(r"\d{5,}")
#: _DIGITS, spelled so that the regex engine's search skips to the next digit at C speed (a
#: leading repeat hides the pattern's first character class from it: 3x slower on an email)
_DIGIT_RUN = re.compile(r"\d\d{4,}")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, URLs, phone-like numbers and long digit runs masked
    (see the module docstring for how little of the text the patterns see)."""
    if "@" in text:
        text = sub_marks(text, False)  # _EMAIL, matched in C
    if "://" in text or "www." in text:
        text = sub_marks(text, True)  # _URL, matched in C
    return _mask_digits(text)


def _mask_digits(text: str) -> str:
    """``_DIGITS.sub("<number>", _PHONE.sub("<phone>", text))``, the patterns run over the
    regions of :func:`leanml._native.digit_regions` only. Why it is the same text: a phone
    match holds only what a region holds and starts at most 2 characters (``+(``) before a
    digit, so it lies in ``[d - 2, e)`` of the region of its first digit, and its lookarounds
    read one character on each side (in the searched range: ``pos`` keeps what precedes for
    the lookbehind, ``endpos = e + 1`` the lookahead's character); a match can never start
    before ``d`` in an earlier region (7 digits in 2 characters). Digit runs lie inside
    regions and never touch a phone match (its ends are not word characters), so the digit
    pattern over the parts of a region outside phone matches finds the runs it finds after
    the phone substitution."""
    regions = digit_regions(text)
    if not regions:
        return text
    n = len(text)
    out: list[str] = []
    at = 0  # text[:at] is in out
    for d, e, phone, run in regions:
        lo = d  # text[lo:e] not yet searched for digit runs
        if phone:
            for m in _PHONE.finditer(text, max(d - 2, 0), min(e + 1, n)):
                a, b = m.span()
                if run:
                    at = _runs(text, out, at, lo, a)
                out.append(text[at:a])
                out.append("<phone>")
                at = lo = b
        if run:
            at = _runs(text, out, at, lo, e)
    if not out:
        return text
    out.append(text[at:])
    return "".join(out)


def _runs(text: str, out: list[str], at: int, lo: int, hi: int) -> int:
    """Mask the digit runs of ``text[lo:hi]`` (``out`` holds ``text[:at]``, ``at <= lo``);
    the new ``at``."""
    for m in _DIGIT_RUN.finditer(text, lo, hi):
        a, b = m.span()
        out.append(text[at:a])
        out.append("<number>")
        at = b
    return at
