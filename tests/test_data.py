"""Datasets: GSM8K (local JSONL; the hub is offline here), synthetic problems, filtering, splits."""

import json
import re

import pytest

from helpers.data import problems as data
from helpers.data.answers import normalize_answer
from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.gsm8k import GSM8K_DIR_ENV, default_gsm8k_dir, extract_gsm8k_answer, gsm8k_rows, load_gsm8k
from helpers.data.rows import DataUnavailableError
from helpers.data.synthetic import _ITEMS, _PEOPLE, held_out_question, synthetic_dataset
from helpers.rewards.reward_set import reward_functions

COLUMNS = ["prompt", "completion", "answer", "question", "reasoning", "difficulty", "source"]
STEP = re.compile(r"(-?\d+) ([-+*/]) (\d+) = (-?\d+)\.$")


def gold_scores(ds):
    """Every reward on each row's own worked solution (the SFT target)."""
    funcs, _ = reward_functions()
    completions = [c[0]["content"] for c in ds["completion"]]
    return {f.__name__: f(completions=completions, answer=ds["answer"]) for f in funcs}


@pytest.mark.parametrize("text, expected", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
    ("#### 1,600", "1600"), ("####  -3 ", "-3"), ("a #### 1 #### 2", "2"),
    ("no marker", None), ("#### ", None), ("#### twelve", None), (None, None), (42, None),
])
def test_extract_gsm8k_answer(text, expected):
    assert extract_gsm8k_answer(text) == expected


def test_rows_without_a_usable_answer_are_dropped_and_counted():
    records = [
        {"question": "Q1?", "answer": "1+1=<<1+1=2>>2\n#### 2"},
        {"question": "Q2?", "answer": "no marker"},
        {"question": "Q3?", "answer": "#### lots"},
        {"question": "", "answer": "#### 3"},
        {"answer": "#### 3"},
        {"question": "Q6?", "answer": None},
        None, "a string", 7,
    ]
    rows, dropped = gsm8k_rows(records)
    assert dropped == 8 and len(rows) == 1
    row = rows[0]
    assert list(row) == COLUMNS
    assert row["answer"] == "2" and row["reasoning"] == "1+1=2" and row["difficulty"] == 1 and row["source"] == "gsm8k"
    assert row["completion"] == [{"role": "assistant", "content": DEFAULT_FORMAT.format("1+1=2", "2")}]


def test_local_jsonl_with_bad_lines_never_crashes(tmp_path):
    lines = [json.dumps({"question": "A has 2 and 3 more?", "answer": "2+3=<<2+3=5>>5\n#### 5"}),
             "{not json", "", json.dumps({"question": "B?", "answer": "#### ?"}),
             json.dumps({"question": "C has $1,000?", "answer": "#### 1,000"})]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_gsm8k("train", tmp_path)
    assert ds["answer"] == ["5", "1000"]
    assert "2 rows, 2 dropped" in ds.info.description
    assert load_gsm8k("train", tmp_path / "train.jsonl", limit=1).num_rows == 1
    with pytest.raises(DataUnavailableError, match="fix:"):
        load_gsm8k("test", tmp_path)
    with pytest.raises(ValueError, match="fix:"):
        load_gsm8k("validation", tmp_path)


def test_the_hub_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as err:
        load_gsm8k("test")
    assert "\n" not in str(err.value) and "fix:" in str(err.value)


def test_real_gsm8k_test_split(gsm8k_dir):
    ds = load_gsm8k("test", gsm8k_dir)
    assert ds.num_rows == 1319 and ds.column_names == COLUMNS
    assert "0 dropped" in ds.info.description
    assert all(normalize_answer(a) == a for a in ds["answer"])
    assert ds[0]["answer"] == "18" and "<<" not in ds[0]["reasoning"]
    assert [m["role"] for m in ds[0]["prompt"]] == ["system", "user"]
    scores = gold_scores(ds)  # the reference solutions are correct and in the format: the rewards agree
    assert set(scores["strict_format_reward"]) == {1.0} and set(scores["correctness_reward"]) == {1.0}


def test_rows_are_conversational_for_trl():
    from trl.data_utils import is_conversational

    row = synthetic_dataset(1)[0]
    # TRL looks at whichever of prompt/completion it meets first: both must be messages
    for key in ("prompt", "completion"):
        assert is_conversational({key: row[key]})
    assert is_conversational(row)


def check_arithmetic(row):
    """Recompute every step of a synthetic worked solution: it must chain to the answer."""
    value = None
    for line in row["reasoning"].splitlines():
        a, op, b, c = STEP.search(line).groups()
        a, b, c = int(a), int(b), int(c)
        assert value is None or a == value, line
        assert {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op] == c, line
        assert op != "/" or a % b == 0, line
        value = c
    assert str(value) == row["answer"]
    assert len(row["reasoning"].splitlines()) == row["difficulty"]


def test_synthetic_problems_are_right_and_sized_by_level():
    ds = synthetic_dataset(600, seed=3)
    assert ds.column_names == COLUMNS and set(ds["source"]) == {"synthetic"}
    assert {d: ds["difficulty"].count(d) for d in (1, 2, 3)} == {1: 200, 2: 200, 3: 200}
    for row in ds:
        check_arithmetic(row)
        assert 0 < int(row["answer"]) < 200
    assert len(set(ds["question"])) == 600
    scores = gold_scores(ds)
    assert set(scores["strict_format_reward"]) == {1.0} and set(scores["correctness_reward"]) == {1.0}
    level1 = synthetic_dataset(50, difficulty=1)
    assert set(level1["difficulty"]) == {1}
    assert max(len(q.split()) for q in level1["question"]) < 30  # short prompts


def test_synthetic_is_deterministic():
    a, b = synthetic_dataset(50, seed=7), synthetic_dataset(50, seed=7)
    assert a.to_list() == b.to_list()
    assert a["question"] != synthetic_dataset(50, seed=8)["question"]
    with pytest.raises(ValueError, match="fix:"):
        synthetic_dataset(5, difficulty=4)
    with pytest.raises(ValueError, match="fix:"):
        synthetic_dataset(5, split="validation")


def test_synthetic_train_and_test_never_share_a_problem():
    train = synthetic_dataset(2000, difficulty=1, split="train", seed=0)
    test = synthetic_dataset(200, difficulty=1, split="test", seed=0)
    other_seed = synthetic_dataset(200, difficulty=1, split="test", seed=5)
    assert not set(train["question"]) & set(test["question"])
    assert not set(train["question"]) & set(other_seed["question"])
    assert all(held_out_question(q) for q in test["question"])


def test_custom_format_and_system_prompt():
    fmt = ReasoningFormat("<think>", "</think>", "<final>", "</final>")
    row = synthetic_dataset(1, fmt=fmt, system="Be brief.")[0]
    assert row["prompt"][0]["content"] == "Be brief."
    assert fmt.parse(row["completion"][0]["content"]).strict


def test_split_held_out_is_deterministic_disjoint_and_deduplicated():
    base = synthetic_dataset(30)
    ds = base.select(list(range(30)) + [0, 1, 2])  # three repeated problems
    parts = data.split_held_out(ds, 10, seed=1)
    assert parts["train"].num_rows == 20 and parts["test"].num_rows == 10
    assert not set(parts["train"]["question"]) & set(parts["test"]["question"])
    assert parts["test"]["question"] == data.split_held_out(ds, 10, seed=1)["test"]["question"]
    assert parts["test"]["question"] != data.split_held_out(ds, 10, seed=2)["test"]["question"]
    assert data.split_held_out(ds, 0.2)["test"].num_rows == 6
    with pytest.raises(ValueError, match="fix:"):
        data.split_held_out(ds, 31)


def test_prompt_length_filter(tokenizer):
    ds = synthetic_dataset(30, seed=2)
    lengths = data.prompt_lengths(ds, tokenizer)
    assert all(60 < n < 130 for n in lengths)
    cut = sorted(lengths)[15]
    kept = data.filter_prompt_length(ds, tokenizer, cut)
    assert kept.num_rows == sum(n <= cut for n in lengths)
    assert all(n <= cut for n in data.prompt_lengths(kept, tokenizer))
    assert data.filter_prompt_length(ds, tokenizer, 10_000).num_rows == 30


def test_load_problems_prefers_local_gsm8k(gsm8k_dir):
    ds, source = data.load_problems("test", path=gsm8k_dir, limit=5)
    assert ds.num_rows == 5 and source.startswith("GSM8K test from")


def test_load_problems_falls_back_to_synthetic(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(data, "default_gsm8k_dir", lambda: None)
    ds, source = data.load_problems("test", n=20)
    assert ds.num_rows == 20 and "synthetic" in source and "test part" in source
    with pytest.raises(DataUnavailableError, match="has no train.jsonl"):  # a folder you name is never swapped
        data.load_problems("train", path=tmp_path, n=20)


def test_default_gsm8k_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(GSM8K_DIR_ENV, str(tmp_path))
    assert default_gsm8k_dir() == tmp_path


def test_paraphrased_problems_keep_the_arithmetic_in_other_words():
    para = synthetic_dataset(300, split="test", seed=0, style="paraphrased")
    plain = synthetic_dataset(300, split="test", seed=0)
    for row in para:
        check_arithmetic(row)
    assert {d: para["difficulty"].count(d) for d in (1, 2, 3)} == {1: 100, 2: 100, 3: 100}
    assert set(gold_scores(para)["correctness_reward"]) == {1.0}
    # no training name, item or sentence template appears in the paraphrased questions
    train_words = {p for p, _ in _PEOPLE} | set(_ITEMS) | {
        "Then", "in each", "shares", "have now", "buys", "finds", "gets", "picks", "gives", "loses", "sells", "uses"}
    for q in para["question"]:
        words = set(q.replace(".", " ").replace("?", " ").replace(",", " ").split())
        assert not words & train_words and not any(" " in w and w in q for w in train_words), q
    assert not set(para["question"]) & set(plain["question"])
    assert "paraphrased wording" in para.info.description
    with pytest.raises(ValueError, match="fix: use one of"):
        synthetic_dataset(3, style="reworded")
