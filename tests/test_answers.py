"""Answer normalisation, shared by the datasets and the rewards."""

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.data.answers import answers_match, format_number, last_number, normalize_answer, parse_number


@pytest.mark.parametrize("text, expected", [
    ("1,234", "1234"),
    ("$18", "18"),
    ("18.00", "18"),
    ("-3", "-3"),
    ("\u22123", "-3"),  # unicode minus sign
    ("3/4", "0.75"),
    ("0.75", "0.75"),
    (r"\boxed{18}", "18"),
    ("18 dollars", "18"),
    ("18.", "18"),
    ("The answer is 18.", "18"),
    ("$1,234.50", "1234.5"),
    ("x = 18", "18"),
    ("3 + 4 = 7", "7"),
    (r"\frac{1}{3}", "1/3"),
    (r"$\boxed{\dfrac{3}{4}}$", "0.75"),
    (r"\boxed{18 \text{ dollars}}", "18"),
    ("50%", "50"),
    (".5", "0.5"),
    ("18 (18 dollars)", "18"),  # the same number twice is still one answer
    ("\u0661\u0668", "18"),  # Arabic-Indic digits
    ("\uff11\uff18", "18"),  # fullwidth digits
    ("  7\n", "7"),
])
def test_normalises_the_usual_spellings(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "no number here", "18 or 20", "3,4", "1,2345", "1/0", "5-3", None, b"18", [18], {"a": 1}, True,
    "9" * 5000,  # more digits than int() accepts: no answer, and no exception
])
def test_no_single_number_is_none(text):
    assert parse_number(text) is None
    assert normalize_answer(text) is None


def test_numbers_as_python_numbers():
    assert parse_number(18) == 18 and parse_number(0.1) == Fraction(1, 10) and parse_number(Fraction(3, 4)) == Fraction(3, 4)
    assert parse_number(float("nan")) is None and parse_number(float("inf")) is None


def test_400_digit_numbers_are_exact():
    big = "1" + "0" * 399
    assert parse_number(big) == 10**399
    assert normalize_answer(big + ".00") == big
    assert not answers_match(big + "1", big)
    assert answers_match(f"{int(big):,}", big)


@pytest.mark.parametrize("predicted, gold, same", [
    ("18.00", "18", True), ("$18", "18", True), ("3/4", "0.75", True), ("1,234", "1234", True),
    ("\u22123", "-3", True), ("17", "18", False), ("", "18", False), (None, "18", False),
    ("0.333", "1/3", False),  # exact, not approximately equal
    ("Paris.", "paris", True), ("", "", False),  # non-numeric gold: folded text equality
])
def test_answers_match(predicted, gold, same):
    assert answers_match(predicted, gold) is same


def test_last_number_is_lenient():
    assert last_number("So 3 + 4 = 7, and 7 apples in all.") == 7
    assert last_number("<answer>7</answer> or maybe 8") == 8
    assert last_number("nothing") is None and last_number(None) is None


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.fractions(max_denominator=10**6))
def test_format_then_parse_round_trips(value):
    assert parse_number(format_number(value)) == value


def test_every_gsm8k_test_answer_parses(gsm8k_dir):
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 1319
    golds = [row["answer"].rsplit("####", 1)[1] for row in rows]
    unparsed = [g for g in golds if parse_number(g) is None]
    assert unparsed == []
    assert normalize_answer(" 1,450,000") == "1450000" and any("," in g for g in golds)
