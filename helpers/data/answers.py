"""Numeric answers: parse, normalise and compare them, the same way for gold data and for completions.

One parser serves the datasets (``helpers.data.problems``) and the rewards (``helpers.rewards.functions``), so a gold
answer and a model's answer can never be read by different rules. Values are exact fractions
(:class:`fractions.Fraction`), so ``18``, ``18.00`` and ``$18`` are equal and ``0.75`` equals ``3/4``
with no floating-point rounding.

``parse_number`` accepts: thousands separators (``1,234``), currency and units (``$18``,
``18 dollars``, ``50%``), signs (``-3``, and ``−3`` with the unicode minus), decimals (``18.00``,
``.5``), fractions (``3/4``, ``\frac{3}{4}``), ``\boxed{18}``, a trailing full stop, the text after
the last ``=`` (``x = 18``), digits of any script (``١٨``), and exponents read exactly (``7e9`` is
7000000000, ``2.5E-3`` is 1/400). It is deliberately strict about ambiguity: text with several
*different* numbers (``18 or 20``) has no answer, so a hedging completion earns nothing. A number
that cannot be read exactly makes the whole text unreadable, never its leading digits: ``0x7``
(hex, octal ``0o``, binary ``0b``), more than 4,000 digits, or an exponent that would need more.
Number words (``eighteen``) are not read. Nothing here raises: what cannot be read is ``None``.

**Linear time.** A reward runs this on every completion a model writes, including degenerate ones
(``\frac{`` then thousands of spaces, long digit runs, nested braces): every pattern here runs in
time linear in its input (no two adjacent sub-patterns can match the same characters, so the
regex engine never tries the splits of a run between them); ``tests/test_hostile.py`` pins it by
timing two input sizes and ``benchmarks/reward_speed.py`` records the per-call time.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# Unicode minus signs (U+2212 MINUS SIGN, U+FE63 SMALL HYPHEN-MINUS, U+FF0D FULLWIDTH HYPHEN-MINUS) read as "-".
_MINUS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u2044": "/"})

# A number: an optional sign (only where it cannot be a subtraction: not after a word character,
# a closing bracket or a dot), digits with optional ``,ddd`` groups, optional decimals, an optional
# exponent (``e9``, ``E-3``), an optional ``/denominator``; never glued to other digits (``1,2345`` and
# ``3,4`` are no number). ``\d`` matches the decimal digits of every script, and ``int()`` reads them
# all. ``0x``/``0o``/``0b`` forms are matched only so that they are read as unreadable, not as ``0``.
_NUMBER = re.compile(
    r"""
    (?:(?<![\w.)\]}])(?P<sign>[-+]))?
    (?<![\w.,])
    (?:
        (?P<radix>0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+))
      | (?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?
      | \.(?P<onlyfrac>\d+)
    )
    (?:[eE](?P<exp>[-+]?\d+))?
    (?:\s*/\s*(?P<den>\d+)(?!\d|[.,]\d))?
    (?!\d|[.,]\d)
    """,
    re.VERBOSE,
)
# ``\\frac{a}{b}``: each group is greedy up to its closing brace; spaces inside are stripped afterwards.
# (``\\s*([^{}]*?)\\s*`` took cubic time on ``\\frac{`` + spaces: three ways to split every run.)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_DROP = re.compile(r"\\(?:left|right|,|;|!|quad|qquad|%|\$)|\\\s")
_MAX_DIGITS = 4000  # Python refuses int() on more than 4300 digits; longer "numbers" are not answers


def _unbox(text: str) -> str:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; else ``text``."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return text
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        ch = text[i]
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return text[begin:i]
        i += 1
    return text[begin:]  # unclosed: take the rest


def _to_fraction(match: re.Match) -> Fraction | None:
    """The exact value of one ``_NUMBER`` match, or ``None`` when it cannot be read exactly."""
    if match["radix"] is not None:
        return None
    whole, frac = match["int"], match["frac"]
    if match["onlyfrac"] is not None:
        whole, frac = "0", match["onlyfrac"]
    digits = whole.replace(",", "")
    exp = match["exp"]
    if exp is not None and len(exp.lstrip("+-")) > len(str(_MAX_DIGITS)):
        return None
    shift = int(exp) if exp is not None else 0
    if len(digits) + len(frac or "") + abs(shift) > _MAX_DIGITS:
        return None
    try:  # one exact Fraction: (digits.frac) * 10**shift / den
        numerator = int(digits + (frac or ""))
        denominator = 10 ** len(frac or "")
        if shift > 0:
            numerator *= 10**shift
        elif shift < 0:
            denominator *= 10**-shift
        if match["den"] is not None:
            if len(match["den"]) > _MAX_DIGITS or int(match["den"]) == 0:
                return None
            denominator *= int(match["den"])
        value = Fraction(numerator, denominator)
    except (ValueError, OverflowError):
        return None
    return -value if match["sign"] == "-" else value


def _clean(text: str) -> str:
    text = text.translate(_MINUS)
    text = _unbox(text)
    text = _LATEX_FRAC.sub(lambda m: f"{m[1].strip()}/{m[2].strip()}", text)
    text = _LATEX_WRAPPER.sub(r" \1 ", text)
    return _LATEX_DROP.sub(" ", text)


def _numbers(text: str) -> list[Fraction | None]:
    return [_to_fraction(m) for m in _NUMBER.finditer(text)]


def parse_number(text) -> Fraction | None:
    """The one number that ``text`` states, as an exact fraction; ``None`` if there is none or several.

    Numbers given as ``int``, ``float`` or ``Fraction`` are taken as they are (a float by its shortest
    repr, so ``0.1`` is ``1/10``).

    >>> [parse_number(s) for s in ["1,234", "$18", "18.00", "−3", "3/4", "0.75", r"\\boxed{18}", "18 dollars.", "x = 18"]]
    [Fraction(1234, 1), Fraction(18, 1), Fraction(18, 1), Fraction(-3, 1), Fraction(3, 4), Fraction(3, 4), Fraction(18, 1), Fraction(18, 1), Fraction(18, 1)]
    >>> parse_number("18 or 20") is None, parse_number("no number") is None, parse_number(None) is None
    (True, True, True)
    >>> parse_number("7e9"), parse_number("2.5E-3"), parse_number("0x7"), parse_number("1e99999")
    (Fraction(7000000000, 1), Fraction(1, 400), None, None)
    """
    if isinstance(text, Fraction | int) and not isinstance(text, bool):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(repr(text)) if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    try:
        text = _clean(text)
        if "=" in text:
            after = text.rsplit("=", 1)[1]
            if _NUMBER.search(after):
                text = after
        values = _numbers(text)
    except Exception:  # a parser must not take a training run down
        return None
    if not values or any(v is None for v in values) or len(set(values)) != 1:
        return None
    return values[0]


def last_number(text) -> Fraction | None:
    """The last number anywhere in ``text`` (the *lenient* reading of an answer), or ``None``.

    >>> last_number("3 + 4 = 7, so 7 apples. Done")
    Fraction(7, 1)
    """
    if not isinstance(text, str):
        return None
    try:
        matches = list(_NUMBER.finditer(_clean(text)))
        return _to_fraction(matches[-1]) if matches else None
    except Exception:
        return None


def format_number(value: Fraction) -> str:
    """The canonical text of a number: an integer, an exact decimal, else ``p/q``.

    >>> format_number(Fraction(18)), format_number(Fraction(3, 4)), format_number(Fraction(-1, 3))
    ('18', '0.75', '-1/3')
    """
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}{whole}.{str(frac).rjust(places, '0').rstrip('0')}"


def normalize_answer(text) -> str | None:
    """``text``'s number in canonical form (``format_number(parse_number(text))``), or ``None``.

    >>> normalize_answer("$1,234.50"), normalize_answer(r"\\boxed{-3}"), normalize_answer("")
    ('1234.5', '-3', None)
    """
    value = parse_number(text)
    if value is None:
        return None
    try:
        return format_number(value)
    except ValueError:  # more digits than str(int) allows
        return None


def _plain(text) -> str:
    return " ".join(text.split()).strip(" .").casefold() if isinstance(text, str) else ""


def answers_match(predicted, gold) -> bool:
    """Whether ``predicted`` states ``gold``'s answer: equal numbers when ``gold`` is numeric, else equal
    text after folding case, spacing and a trailing full stop.

    >>> answers_match("18.00", "18"), answers_match("3/4", "0.75"), answers_match("17", "18")
    (True, True, False)
    """
    gold_value = parse_number(gold)
    if gold_value is not None:
        return parse_number(predicted) == gold_value
    gold_text = _plain(gold)
    return bool(gold_text) and _plain(predicted) == gold_text
