"""How numbers are written in answers: the text cleaning, the number pattern and the exact reading of one match.

:mod:`helpers.data.answers` builds its API (``parse_number``, ``last_number``) on these. A match is read as
*exactly* its value, or as unreadable (``None``) when the characters around it make it part of something else:
``18!`` (a factorial or an exclamation), ``3x``, ``1e5e5``, ``1_000``, ``2\\pi``, ``\\sqrt{16}``, ``x/2``,
``(5)^2``. Never as its leading digits. Read on purpose: a sign before a currency symbol (``-$5`` is -5),
powers (``10²``, ``10^{2}``, ``2**3``; ``1.5 × 10^3``), vulgar and mixed fractions (``1½``, ``1\\frac{1}{2}``),
scale words and ``k`` (``2 million``, ``1.5k``, ``2 dozen``). An ambiguous suffix is refused: ``5m`` (metres or
millions?), ``2^10`` (plain 1024 or LaTeX 2^1 then 0?).

Every pattern runs in time linear in its input (no two adjacent sub-patterns can match the same characters),
and equal decimals are compared by their digits, not by building ``10**3999`` once per copy.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

MAX_DIGITS = 4000  # Python refuses int() on more than 4300 digits; longer "numbers" are not answers
OPAQUE = "\ue000"  # private-use marks put in by clean(): a quantity that cannot be read exactly (\pi, \sqrt{..})
PLUS = "\ue001"  # ... the fraction after it adds to the whole number before it (1\frac{1}{2})
END = "\ue002"  # ... the end of a LaTeX fraction: what follows it is glued to the fraction

_TRANSLATE = str.maketrans({
    "\u2212": "-", "\ufe63": "-", "\uff0d": "-",  # unicode minus signs
    "\u2044": "/",  # fraction slash
    "\u221a": OPAQUE, "\u221b": OPAQUE, "\u221c": OPAQUE, "\u03c0": OPAQUE, "\u221e": OPAQUE,  # √ ∛ ∜ π ∞
    OPAQUE: " ", PLUS: " ", END: " ",  # nobody else writes the private marks
})
_SUPERSCRIPT = {c: i for i, c in enumerate("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")}
_SUP = "".join(_SUPERSCRIPT)


def _vulgar_fractions() -> dict[str, Fraction]:
    out = {}
    for code in [*range(0x00BC, 0x00BF), *range(0x2150, 0x215F), 0x2189]:
        parts = unicodedata.decomposition(chr(code)).split()  # '<fraction> 0031 2044 0032'
        if len(parts) == 4 and parts[0] == "<fraction>":
            out[chr(code)] = Fraction(int(chr(int(parts[1], 16))), int(chr(int(parts[3], 16))))
    return out


VULGAR = _vulgar_fractions()  # ½ ⅓ ¼ ¾ ... ↉, exactly
_VUL = "".join(VULGAR)

_SIGNED_CURRENCY = re.compile(r"[-+](?:\\\$|[$€£¥₹])\s*")  # -$5 -> -5 (a sign, then the symbol)
_DEGREE = re.compile(r"\^(?:\{\s*\\circ\s*\}|\s*\\circ)")  # 30^\circ: degrees
_LATEX_FRAC = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_OPERATOR = {"times": " × ", "cdot": " · ", "div": " ÷ ", "approx": " "}
_LATEX_DROP = re.compile(r"\\(?:left|right|[bB]igg?|displaystyle|textstyle|quad|qquad|[,;:!%$ ]|[nrt](?![A-Za-z]))")
# Any other command with its arguments (\sqrt[3]{8}, \log_2, \pi) is a quantity we cannot read.
_LATEX_COMMAND = re.compile(r"\\([A-Za-z]+)(?:\s*(?:[_^](?:\{[^{}]*\}|\w)|\{[^{}]*\}|\[[^\[\]]*\]))*")


def _power(n: str) -> str:
    """An integer exponent: ``^{-2}``, ``^3`` (one digit: ``2^10`` could be LaTeX's 2^1 then 0), ``**3``, ``³``."""
    return (rf"(?:\^(?:\{{\s*(?P<{n}b>[-+]?\d+)\s*\}}|(?P<{n}c>[-+]?\d)(?!\d))|\*\*(?P<{n}d>[-+]?\d+)"
            rf"|(?P<{n}s>[\u207a\u207b]?[{_SUP}]+))")


# A number: an optional sign (only where it cannot be a subtraction: not after a word character, a closing
# bracket or a dot), digits with optional ``,ddd`` groups, decimals, an exponent (``e9``), a power, a
# ``/denominator``, a ``× 10^k``; never glued to other digits (``1,2345`` and ``3,4`` are no number).
# ``\d`` matches the decimal digits of every script. ``0x``/``0o``/``0b`` forms and the OPAQUE mark are
# matched only so that they are read as unreadable.
NUMBER = re.compile(
    rf"""
    (?=[-+.\d{_VUL}{OPAQUE}])  # a cheap first look: 7x faster through text that has no number
    (?:(?<![\w.)\]}}])(?P<sign>[-+]))?
    (?<![\w.,])
    (?:
        (?P<radix>0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+))
      | (?P<int>\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.(?P<frac>\d+))?
        (?:[ \t]*{PLUS}(?P<mnum>\d+)/(?P<mden>\d+){END}|(?P<vulgar>[{_VUL}]))?
      | \.(?P<onlyfrac>\d+)
      | (?P<onlyvulgar>[{_VUL}])
      | (?P<opaque>{OPAQUE})
    )
    (?:[eE](?P<exp>[-+]?\d+))?
    {_power("p")}?
    (?:\s*/\s*(?P<den>\d+)(?!\d|[.,]\d))?
    (?:\s*[×·*]\s*10{_power("s")})?
    (?!\d|[.,]\d)
    """,
    re.VERBOSE,
)

# What follows a number and changes what it means (``END`` skipped: it only closes a LaTeX fraction).
_TAIL = re.compile(
    rf"""{END}?(?:
        (?P<bad>[_\d{OPAQUE}{PLUS}]|!(?!=)|[)\]}}]*(?:\^|[{_SUP}])|[)\]}}]+\*\*)
      | (?P<glued>[A-Za-z]+)(?P<digit>\d)?
      | \s*/\s*(?P<per>[A-Za-z]*)
      | \s+(?P<word>[A-Za-z]+)
    )?""",
    re.VERBOSE,
)
# Scale words (and a glued k): (powers of ten, other factor), so 2 million stays a decimal (2, 6 tens).
_SCALE = {"hundred": (2, 1), "thousand": (3, 1), "million": (6, 1), "billion": (9, 1), "trillion": (12, 1),
          "dozen": (0, 12)}
_NO_SCALE = (0, 1)
# Glued units that never change the number (5kg is 5). Not here, so refused: m/M (metres or millions?),
# b/B/bn, x (3x), e (1e), and any other glued letters (18apples).
_UNITS = frozenset(
    "st nd rd th s sec secs h hr hrs min mins ms am pm AM PM wk wks yr yrs mm cm km ft in yd yds mi g kg mg "
    "lb lbs oz l L ml mL gal qt mph kph kmh pcs pc pts px cal kcal kW kWh W GB MB KB kB TB deg USD EUR".split())
_REFUSED_WORDS = frozenset("k K M B bn mn mln mil lakh lakhs crore crores squared cubed factorial".split())


def unbox(text: str) -> str:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; else ``text``."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return text
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        depth += (text[i] == "{") - (text[i] == "}")
        if depth == 0:
            return text[begin:i]
        i += 1
    return text[begin:]  # unclosed: take the rest


def _frac(m: re.Match) -> str:
    top, bottom = m[1].strip(), m[2].strip()
    if not m.string[max(0, m.start() - 16):m.start()].rstrip(" \t")[-1:].isdigit():
        return f"{top}/{bottom}{END}"
    if top.isdigit() and bottom.isdigit():
        return f"{PLUS}{top}/{bottom}{END}"  # 1\frac{1}{2}: one and a half
    return OPAQUE


def clean(text: str) -> str:
    """``text`` with unicode minus signs, currency after a sign and LaTeX put into the forms ``NUMBER`` reads."""
    text = _SIGNED_CURRENCY.sub(lambda m: m[0][0], unbox(text.translate(_TRANSLATE)))
    text = _DEGREE.sub("°", text)
    text = _LATEX_FRAC.sub(_frac, text)
    text = _LATEX_WRAPPER.sub(r" \1 ", text)
    text = _LATEX_DROP.sub(" ", text)
    return _LATEX_COMMAND.sub(lambda m: _LATEX_OPERATOR.get(m[1], OPAQUE), text)


def _exponent(m: re.Match, n: str) -> int | None:
    for key in ("b", "c", "d"):
        if m[n + key] is not None:
            return int(m[n + key]) if len(m[n + key]) <= 6 else None
    if m[n + "s"] is None:
        return 0
    sup = m[n + "s"]
    value = int("".join(str(_SUPERSCRIPT[c]) for c in sup.lstrip("\u207a\u207b"))) if len(sup) <= 7 else None
    return None if value is None else -value if sup[0] == "\u207b" else value


def _scale(text: str, end: int) -> tuple[int, int] | None:
    """What the text from ``end`` (right after a number) does to it: ``(tens, factor)`` to multiply by
    (``(0, 1)``: nothing; ``(3, 1)``: ``k``), or ``None`` when it makes the number unreadable."""
    after = text[end:end + 1]
    if not after or after in _PLAIN_AFTER:
        return _NO_SCALE
    if after in _SPACE:
        following = text[end + 1:end + 2]
        if not (following.isascii() and following.isalpha()) and following not in _SPACE and following != "/":
            return _NO_SCALE  # the usual "12 apples and 7", quickly
    if unicodedata.category(after)[0] == "N":  # 10₂, 3①: a digit we do not read
        return None
    t = _TAIL.match(text, end)
    if t["bad"] is not None or t["digit"] is not None:
        return None
    word = t["glued"] or t["word"]
    if word is None:
        per = t["per"]
        return None if per is not None and len(per) < 2 and per not in _UNITS else _NO_SCALE
    scale = _SCALE.get(word.lower().removesuffix("s"))
    if scale is not None:
        return scale
    if t["glued"] is not None:
        return (3, 1) if word in ("k", "K") else _NO_SCALE if word in _UNITS else None
    return None if word in _REFUSED_WORDS else _NO_SCALE


_PLAIN_AFTER = frozenset(".,;:?<>([%$°\\\"'")  # what may follow a number without changing it
_SPACE = frozenset(" \t\n\r")
_BAD_BEFORE = frozenset("/^_{" + OPAQUE + PLUS + END)
_LOOK_BEFORE = _BAD_BEFORE | _SPACE
_GROUPS = ("radix", "opaque", "sign", "int", "frac", "onlyfrac", "exp")
_EXTRAS = ("mnum", "vulgar", "onlyvulgar", "den", "pb", "pc", "pd", "ps", "sb", "sc", "sd", "ss")


def read(m: re.Match, text: str):
    """A comparable reading of one ``NUMBER`` match in ``text``: ``(sign, digits, exponent)`` for a decimal
    (``digits`` in ASCII without leading or trailing zeros: equal tuples are equal values, and no big integer
    is built), a ``Fraction`` for any other form, or ``None`` when it cannot be read exactly."""
    radix, opaque, sign, whole, frac, onlyfrac, exp = m.group(*_GROUPS)
    if radix is not None or opaque is not None:
        return None
    start = m.start()
    if start and text[start - 1] in _LOOK_BEFORE:  # x/2, x^2, a_2, \log 8: part of something before
        before = text[max(0, start - 16):start].rstrip(" \t")
        if before and before[-1] in _BAD_BEFORE:
            return None
    scale = _scale(text, m.end())
    if scale is None or (exp is not None and len(exp) > 6):
        return None
    frac = frac or onlyfrac or ""
    tens = (int(exp) if exp is not None else 0) + scale[0]
    digits = (whole or "0").replace(",", "") + frac
    if len(digits) + abs(tens) > MAX_DIGITS:
        return None
    if not digits.isascii():  # ١٨ is 18
        digits = "".join(str(unicodedata.digit(c)) for c in digits)
    digits = digits.lstrip("0")
    stripped = digits.rstrip("0")
    shift = tens - len(frac) + len(digits) - len(stripped) if stripped else 0
    extras = m.group(*_EXTRAS)
    if scale[1] == 1 and extras.count(None) == len(extras):
        return (-1 if sign == "-" and stripped else 1, stripped, shift)
    return _fraction(m, sign == "-", stripped, shift, scale[1])


def _fraction(m: re.Match, negative: bool, digits: str, shift: int, factor: int) -> Fraction | None:
    """The exact value of a number with a fraction, a power, a ``× 10^k`` or a non-decimal scale (one
    ``Fraction`` built at the end from integers: building it step by step was 4x slower)."""
    mnum, mden, vulgar, den = m.group("mnum", "mden", "vulgar", "den")
    vulgar = vulgar or m["onlyvulgar"]
    if (mnum or vulgar) and (m["frac"] or m["exp"]):
        return None  # 1.5½
    num, denom = int(digits or "0") * 10 ** max(shift, 0), 10 ** max(-shift, 0)
    for top, bottom in ([(VULGAR[vulgar].numerator, VULGAR[vulgar].denominator)] if vulgar else []) + (
            [(int(mnum), int(mden))] if mnum is not None else []):
        if bottom == 0:
            return None
        num, denom = num * bottom + top * denom, denom * bottom
    power, ten = _exponent(m, "p"), _exponent(m, "s")
    if power is None or ten is None or (power and (den or m["exp"])) or abs(ten) > MAX_DIGITS:
        return None  # 2^3/4 (which binds first?), 1e2^2, exponents past the digit limit
    if power:
        if max(num.bit_length(), denom.bit_length()) * 0.30103 * abs(power) > MAX_DIGITS or (num == 0 and power < 0):
            return None
        num, denom = (num**power, denom**power) if power > 0 else (denom**-power, num**-power)
    if den is not None:
        if len(den) > MAX_DIGITS or int(den) == 0:
            return None
        denom *= int(den)
    num *= factor * 10 ** max(ten, 0)
    denom *= 10 ** max(-ten, 0)
    if max(num.bit_length(), denom.bit_length()) * 0.30103 > 2 * MAX_DIGITS:
        return None
    value = Fraction(num, denom)
    return -value if negative else value


def exact(reading) -> Fraction | None:
    """The ``Fraction`` of a :func:`read` result."""
    if reading is None or isinstance(reading, Fraction):
        return reading
    sign, digits, shift = reading
    return sign * Fraction(int(digits or "0") * 10 ** max(shift, 0), 10 ** max(-shift, 0))
