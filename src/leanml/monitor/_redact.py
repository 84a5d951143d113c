"""Masking of personal data in input texts before they are stored (``store_inputs="redacted"``).

Replaced, in this order, each by a placeholder that keeps the text readable for an audit:

* e-mail addresses -> ``<email>``;
* URLs (``scheme://...`` and ``www....``) -> ``<url>``;
* phone-like numbers (7+ digits, optionally with ``+``, spaces, dots, dashes or parentheses
  between them) -> ``<phone>``;
* any other run of 5 or more digits (ids, account and card numbers, postcodes) -> ``<number>``.

What is stored is therefore the text with those spans masked; the input hash stored beside it
is of the original text, so duplicates still match without keeping the text.

Cost: the patterns never scan the whole text. The e-mail and URL patterns run only over the
whitespace-delimited stretches around an ``@`` / ``://`` / ``www.``; the phone and digit
patterns only over the stretches that can hold a match (a digit followed by digits,
whitespace and ``().+-``). For an ASCII text both kinds of stretch are found in a
``bytes.translate`` of it (whitespace to one byte for ``find``/``rfind``; character classes
for a bytes pattern). The output is the same as the four patterns' ``sub`` over the whole
text, in order (tests/monitor compare them on random texts).
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?![\w])")
_DIGITS = re.compile(r"\d{5,}")
#: _DIGITS, spelled so that the regex engine's search skips to the next digit at C speed (a
#: leading repeat hides the pattern's first character class from it: 3x slower on an email)
_DIGIT_RUN = re.compile(r"\d\d{4,}")
#: a digit and at least 4 characters after it that a phone-like number may hold (a superset:
#: ``+``), as many as follow: at the first digit of a stretch shorter than 5 it fails, and so
#: at every later start inside that stretch
_REGION = re.compile(r"\d[\d\s().+-]{4,}")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, URLs, phone-like numbers and long digit runs masked
    (see the module docstring for how little of the text the patterns see)."""
    if "@" in text:
        text = _around(text, ("@",), _EMAIL, "<email>")
    if "://" in text or "www." in text:
        text = _around(text, ("://", "www."), _URL, "<url>")
    return _mask_digits(text)


_WS = " \t\n\r\f\v"
#: ``bytes.translate`` table: each of ``_WS`` to a space, every other byte to itself
_ONE_SPACE = bytes(ord(" ") if chr(c) in _WS else c for c in range(256))


def _around(text: str, marks: tuple[str, ...], pattern: re.Pattern[str], repl: str) -> str:
    """``pattern.sub(repl, text)`` for a pattern whose matches hold one of ``marks`` and no
    ASCII whitespace: the substitution runs over the stretches between whitespace that hold
    a mark (a stretch starts after whitespace, as the pattern's ``\\b`` expects). Each
    boundary is searched only as far as the nearest whitespace found so far (a space first),
    and only for the whitespace characters the text holds."""
    n = len(text)
    spans: list[tuple[int, int]] = []
    if text.isascii():  # one whitespace byte: two finds a mark
        flat = text.encode("ascii").translate(_ONE_SPACE)
        find, rfind = flat.find, flat.rfind
        for mark in marks:
            bmark = mark.encode("ascii")
            i = find(bmark)
            while i >= 0:
                hi = find(b" ", i)
                if hi < 0:
                    hi = n
                spans.append((rfind(b" ", 0, i) + 1, hi))
                i = find(bmark, hi)
    else:
        present = [c for c in _WS if c in text]
        for mark in marks:
            i = text.find(mark)
            while i >= 0:
                lo, hi = 0, n
                for c in present:
                    j = text.rfind(c, lo, i)
                    if j >= 0:
                        lo = j + 1
                    j = text.find(c, i, hi)
                    if j >= 0:
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


def _char_classes() -> bytes:
    """``bytes.translate`` table of the ASCII characters: ``0`` for a digit, ``.`` for what
    else a phone-like number may hold (whitespace as the patterns' ``\\s`` has it, ``().+-``),
    ``x`` for the rest (non-ASCII bytes never occur: only ASCII texts are translated)."""
    table = bytearray(b"x" * 256)
    for c in range(128):
        ch = chr(c)
        if re.fullmatch(r"\d", ch):
            table[c] = ord("0")
        elif re.fullmatch(r"[\s().+-]", ch):
            table[c] = ord(".")
    return bytes(table)


_CLASSES = _char_classes()
#: a region over the classes: a digit, then as many digits and ``.`` as follow, 5 or more in
#: all (a shorter stretch fails at its first digit, and so at every later digit in it)
_CLASS_REGION = re.compile(rb"0[0.]{4,}")


def _regions(text: str) -> list[tuple[int, int, bool, bool]]:
    """The stretches ``[d, e)`` that start at a digit and run over digits, whitespace and
    ``().+-`` (as long as they go: ``text[e]`` is none of those), each with whether it may
    hold a phone-like number (7+ digits) and a run of 5 digits."""
    if text.isascii():  # the stretches of 5+ are a bytes pattern over the classes
        cls = text.encode("ascii").translate(_CLASSES)
        find, count = cls.find, cls.count
        return [
            (d, e, count(b"0", d, e) >= 7, find(b"00000", d, e) >= 0)
            for d, e in (m.span() for m in _CLASS_REGION.finditer(cls))
        ]
    # every Unicode decimal digit and whitespace, as the patterns see them
    return [(d, e, e - d >= 7, True) for d, e in (m.span() for m in _REGION.finditer(text))]


def _mask_digits(text: str) -> str:
    """``_DIGITS.sub("<number>", _PHONE.sub("<phone>", text))``, the patterns run over the
    :func:`_regions` only. Why it is the same text: a phone match holds only what a region
    holds and starts at most 2 characters (``+(``) before a digit, so it lies in
    ``[d - 2, e)`` of the region of its first digit, and its lookarounds read one character
    on each side (in the searched range: ``pos`` keeps what precedes for the lookbehind,
    ``endpos = e + 1`` the lookahead's character); a match can never start before ``d`` in an
    earlier region (7 digits in 2 characters). Digit runs lie inside regions and never
    touch a phone match (its ends are not word characters), so the digit pattern over the
    parts of a region outside phone matches finds the runs it finds after the phone
    substitution."""
    regions = _regions(text)
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
