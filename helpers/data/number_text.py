"""How numbers are written in answers: the text cleaning, the number pattern and the exact reading of one match.

:mod:`helpers.data.answers` builds its API (``parse_number``, ``last_number``) on these. A match is read as
*exactly* its value, or as unreadable (``None``) when the characters around it make it part of something else:
``18!`` (a factorial or an exclamation), ``3x``, ``1e5e5``, ``1_000``, ``2\\pi``, ``\\sqrt{16}``, ``x/2``,
``(5)^2``. Never as its leading digits. Read on purpose: a sign before a currency symbol (``-$5`` is -5),
powers (``10²``, ``10^{2}``, ``2**3``; ``1.5 × 10^3``), vulgar and mixed fractions (``1½``, ``1\\frac{1}{2}``).
Ambiguous suffixes are refused: ``5m`` (metres or millions?), ``2^10`` (plain 1024, or LaTeX's 2^1 then 0?),
and scale words, ``2 million``, ``1.5k``, ``7 dozen``: GSM8K names the unit a question asks for this way (in
its train and test files, all 15 solutions whose last number carries a scale word, "8 dozen", "$4 million",
"$2k", have that bare number as the gold answer: "how many dozen?"), so without the question 7 dozen may be
7 or 84.

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
# Glued one- or two-letter units that never change the number (5kg is 5; longer glued words, 130miles, are
# read too). Not here, so refused: m/M (metres or millions?), b/B/bn, k, x (3x), e (1e), pi.
_UNITS = frozenset(
    "st nd rd th s h hr ms am pm AM PM wk yr mm cm km ft in yd mi g kg mg lb oz l L ml mL qt pc pt px kW W "
    "GB MB KB kB TB Gb Mb Kb kb".split())
# Words after a number that change it or name the unit it counts in (see the module docstring): refused.
_REFUSED_WORDS = frozenset("hundred thousand million billion trillion dozen hundreds thousands millions billions "
                           "trillions dozens k K M B bn mn mln mil lakh lakhs crore crores squared cubed factorial".split())


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


def _exponent(braced, digit, starred, sup) -> int | None:
    """The integer of one ``_power`` match's groups; 0 when there is none, ``None`` when it is too long."""
    written = braced or digit or starred
    if written is not None:
        return int(written) if len(written) <= 6 else None
    if sup is None:
        return 0
    if len(sup) > 7:
        return None
    value = int("".join(str(_SUPERSCRIPT[c]) for c in sup.lstrip("\u207a\u207b")))
    return -value if sup[0] == "\u207b" else value


def _suffix_ok(text: str, end: int) -> bool:
    """Whether the text from ``end`` (right after a number) leaves the number as it is: a unit (``5kg``), a
    word, a rate (``5/hour``) yes; ``!``, ``_``, ``^``, a glued unknown word (``3x``), a scale word, ``/x`` no."""
    after = text[end:end + 1]
    if not after or after in _PLAIN_AFTER:
        return True
    if after in _SPACE:
        following = text[end + 1:end + 2]
        if not (following.isascii() and following.isalpha()) and following not in _SPACE and following != "/":
            return True  # the usual "12 apples and 7", quickly
    if unicodedata.category(after)[0] == "N":  # 10₂, 3①: a digit we do not read
        return False
    t = _TAIL.match(text, end)
    if t["bad"] is not None or t["digit"] is not None:
        return False
    if t["glued"] is not None:  # a short one may be a variable or a scale (3x, 5m, 2k): known units only
        glued = t["glued"]
        return glued in _UNITS if len(glued) <= 2 else glued.lower() not in _REFUSED_WORDS
    if t["word"] is not None:
        return t["word"] not in _REFUSED_WORDS and t["word"].lower() not in _REFUSED_WORDS
    per = t["per"]
    return per is None or len(per) >= 2 or per in _UNITS


_PLAIN_AFTER = frozenset(".,;:?<>([%$°\\\"'")  # what may follow a number without changing it
_SPACE = frozenset(" \t\n\r")
_BAD_BEFORE = frozenset("/^_{" + OPAQUE + PLUS + END)
_LOOK_BEFORE = _BAD_BEFORE | _SPACE
_GROUPS = ("radix", "opaque", "sign", "int", "frac", "onlyfrac", "exp")
_EXTRAS = ("mnum", "mden", "vulgar", "onlyvulgar", "den", "pb", "pc", "pd", "ps", "sb", "sc", "sd", "ss")


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
    if not _suffix_ok(text, m.end()) or (exp is not None and len(exp) > 6):
        return None
    frac = frac or onlyfrac or ""
    tens = int(exp) if exp is not None else 0
    digits = (whole or "0").replace(",", "") + frac
    if len(digits) + abs(tens) > MAX_DIGITS:
        return None
    if not digits.isascii():  # ١٨ is 18
        digits = "".join(str(unicodedata.digit(c)) for c in digits)
    digits = digits.lstrip("0")
    stripped = digits.rstrip("0")
    shift = tens - len(frac) + len(digits) - len(stripped) if stripped else 0
    extras = m.group(*_EXTRAS)
    if extras.count(None) == len(extras):
        return (-1 if sign == "-" and stripped else 1, stripped, shift)
    return _fraction(extras, frac, exp, sign == "-", stripped, shift)


def _fraction(extras: tuple, frac: str, exp: str | None, negative: bool, digits: str, shift: int) -> Fraction | None:
    """The exact value of a number with a fraction, a power or a ``× 10^k`` (``extras``: the ``_EXTRAS``
    groups; ``frac``, ``exp``: its decimals and exponent), one ``Fraction`` built at the end from integers."""
    mnum, mden, vulgar, onlyvulgar, den, pb, pc, pd, ps, sb, sc, sd, ss = extras
    vulgar = vulgar or onlyvulgar
    num, denom = int(digits or "0") * 10 ** max(shift, 0), 10 ** max(-shift, 0)
    if vulgar or mnum is not None:
        if frac or exp:
            return None  # 1.5½
        top, bottom = (VULGAR[vulgar].numerator, VULGAR[vulgar].denominator) if vulgar else (int(mnum), int(mden))
        if bottom == 0:
            return None
        num, denom = num * bottom + top * denom, denom * bottom
    if pb or pc or pd or ps:
        power = _exponent(pb, pc, pd, ps)
        if power is None or den or exp:
            return None  # 2^3/4 (which binds first?), 1e2^2, an exponent of over 6 digits
        if max(num.bit_length(), denom.bit_length()) * 0.30103 * abs(power) > MAX_DIGITS or (num == 0 and power < 0):
            return None
        num, denom = (num**power, denom**power) if power > 0 else (denom**-power, num**-power)
    if den is not None:
        if len(den) > MAX_DIGITS or int(den) == 0:
            return None
        denom *= int(den)
    if sb or sc or sd or ss:
        ten = _exponent(sb, sc, sd, ss)
        if ten is None or abs(ten) > MAX_DIGITS:
            return None
        num, denom = num * 10 ** max(ten, 0), denom * 10 ** max(-ten, 0)
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
