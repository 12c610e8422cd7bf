"""Numeric answers: parse, normalise and compare them, the same way for gold data and for completions.

One parser serves the datasets (``helpers.data.problems``) and the rewards (``helpers.rewards.functions``), so a gold
answer and a model's answer can never be read by different rules. Values are exact fractions
(:class:`fractions.Fraction`), so ``18``, ``18.00`` and ``$18`` are equal and ``0.75`` equals ``3/4``
with no floating-point rounding.

``parse_number`` accepts: thousands separators (``1,234``), currency and units (``$18``, ``-$5``,
``18 dollars``, ``18kg``, ``50%``), signs (``-3``, and ``−3`` with the unicode minus), decimals (``18.00``,
``.5``), fractions (``3/4``, ``\frac{3}{4}``, ``½``, mixed: ``1½``, ``1\frac{1}{2}``), ``\boxed{18}``, a trailing
full stop, the text after the last ``=`` (``x = 18``), digits of any script (``١٨``), exponents read exactly
(``7e9`` is 7000000000, ``2.5E-3`` is 1/400) and powers (``10²``, ``10^{2}``, ``1.5 × 10^3``). It is
deliberately strict about ambiguity: text with several *different* numbers (``18 or 20``) has no answer, so a
hedging completion earns nothing. A number that cannot be read exactly makes the whole text unreadable, never
its leading digits: ``0x7``, ``18!``, ``3x``, ``1e5e5``, ``1_000``, ``5m`` (metres or millions?), ``2\\pi``,
``\\sqrt{16}``, more than 4,000 digits, and a scale word (``2 million``, ``1.5k``, ``7 dozen``: in GSM8K such a
word names the unit the question asks for, so 7 dozen may be the answer 7 or 84).
Number words (``eighteen``) are not read. Nothing here raises: what cannot be read is ``None``.
The forms themselves (patterns, cleaning, the reading of one number) live in :mod:`helpers.data.number_text`.

**Linear time.** A reward runs this on every completion a model writes, including degenerate ones
(``\frac{`` then thousands of spaces, long digit runs, nested braces, hundreds of ``1e3999``): every
pattern runs in time linear in its input, and equal decimals are compared by their digits;
``tests/test_hostile.py`` pins it by timing two input sizes and ``benchmarks/reward_speed/reward_speed.py`` records the
per-call time.
"""

from __future__ import annotations

import math
from fractions import Fraction

from helpers.data.number_text import NUMBER, clean, exact, read

# Numbers other than plain decimals are built as exact fractions; a text whose fractions together need more
# bits than this (about 40,000 digits: ten numbers at the 4,000-digit limit) is unreadable, not slow.
_MAX_FRACTION_BITS = 133_000


def _one_value(text: str) -> Fraction | None:
    """The value that every number in ``text`` has, or ``None`` (no number, an unreadable one, or two values)."""
    decimal, fraction, bits = None, None, 0
    for match in NUMBER.finditer(text):
        reading = read(match, text)
        if reading is None:
            return None
        if isinstance(reading, Fraction):
            bits += max(reading.numerator.bit_length(), reading.denominator.bit_length())
            if bits > _MAX_FRACTION_BITS or (fraction is not None and reading != fraction):
                return None
            fraction = reading
        elif decimal is None:
            decimal = reading
        elif reading != decimal:
            return None
    if decimal is None:
        return fraction
    value = exact(decimal)
    return value if fraction is None or fraction == value else None


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
    >>> parse_number("-$5"), parse_number("1½"), parse_number(r"1\\frac{1}{2}"), parse_number("10²")
    (Fraction(-5, 1), Fraction(3, 2), Fraction(3, 2), Fraction(100, 1))
    >>> [parse_number(s) for s in ["18!", "3x", "1e5e5", "1_000", "5m", r"\\sqrt{16}", r"2\\pi", "2 million", "1.5k"]]
    [None, None, None, None, None, None, None, None, None]
    """
    if isinstance(text, Fraction | int) and not isinstance(text, bool):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(repr(text)) if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    try:
        text = clean(text)
        if "=" in text:
            after = text.rsplit("=", 1)[1]
            if NUMBER.search(after):
                text = after
        return _one_value(text)
    except Exception:  # a parser must not take a training run down
        return None


def last_number(text) -> Fraction | None:
    """The last number anywhere in ``text`` (the *lenient* reading of an answer), or ``None`` (also when
    that last number cannot be read exactly: ``... so 18!``).

    >>> last_number("3 + 4 = 7, so 7 apples. Done")
    Fraction(7, 1)
    """
    if not isinstance(text, str):
        return None
    try:
        text = clean(text)
        last = None
        for last in NUMBER.finditer(text):  # noqa: B007 - the loop keeps the last match
            pass
        return exact(read(last, text)) if last is not None else None
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


def same_text_answer(predicted, gold) -> bool:
    """Whether ``predicted`` states a non-numeric ``gold`` answer: equal non-empty text after folding case,
    spacing and a trailing full stop.

    >>> same_text_answer("Paris.", "paris"), same_text_answer("", "")
    (True, False)
    """
    gold_text = _plain(gold)
    return bool(gold_text) and _plain(predicted) == gold_text


def answers_match(predicted, gold) -> bool:
    """Whether ``predicted`` states ``gold``'s answer: equal numbers when ``gold`` is numeric, else
    :func:`same_text_answer`.

    >>> answers_match("18.00", "18"), answers_match("3/4", "0.75"), answers_match("17", "18")
    (True, True, False)
    """
    gold_value = parse_number(gold)
    if gold_value is not None:
        return parse_number(predicted) == gold_value
    return same_text_answer(predicted, gold)
