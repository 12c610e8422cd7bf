"""Issue 27, "silent wrong numbers and data": each case read a different number, read twice, or swapped the
user's data for other problems on commit 5377e78; here it is read exactly, refused, or read once."""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import pytest
from errors import one_line_fix

from helpers.data.answers import last_number, normalize_answer, parse_number
from helpers.data.rows import DataUnavailableError, NoUsableRowsError

# ---------------------------------------------------------------------------------------------
# Numbers in answers: what a careful grader reads, or None; never a different number
# ---------------------------------------------------------------------------------------------

READ = [  # text -> the number it states (5377e78 read the number in the comment)
    ("-$5", -5),  # 5: the sign before a currency symbol was dropped
    ("\u2212$5.00", -5),  # 5
    ("-\u20ac5", -5),  # 5
    (r"-\$5", -5),  # 5
    ("10\u00b2", 100),  # 10: the superscript was not a digit
    ("10\u207b\u00b2", Fraction(1, 100)),  # 10
    ("1\u00bd", Fraction(3, 2)),  # 1: the vulgar fraction was dropped
    ("2\u2153", Fraction(7, 3)),  # 2
    (r"1\frac{1}{2}", Fraction(3, 2)),  # 11/2: the whole number glued to the numerator
    (r"-2 \frac{1}{4}", Fraction(-9, 4)),  # None
    ("10^{2}", 100),  # None
    (r"1.5 \times 10^3", 1500),  # None
]
REFUSED = [  # text that states no single exact number (5377e78 read the number in the comment)
    r"\sqrt{16}",  # 16
    "\u221a16",  # 16
    "1_000",  # 1
    "18!",  # 18: a factorial, or an exclamation?
    "3x",  # 3
    "1e5e5",  # 100000
    r"2\pi",  # 2
    "5m",  # 5: metres or millions?
    "$2M",  # 2
    r"\frac{x}{2}",  # 2
    r"\frac{1}{x}",  # 1
    "x/2",  # 2
    "(5)^2",  # None, but the lenient last_number read 2
    "10\u2082",  # 10: a subscript digit
    "2 million",  # 2: and 2,000,000 is wrong where the question asks "in millions" (GSM8K does)
    "1.5k",  # 3/2
    "7 dozen",  # 7: right for "how many dozen?", wrong for "how many eggs?"
    "$2k",  # 2
]


@pytest.mark.parametrize("text, value", READ, ids=[t for t, _ in READ])
def test_numbers_are_read_as_a_careful_grader_reads_them(text, value):
    assert parse_number(text) == value
    assert parse_number(f"<the answer> {text} </the answer>".split(">", 1)[1].rsplit("<", 1)[0]) == value


@pytest.mark.parametrize("text", REFUSED)
def test_numbers_that_are_part_of_something_else_are_refused(text):
    assert parse_number(text) is None
    assert normalize_answer(text) is None
    assert last_number(f"3 + 4 = 7, so {text}") is None  # the lenient reading refuses it too, never 7 or its digits


def test_a_wrong_sign_or_scale_no_longer_earns_the_correctness_reward():
    from helpers.data.gsm8k import extract_gsm8k_answer
    from helpers.rewards.functions import closeness_reward, correctness_reward, lenient_accuracy

    done = "<reasoning>r</reasoning><answer>{}</answer>"
    assert correctness_reward([done.format("-$5"), done.format("$5")], answer=["5", "5"]) == [0.0, 1.0]
    assert correctness_reward([done.format("-$5")], answer=["-5"]) == [1.0]
    assert correctness_reward([done.format("2 million"), done.format("18!")], answer=["2", "18"]) == [0.0, 0.0]
    assert closeness_reward([done.format("1.5k"), done.format("3x")], answer=["1.5", "3"]) == [0.0, 0.0]
    assert lenient_accuracy(["so 10\u00b2"], answer=["10"]) == [0.0]
    assert extract_gsm8k_answer("#### -$5") == "-5" and extract_gsm8k_answer("#### 18!") is None


def test_equal_big_exponents_are_compared_without_building_each_one():
    """The probe's slowest reward input: hundreds of 1e3999 (each a 4,000-digit integer to build). Equal
    decimals are now compared by their digits, so the text reads as its one number, at the cost of one."""
    text = "1e3999 " * 585
    assert parse_number(text) == 10**3999
    assert parse_number(text + "1e3998") is None
    assert parse_number("1e3999/7 " * 585) is None  # fractions this big, repeated: unreadable, not slow


# ---------------------------------------------------------------------------------------------
# combined_reward reads each completion once
# ---------------------------------------------------------------------------------------------


def test_combined_reward_reads_the_completion_and_the_gold_once(monkeypatch):
    """5377e78 ran each of its four parts on the text: four tag parses and four number parses (the answer
    block and the gold, twice each). Now one tag parse and two number parses."""
    import helpers.data.answers as answers
    import helpers.rewards.completions as completions
    import helpers.rewards.functions as functions
    from helpers.data.chat_template import ReasoningFormat
    from helpers.rewards.functions import combined_reward

    counts = {"tags": 0, "numbers": 0}
    parse_tags, parse_number_ = ReasoningFormat.parse, answers.parse_number

    def counting_parse(self, text):
        counts["tags"] += 1
        return parse_tags(self, text)

    def counting_parse_number(text):
        counts["numbers"] += 1
        return parse_number_(text)

    monkeypatch.setattr(ReasoningFormat, "parse", counting_parse)
    for module in (answers, functions, completions):  # wherever the rewards (and answers_match) look it up
        monkeypatch.setattr(module, "parse_number", counting_parse_number, raising=False)
    completion = "<reasoning>3 + 4 = 7</reasoning>\n<answer>7</answer>"
    assert combined_reward([completion, completion], answer=["7", "8"]) == [3.5, 1.0 + 0.5 * (1 - 1 / 8 / 0.5)]
    assert counts == {"tags": 2, "numbers": 4}  # per completion: 1 tag parse, the answer block and the gold


# ---------------------------------------------------------------------------------------------
# load_problems: a GSM8K path that cannot be used is refused, never swapped for synthetic problems
# ---------------------------------------------------------------------------------------------

ROW = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}




@pytest.fixture
def no_local_copy_no_hub(monkeypatch):
    import helpers.data.gsm8k as gsm8k
    import helpers.data.problems as problems

    monkeypatch.delenv("GRPO_GSM8K_DIR", raising=False)
    monkeypatch.setattr(problems, "default_gsm8k_dir", lambda: None)
    monkeypatch.setattr(gsm8k, "hub_reachable", lambda: False)


def test_a_data_file_that_is_not_utf8_is_refused(tmp_path, no_local_copy_no_hub):
    from helpers.data.problems import load_problems

    bad = tmp_path / "train.jsonl"
    second = '{"question": "caf\xe9", "answer": "#### 1"}'.encode("latin-1")  # é as one latin-1 byte
    bad.write_bytes(json.dumps(ROW).encode() + b"\n" + second)
    offset = len(json.dumps(ROW)) + 1 + second.index(b"\xe9")
    for path in (tmp_path, bad):
        with pytest.raises(DataUnavailableError) as err:
            load_problems("train", path=path)
        one_line_fix(err, str(bad), "not UTF-8", f"byte {offset} is 0xe9")
    from helpers.data.gsm8k import check_gsm8k_path

    with pytest.raises(DataUnavailableError) as err:
        check_gsm8k_path(tmp_path)
    one_line_fix(err, "not UTF-8")


@pytest.mark.parametrize("case", ["missing", "folder without train.jsonl", "empty string", "unreadable"])
def test_a_path_the_user_gave_is_refused_in_one_line_before_anything_else(tmp_path, no_local_copy_no_hub, case,
                                                                         monkeypatch):
    from helpers.data.problems import load_problems

    (tmp_path / "test.jsonl").write_text(json.dumps(ROW) + "\n")
    path, needle = {"missing": (tmp_path / "nonexistent", "does not exist"),
                    "folder without train.jsonl": (tmp_path, "has no train.jsonl"),
                    "empty string": ("", "is not a path"),
                    "unreadable": (tmp_path / "test.jsonl", "cannot read")}[case]
    if case == "unreadable":  # root reads any file whatever its mode: refuse opening this one instead
        import builtins
        from pathlib import Path

        def refusing(real):
            def opener(file, *args, **kwargs):
                if str(file) == str(path):
                    raise PermissionError(13, "Permission denied", str(file))
                return real(file, *args, **kwargs)
            return opener

        monkeypatch.setattr(builtins, "open", refusing(builtins.open))
        monkeypatch.setattr(Path, "open", refusing(Path.open))
    with pytest.raises(DataUnavailableError) as err:
        load_problems("train", path=path)
    one_line_fix(err, needle)
    from helpers.data.gsm8k import check_gsm8k_path

    with pytest.raises(DataUnavailableError) as err:
        check_gsm8k_path(path)
    one_line_fix(err, needle)


def test_check_gsm8k_path_passes_a_good_path_and_refuses_a_file_without_usable_rows(tmp_path):
    from helpers.data.gsm8k import check_gsm8k_path

    good = tmp_path / "train.jsonl"
    good.write_text("\n" + "{not json\n" + json.dumps(ROW) + "\n")
    check_gsm8k_path(tmp_path)
    check_gsm8k_path(good)
    check_gsm8k_path(None)  # no path given: nothing to check
    bom = tmp_path / "bom.jsonl"  # saved by an editor that writes a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n")
    check_gsm8k_path(bom)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(NoUsableRowsError) as err:
        check_gsm8k_path(bad)
    one_line_fix(err, "no usable row", str(bad))


def test_a_gsm8k_dir_variable_that_names_nothing_is_refused(tmp_path, monkeypatch):
    from helpers.data.gsm8k import default_gsm8k_dir
    from helpers.data.problems import load_problems

    monkeypatch.setenv("GRPO_GSM8K_DIR", str(tmp_path / "gone"))
    for call in (default_gsm8k_dir, lambda: load_problems("train")):
        with pytest.raises(DataUnavailableError) as err:
            call()
        one_line_fix(err, "GRPO_GSM8K_DIR", "gone", "unset it")


def test_synthetic_problems_only_without_path_local_copy_or_hub_and_it_says_so(no_local_copy_no_hub, caplog):
    from helpers.data.problems import load_problems

    with caplog.at_level(logging.WARNING):
        ds, source = load_problems("train", n=5)
    assert len(ds) == 5 and "synthetic" in source
    assert "instead of GSM8K: no path given, no local copy" in source and "hub is not reachable" in source
    assert "using synthetic problems" in caplog.text


def test_a_local_copy_is_used_as_the_default_and_must_be_usable(tmp_path, monkeypatch):
    from helpers.data.problems import load_problems

    monkeypatch.setenv("GRPO_GSM8K_DIR", str(tmp_path))
    (tmp_path / "train.jsonl").write_text(json.dumps(ROW) + "\n")
    ds, source = load_problems("train")
    assert ds["answer"] == ["7"] and source.startswith("GSM8K train from")
    with pytest.raises(DataUnavailableError) as err:  # a local copy without the split is not swapped either
        load_problems("test")
    one_line_fix(err, "has no test.jsonl")


def test_held_out_sets_refuse_a_named_gsm8k_path(tmp_path):
    from helpers.evaluate.held_out import held_out_sets

    with pytest.raises(DataUnavailableError) as err:
        held_out_sets(3, gsm8k_path=tmp_path / "nonexistent", profile="ci")
    one_line_fix(err, "does not exist")
