"""Numbers as papers print them: :func:`number_in_quote` checks that a coded value is printed
in its verbatim quote (the provenance rule of ``studies/CODEBOOK.md``)."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

__all__ = ["number_in_quote"]


_MINUS = str.maketrans(dict.fromkeys("\u2212\u2010\u2011\u2012\u2013\ufe63\uff0d", "-"))
# a number not glued to a word or another number, with an optional sign (spaces allowed after it)
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-+]\s*)?(?P<num>\d+(?:[.,]\d+)*|\.\d+)")
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUM_WORD = r"(?:" + "|".join(sorted([*_WORD_VALUE, "hundred", "thousand"], key=len, reverse=True)) + r")"
_WORD_RUN = re.compile(rf"\b{_NUM_WORD}(?:(?:[\s-]+(?:and\s+)?){_NUM_WORD})*\b")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_MINUS).lower()


def _readings(num: str) -> set[Decimal]:
    """The values a printed number can stand for: 0.23, .23, 0,23 (comma decimal), 1,052 or
    1.052 (thousands), and the parts of a list such as 0.23,0.45."""
    out: set[Decimal] = set()
    if "," in num and "." in num:
        if re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+(\.\d+)?", num):
            out.add(Decimal(num.replace(",", "")))
        if re.fullmatch(r"[1-9]\d{0,2}(\.\d{3})+(,\d+)?", num):
            out.add(Decimal(num.replace(".", "").replace(",", ".")))
        for part in num.split(","):
            if re.fullmatch(r"\d*\.\d+|\d+", part):
                out.add(Decimal(part))
    elif "," in num:
        if num.count(",") == 1:
            out.add(Decimal(num.replace(",", ".")))
        if re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+", num):
            out.add(Decimal(num.replace(",", "")))
    elif num.count(".") > 1:
        if re.fullmatch(r"[1-9]\d{0,2}(\.\d{3})+", num):
            out.add(Decimal(num.replace(".", "")))
    else:
        out.add(Decimal(num))
        if re.fullmatch(r"[1-9]\d{0,2}\.\d{3}", num):
            out.add(Decimal(num.replace(".", "")))
    return out


def _word_numbers(text: str) -> set[Decimal]:
    """Values of English number words in (normalised) text: 'fifty-six', 'one hundred and five'."""
    out: set[Decimal] = set()
    for run in _WORD_RUN.finditer(text):
        total = cur = 0
        last = ""
        for w in re.findall(r"[a-z]+", run.group()):
            if w == "and":
                continue
            if w == "hundred":
                cur = (cur or 1) * 100
            elif w == "thousand":
                total, cur = total + (cur or 1) * 1000, 0
            else:
                v = _WORD_VALUE[w]
                # 'fifty six' and 'hundred six' continue a number; 'six seven' starts a new one
                tens_before = cur % 100 >= 20 and cur % 10 == 0
                if last and last not in ("hundred", "thousand") and not (v < 10 and tens_before):
                    out.add(Decimal(total + cur))
                    total = cur = 0
                cur += v
            last = w
        if last:
            out.add(Decimal(total + cur))
    return out


def _numbers_in(text: str) -> set[Decimal]:
    t = _normalise(text)
    out: set[Decimal] = set()
    for m in _NUMBER.finditer(t):
        neg = (m.group("sign") or "").startswith("-")
        out |= {-v if neg else v for v in _readings(m.group("num"))}
    return out | _word_numbers(t)


def number_in_quote(value: str | float, quote: str) -> bool:
    """True when ``value`` is printed in ``quote``, in any of the ways papers print numbers.

    Accepted: 0.23 / .23 / 0.230, U+2212 or en-dash minus, spaces after the minus, comma decimals
    (0,23), thousands separators (1,052), and integers as English words ("Fifty-six"). The sign
    must match: -.24 is not found in "β = .24", nor .24 in "β = -.24". A dash between two numbers
    ("rs = .13–.33") is a range, not a minus. Numbers glued to letters (``t206``) are not read.
    """
    try:
        v = Decimal(str(value).strip())
    except InvalidOperation:
        return False
    return v in _numbers_in(quote)

