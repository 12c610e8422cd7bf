"""An independent grader as the oracle for ``helpers.data.answers``: HF math-verify (``math-verify`` in the
``dev`` extra, pinned to the version these tests ran with), and generated answer forms for the property tests
(``tests/test_answers.py``, ``tests/test_rewards.py``).

:func:`reading` is math-verify's number for an answer string: its LaTeX reading (the text inside ``$...$``)
when the text holds a LaTeX command or group (a backslash or a brace), else its reading of the plain text, the way it reads a
model's raw output. A reading that is an expression with free symbols (``3*x``) is no number. math-verify
runs its own comparison (:func:`math_verify.verify`, with its float tolerance) in :func:`verdict`.
Its signal-based timeouts are off: the inputs are short, and on a busy machine a timeout turned a reading
into "no number".
"""

from __future__ import annotations

import logging
from fractions import Fraction

from hypothesis import strategies as st

from helpers.data.number_text import VULGAR

logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every string it cannot parse
logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)


def reading(text: str):
    """math-verify's number (a sympy expression) for ``text``, or ``None`` when it reads no number."""
    import sympy
    from math_verify import parse

    try:
        parsed = parse(f"${text}$" if "\\" in text or "{" in text else text, parsing_timeout=None)
    except Exception:  # noqa: BLE001 - a form the oracle cannot read: it reads nothing
        return None
    expr = parsed[0] if parsed else None
    if not isinstance(expr, sympy.Expr):
        return None
    try:
        return expr if expr.is_number and expr.is_finite and expr.is_real is not False else None
    except Exception:  # noqa: BLE001
        return None


def verdict(text: str, ours: Fraction) -> str:
    """``"agree"`` when math-verify reads ``ours`` in ``text``, ``"differ"`` when it reads another number,
    ``"silent"`` when it reads no number."""
    import sympy
    from math_verify import verify

    theirs = reading(text)
    if theirs is None:
        return "silent"
    gold = sympy.Rational(ours.numerator, ours.denominator)
    return "agree" if verify(gold, theirs, timeout_seconds=None) else "differ"


# --- generated answer forms ------------------------------------------------------------------------------
# SPELLED: (text, its exact value, whether math-verify reads that spelling); DECORATED: (text, the number in
# it) where the decoration makes it no single number (18!, 3x, \sqrt{16}, 2 million), so it must be refused.
INTEGER = st.integers(-10**7, 10**7)
SMALL = st.integers(1, 99)


def _signed(n: int, body: str) -> str:
    return ("-" if n < 0 else "") + body


SPELLED = st.one_of(
    INTEGER.map(lambda n: (str(n), n, True)),
    INTEGER.map(lambda n: (f"{n:,}", n, True)),
    INTEGER.map(lambda n: (f"{n}.00", n, True)),
    INTEGER.map(lambda n: (_signed(n, f"${abs(n):,}"), n, n >= 0)),
    INTEGER.map(lambda n: (_signed(n, f"\\${abs(n)}"), n, True)),
    INTEGER.map(lambda n: (str(n).replace("-", "\u2212"), n, n >= 0)),
    INTEGER.map(lambda n: (f"\\boxed{{{n}}}", n, True)),
    INTEGER.map(lambda n: (f"x = {n}", n, True)),
    INTEGER.map(lambda n: (f"The answer is {n}.", n, True)),
    INTEGER.map(lambda n: (f"{n} apples", n, True)),
    st.tuples(INTEGER, SMALL).map(lambda t: (f"{t[0]}/{t[1]}", Fraction(t[0], t[1]), True)),
    st.tuples(INTEGER, SMALL).map(lambda t: (f"\\frac{{{t[0]}}}{{{t[1]}}}", Fraction(t[0], t[1]), True)),
    st.tuples(st.integers(-999, 999), SMALL, SMALL).filter(lambda t: t[1] < t[2]).map(
        lambda t: (f"{t[0]}\\frac{{{t[1]}}}{{{t[2]}}}", (1 if t[0] >= 0 else -1) * (abs(t[0]) + Fraction(t[1], t[2])), True)),
    st.tuples(st.integers(-999, 999), st.sampled_from(sorted(VULGAR))).map(
        lambda t: (f"{t[0]}{t[1]}", (1 if t[0] >= 0 else -1) * (abs(t[0]) + VULGAR[t[1]]), False)),
    st.tuples(st.integers(0, 20), st.integers(0, 6), st.booleans()).map(
        lambda t: (("-" if t[2] else "") + f"{t[0]}^{{{t[1]}}}", (-1 if t[2] else 1) * t[0] ** t[1], True)),
    st.tuples(st.integers(0, 20), st.integers(0, 9)).map(lambda t: (f"{t[0]}^{t[1]}", t[0] ** t[1], True)),
    st.tuples(st.integers(0, 20), st.integers(0, 9)).map(
        lambda t: (f"{t[0]}{SUPERSCRIPTS[t[1]]}", t[0] ** t[1], False)),
    st.tuples(SMALL, st.integers(-9, 9)).map(lambda t: (f"{t[0]} \\times 10^{{{t[1]}}}", t[0] * Fraction(10) ** t[1], True)),
    st.tuples(SMALL, st.integers(-9, 9)).map(lambda t: (f"{t[0]}e{t[1]}", t[0] * Fraction(10) ** t[1], False)),
)
DECORATED = st.tuples(INTEGER, st.sampled_from([
    "{}!", "{}x", "{}_000", "{}e5e5", "\\sqrt{{{}}}", "{}\\pi", "{}m", "{}M", "({})^2", "x/{}", "{}/x", "{}\u2082",
    "\\frac{{x}}{{{}}}", "{}^{{\\frac{{1}}{{2}}}}", "{}bn", "{}pi", "{} million", "{}k", "{} dozen", "{} Thousand",
])).map(lambda t: (t[1].format(t[0]), t[0]))
SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
