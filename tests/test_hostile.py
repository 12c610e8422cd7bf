"""Hostile input (issue 16): no hang, no silent wrong result, one line with cause and fix.

Reward functions and answer parsers run in linear time (timed at two sizes: the ratio, not an absolute
time); numbers parse as documented; bad rows and bad gold answers are dropped and counted.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import pytest
from hostile_inputs import BUILDERS, TooSlow, per_call, per_call_pair, targets

from helpers.answers import last_number, normalize_answer, parse_number

SMALL, LARGE = 2048, 8192  # 4x the input may take at most MAX_RATIO x the time (linear: ~4x)
MAX_RATIO = 8.0


def _ratio(fn, small, large, **kwargs) -> float:
    t_small, t_large = per_call_pair(fn, small, large, **kwargs)
    return t_large / t_small


@pytest.fixture(scope="module")
def functions():
    return targets()


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_reward_and_parser_time_is_linear(builder, functions):
    small, large = BUILDERS[builder](SMALL), BUILDERS[builder](LARGE)
    assert (len(small), len(large)) == (SMALL, LARGE)
    slow = {}
    for name, fn in functions.items():
        try:
            ratio = _ratio(fn, small, large, budget=0.003, repeats=3)
            for budget in (0.02, 0.05):  # longer looks before calling it super-linear (the machine may be busy)
                if ratio > MAX_RATIO:
                    ratio = min(ratio, _ratio(fn, small, large, budget=budget, repeats=5))
        except TooSlow as exc:
            slow[name] = str(exc)
            continue
        if ratio > MAX_RATIO:
            slow[name] = f"{ratio:.1f}x the time for 4x the input"
    assert not slow, f"super-linear on {builder!r}: {slow}"


def test_the_cubic_frac_pattern_is_gone():
    """``\\frac{`` + 8,000 spaces took minutes (cubic); now well under a second in every reward."""
    text = "\\frac{" + " " * 8000
    assert parse_number(text) is None
    from helpers.rewards import reward_functions

    for f in reward_functions(combined=True).funcs:
        assert per_call(lambda t: f(completions=[f"<answer>{t}</answer>"], answer=["1"]), text, limit=2.0, budget=0.001, repeats=1) < 0.5


@pytest.mark.parametrize("text, value", [
    ("7e9", 7 * 10**9), ("7E9", 7 * 10**9), ("2.5e-3", Fraction(1, 400)), ("-3e2", -300), ("1,000e3", 10**6),
    (".5e1", 5), ("1e400", 10**400), ("x = 7e9", 7 * 10**9), ("\\boxed{7e9}", 7 * 10**9),
    (r"\frac{ 3 }{ 4 }", Fraction(3, 4)), ("\\dfrac {1}{2}", Fraction(1, 2)),
])
def test_exponents_are_read_to_their_value(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["0x7", "0X1F", "0b101", "0o17", "1e99999", "1e-5000", "5e123456789012",
                                  "0x7 apples", "the answer is 0xff"])
def test_hex_and_unreadable_exponents_are_not_numbers(text):
    """Never their leading digits: ``0x7`` is not 0, ``1e99999`` is not 1."""
    assert parse_number(text) is None and normalize_answer(text) is None and last_number(text) is None


def test_exponent_answers_score_their_value():
    from helpers.rewards import closeness_reward, correctness_reward, lenient_accuracy

    done = "<reasoning>r</reasoning><answer>{}</answer>"
    assert correctness_reward([done.format("7e9"), done.format("7")], answer=["7000000000", "7000000000"]) == [1.0, 0.0]
    assert correctness_reward([done.format("0x7")], answer=["7"]) == [0.0]
    assert closeness_reward([done.format("7e9")], answer=["7"]) == [0.0]
    assert lenient_accuracy(["so 0x7"], answer=["0"]) == [0.0]


def test_gsm8k_gold_that_cannot_be_read_exactly_is_dropped_and_counted(tmp_path, caplog):
    from helpers.data import extract_gsm8k_answer, gsm8k_rows, load_gsm8k

    assert extract_gsm8k_answer("#### 1e400") == "1" + "0" * 400  # read exactly, not as "1"
    assert extract_gsm8k_answer("#### 0x7") is None and extract_gsm8k_answer("#### 1e99999") is None
    records = [{"question": "q1", "answer": "#### 0x7"}, {"question": "q2", "answer": "#### 1e99999"},
               {"question": "q3", "answer": "#### 12"}, {"question": "q4", "answer": "#### 1e3"}]
    rows, dropped = gsm8k_rows(records)
    assert [r["answer"] for r in rows] == ["12", "1000"] and dropped == 2
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    with caplog.at_level(logging.WARNING):
        ds = load_gsm8k("train", tmp_path)
    assert len(ds) == 2 and "2 dropped" in ds.info.description and "dropped 2 rows" in caplog.text
