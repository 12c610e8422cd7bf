"""Reward functions: TRL's calling convention, the known pitfalls, and that nothing makes them fail."""

import math
import pickle
import time
import warnings
from fractions import Fraction

import pytest
from answer_oracle import DECORATED, SPELLED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.data.answers import format_number, parse_number
from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.rewards.functions import (
    DEFAULT_WEIGHTS,
    ApproxFormat,
    Closeness,
    Correctness,
    StrictFormat,
    accuracy,
    approx_format_reward,
    closeness_reward,
    combined_reward,
    correctness_reward,
    format_compliance,
    lenient_accuracy,
    strict_format_reward,
)
from helpers.rewards.reward_set import reward_functions
from helpers.rewards.tables import format_table, score_table

GOOD = "<reasoning>\nTom has 3 apples.\nHe buys 4 more: 3 + 4 = 7.\n</reasoning>\n<answer>7</answer>"
ALL = [strict_format_reward, approx_format_reward, correctness_reward, closeness_reward,
       combined_reward, format_compliance, accuracy, lenient_accuracy]
NAMES = ["strict_format_reward", "approx_format_reward", "correctness_reward", "closeness_reward",
         "format_compliance", "accuracy", "lenient_accuracy"]


def scores(text, answer="7", **kw):
    """Every default reward's score for one completion."""
    return {f.__name__: f([text], answer=[answer], **kw)[0] for f in ALL}


def trl_call(func, completions, answers):
    """Call ``func`` exactly as TRL 1.15's GRPOTrainer._calculate_rewards does."""
    return func(prompts=[[{"role": "user", "content": "q"}]] * len(completions), completions=completions,
                completion_ids=[[1, 2]] * len(completions), answer=answers, question=["q"] * len(completions),
                difficulty=[1] * len(completions), trainer_state=None, log_extra=lambda *a: None,
                log_metric=lambda *a: None)


# --- names, signature, factory ---------------------------------------------------------------------


def test_names_as_trl_logs_them():
    from trl.trainer.utils import get_callable_name

    funcs, weights = reward_functions()
    assert [get_callable_name(f) for f in funcs] == NAMES
    assert weights == [0.5, 0.5, 2.0, 0.5, 0.0, 0.0, 0.0]
    funcs, weights = reward_functions(combined=True)
    assert [get_callable_name(f) for f in funcs] == ["combined_reward", *NAMES]
    assert weights == [1.0] + [0.0] * 7
    assert reward_functions().names == NAMES


def test_weights_fit_grpo_config():
    from trl import GRPOConfig

    funcs, weights = reward_functions({"closeness_reward": 0.0})
    config = GRPOConfig(output_dir="/tmp/unused", reward_weights=weights, report_to=[], use_cpu=True)
    assert len(config.reward_weights) == len(funcs) and config.reward_weights[3] == 0.0


@pytest.mark.parametrize("weights, message", [
    ({"format": 1.0}, "unknown reward"), ({"correctness_reward": -1.0}, ">= 0"),
    ({"correctness_reward": math.nan}, ">= 0"), ({"correctness_reward": "2"}, ">= 0"),
])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message) as err:
        reward_functions(weights)
    assert "fix:" in str(err.value)


def test_trl_signature_strings_and_messages_agree():
    completions = [GOOD, "<answer>6</answer>", ""]
    as_messages = [[{"role": "assistant", "content": c}] for c in completions]
    for func in ALL:
        got = trl_call(func, completions, ["7"] * 3)
        assert got == trl_call(func, as_messages, ["7"] * 3)
        assert len(got) == 3 and all(type(v) is float for v in got)
    multimodal = [[{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]]
    assert correctness_reward(multimodal, answer=["7"]) == [1.0]


def test_separate_and_combined_give_the_same_total():
    completions = [GOOD, GOOD + " extra", "<reasoning>r</reasoning><answer>6</answer>", "7", None]
    answers = ["7"] * 5
    separate = reward_functions().scores(completions, answers)
    combined = reward_functions(combined=True).scores(completions, answers)
    assert separate["reward"] == pytest.approx(combined["reward"])
    assert combined["reward"] == pytest.approx(combined["combined_reward"])
    assert separate["reward"][0] == 3.5  # the maximum: 0.5 + 0.5 + 2.0 + 0.5


def test_rewards_are_picklable_and_keep_their_names():
    """TRL's async rollout worker sends reward functions to a child process."""
    for func in reward_functions(combined=True).funcs:
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == func.__name__
        assert clone([GOOD], answer=["7"]) == func([GOOD], answer=["7"])


def test_missing_answer_column_warns_and_scores_zero():
    with pytest.warns(UserWarning, match="no 'answer' column.*fix:"):
        assert Correctness()([GOOD]) == [0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert strict_format_reward([GOOD]) == [1.0]  # format rewards need no answer


def test_trl_own_reward_loop_runs_them():
    """TRL 1.15's GRPOTrainer._calculate_rewards, on a stand-in trainer: columns, messages, None content."""
    import types
    from collections import defaultdict

    import torch
    from trl import GRPOTrainer

    from helpers.data.synthetic import synthetic_dataset

    funcs, weights = reward_functions()
    rows = [dict(r) for r in synthetic_dataset(2) for _ in range(2)]  # 2 prompts x 2 generations
    gold = [rows[0]["completion"][0]["content"], "junk", rows[2]["completion"][0]["content"], None]
    completions = [[{"role": "assistant", "content": c}] for c in gold]
    metrics = defaultdict(list)
    trainer = types.SimpleNamespace(
        accelerator=types.SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        reward_funcs=funcs, reward_processing_classes=[None] * len(funcs),
        reward_func_names=[f.__name__ for f in funcs], state=types.SimpleNamespace(global_step=0),
        environments=None, args=types.SimpleNamespace(report_to=[]),
        _log_completion_extra=lambda column, values: None, _log_metric=lambda name, value: metrics[name].append(value))
    per_func = GRPOTrainer._calculate_rewards(trainer, rows, [r["prompt"] for r in rows], completions, [[1]] * 4)
    assert per_func.tolist() == [[1.0] * 7, [0.0] * 7, [1.0] * 7, [0.0] * 7]
    total = (per_func * torch.tensor(weights)).nansum(dim=1)  # what TRL trains on
    assert total.tolist() == [3.5, 0.0, 3.5, 0.0]


# --- the pitfalls users report against the anchors -----------------------------------------------


def test_pitfall_multiline_reasoning():
    """A format regex without re.DOTALL never matches reasoning that spans lines."""
    assert "\n" in GOOD.split("</reasoning>")[0]
    s = scores(GOOD)
    assert s["strict_format_reward"] == s["approx_format_reward"] == s["correctness_reward"] == 1.0


def test_pitfall_prefilled_opening_tag():
    """The completion starts after a prefilled <reasoning>: rewards built with prefilled=True score it
    like the full text; the default (no prefill) correctly refuses a missing opening tag."""
    after_prefill = GOOD.removeprefix(DEFAULT_FORMAT.prefill_text)
    assert not after_prefill.startswith("<reasoning>")
    assert scores(after_prefill)["strict_format_reward"] == 0.0  # the default decision: the model writes the tag
    funcs, _ = reward_functions(prefilled=True)
    prefilled = {f.__name__: f([after_prefill], answer=["7"])[0] for f in funcs}
    assert prefilled["strict_format_reward"] == prefilled["approx_format_reward"] == 1.0
    assert prefilled["correctness_reward"] == prefilled["format_compliance"] == prefilled["accuracy"] == 1.0
    # repeating the prefilled tag is a format error, not a free pass
    assert funcs[0]([GOOD], answer=["7"]) == [0.0]
    assert funcs[1]([GOOD], answer=["7"])[0] < 1.0


def test_pitfall_no_trailing_newline():
    assert not GOOD.endswith("\n")
    assert scores(GOOD)["strict_format_reward"] == 1.0
    assert scores(GOOD + "\n")["strict_format_reward"] == 1.0
    squeezed = "<reasoning>3 + 4 = 7</reasoning><answer>7</answer>"
    assert scores(squeezed)["strict_format_reward"] == 1.0


def test_pitfall_text_after_the_closing_tag():
    s = scores(GOOD + "\nI hope this helps! The answer is 8.")
    assert s["strict_format_reward"] == 0.0 and s["format_compliance"] == 0.0
    assert s["approx_format_reward"] == 0.875  # loses only the "nothing after" credit, not the whole length
    assert s["correctness_reward"] == 1.0  # the answer block is still right
    assert s["lenient_accuracy"] == 0.0  # but the last number is 8
    long_tail = scores(GOOD + " blah" * 10_000)
    assert long_tail["approx_format_reward"] == 0.875  # a long tail does not drive it negative


def test_pitfall_answer_repeated_in_the_reasoning():
    """Only the answer block counts: a right number in the reasoning does not earn correctness."""
    wrong = "<reasoning>\nMaybe 7? 3 + 4 = 7.\n</reasoning>\n<answer>8</answer>"
    s = scores(wrong)
    assert s["strict_format_reward"] == 1.0 and s["correctness_reward"] == 0.0 and s["accuracy"] == 0.0
    assert 0 < s["closeness_reward"] < 1
    right = "<reasoning>\nNot 8: 3 + 4 = 7.\n</reasoning>\n<answer>7</answer>"
    assert scores(right)["correctness_reward"] == 1.0
    echoed = "<reasoning>\n<answer>7</answer>\n</reasoning>\n<answer>7</answer>"
    s = scores(echoed)
    assert s["strict_format_reward"] == 0.0 and s["approx_format_reward"] < 1.0


@pytest.mark.parametrize("answer_text", ["7", "7.00", "$7", "7 apples", "7.", r"\boxed{7}", " 7 ", "14/2"])
def test_correct_answers_in_any_spelling(answer_text):
    text = f"<reasoning>3 + 4 = 7</reasoning><answer>{answer_text}</answer>"
    assert correctness_reward([text], answer=["7"]) == [1.0]


def test_closeness_is_graded_by_relative_error():
    texts = [f"<answer>{v}</answer>" for v in ("100", "90", "75", "50", "-100", "oops")]
    assert closeness_reward(texts, answer="100") == [1.0, 0.8, 0.5, 0.0, 0.0, 0.0]
    assert Closeness(tolerance=1.0)(["<answer>50</answer>"], answer="100") == [0.5]
    assert closeness_reward(["<answer>0.5</answer>"], answer="0") == [0.0]  # |gold| < 1 uses 1 as the scale
    with pytest.raises(ValueError, match="fix:"):
        Closeness(tolerance=0)


def test_approx_format_partial_credit_and_floor():
    assert approx_format_reward(["<reasoning>r</reasoning>"]) == [0.25]
    assert approx_format_reward(["<answer>7</answer>"]) == [0.5]  # two tags, a non-empty answer, nothing after
    spam = "<answer>7</answer>" * 50
    assert approx_format_reward([spam]) == [0.0]
    assert ApproxFormat(floor=-0.5)([spam]) == [-0.5]
    with pytest.raises(ValueError, match="fix:"):
        ApproxFormat(floor=2.0)


def test_custom_tags_reach_every_reward():
    fmt = ReasoningFormat("<think>", "</think>", "<final>", "</final>")
    funcs, _ = reward_functions(fmt=fmt)
    text = fmt.format("3 + 4 = 7", "7")
    assert [f([text], answer=["7"])[0] for f in funcs] == [1.0] * 7
    assert strict_format_reward([text]) == [0.0]


# --- robustness ------------------------------------------------------------------------------------

ODD = [
    None, "", " ", 7, 7.5, float("nan"), b"<answer>7</answer>", {"content": GOOD}, [], [{}], [{"content": None}],
    ["a", "b"], object(),
    "<reasoning>" * 1000, "<reasoning><reasoning>x</reasoning></reasoning><answer><answer>7</answer></answer>",
    "<reasoning>unclosed", "<reasoning>r</reasoning><answer>7", "</answer></reasoning><answer><reasoning>",
    "<reasoning>r</reasoning><answer>" + "9" * 400 + "</answer>",
    "<reasoning>r</reasoning><answer>" + "9" * 5000 + "</answer>",
    "<reasoning>r</reasoning><answer>-" + "1" * 400 + "/3</answer>",
    "<reasoning>r</reasoning><answer>\u0667</answer>",  # Arabic-Indic 7
    "<reasoning>r</reasoning><answer>\uff17</answer>",  # fullwidth 7
    "<reasoning>r</reasoning><answer>\u00b2</answer>",  # superscript 2: not a decimal digit
    "<reasoning>r</reasoning><answer>1e308</answer>", "<reasoning>r</reasoning><answer>inf</answer>",
    "<reasoning>r</reasoning><answer>NaN</answer>", "\x00\ud800", r"\boxed{" * 100,
]
GOLDS = ["7", "", None, "9" * 400, "-3", "nan", "inf", "abc", 7, float("nan")]


def check(values, n, func):
    assert isinstance(values, list) and len(values) == n, func.__name__
    for v in values:
        assert type(v) is float and math.isfinite(v), (func.__name__, v)
        assert func.low <= v <= func.high, (func.__name__, v)


@pytest.mark.parametrize("gold", GOLDS, ids=repr)
def test_odd_completions_never_raise(gold):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for func in ALL:
            check(func(ODD, answer=[gold] * len(ODD)), len(ODD), func)
            check(trl_call(func, ODD, [gold] * len(ODD)), len(ODD), func)


@pytest.mark.filterwarnings("ignore:.*no 'answer' column")
def test_odd_call_shapes():
    for func in ALL:
        assert func(None) == [] and func([]) == [] and func(completions=[]) == []
        assert len(func(GOOD, answer="7")) == 1  # a bare string is one completion
        assert len(func([GOOD, GOOD], answer=["7"])) == 2  # a short answer column is padded
        assert len(func([GOOD], answer=3)) == 1 and len(func([GOOD], answer=object())) == 1
        assert func(12345) == []  # not iterable


def test_a_million_characters_is_fast():
    huge = "<reasoning>" + ("3 + 4 = 7\n" * 100_000) + "</reasoning><answer>7</answer>"
    assert len(huge) > 1_000_000
    start = time.perf_counter()
    s = scores(huge)
    assert s["strict_format_reward"] == 1.0 and s["correctness_reward"] == 1.0 and s["lenient_accuracy"] == 1.0
    assert time.perf_counter() - start < 5
    start = time.perf_counter()
    scores("<answer>" * 200_000 + "7" * 400_000 + "</answer>" * 50_000)
    assert time.perf_counter() - start < 5


# --- property-based: at least 10,000 generated completions ------------------------------------------

TAG = st.sampled_from(list(DEFAULT_FORMAT.tags) + ["<reasoning", "answer>", "</", "<>", "\\boxed{", "}"])
DIGITS = "0123456789\u0660\u0661\u0667\u06f7\u0967\uff17"  # ASCII, Arabic-Indic, Devanagari, fullwidth
NUMBER = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.integers(-10**6, 10**6).map(lambda n: f"{n:,}"),
    st.tuples(st.integers(1, 450), st.sampled_from("19")).map(lambda t: t[1] * t[0]),  # up to 450 digits
    st.tuples(st.integers(-999, 999), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]:02d}"),
    st.tuples(st.integers(-99, 99), st.integers(0, 12)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["nan", "inf", "-0", "1e308", "\u22123", "$18", "18 dollars", "7.", "\\boxed{7}", "½"]),
    st.sampled_from(["-$5", "\u2212\u20ac5", "10\u00b2", "1\u00bd", "1\\frac{1}{2}", "10^{2}", "1.5 \\times 10^3",  # issue 27
                     "\\sqrt{16}", "2 million", "1.5k", "1_000", "18!", "3x", "1e5e5", "2\\pi", "5m", "x/2"]),
    st.text(alphabet=DIGITS + "\u2212-+.,/$% ", max_size=8),
)
FRAGMENT = st.one_of(TAG, NUMBER, st.sampled_from(["\n", " ", "\n\n", "\t", "=", "dollars", ".", "é", "\x00"]),
                     st.text(max_size=6))
STRUCTURED = st.lists(FRAGMENT, max_size=10).map("".join)
COMPLETION = st.one_of(
    STRUCTURED, STRUCTURED.map(lambda t: GOOD[:40] + t), st.text(max_size=30),
    st.builds(lambda r, a, tail: DEFAULT_FORMAT.format(r, a) + tail, st.text(max_size=10), NUMBER,
              st.sampled_from(["", "\n", " more", "<answer>1</answer>"])),
    STRUCTURED.map(lambda t: [{"role": "assistant", "content": t}]),
    st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=6), st.just([{"content": 3}])),
)
BATCH = 10
EXAMPLES = 1_050  # x BATCH completions = 10,500 >= 10,000


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(COMPLETION, min_size=BATCH, max_size=BATCH), st.lists(st.one_of(NUMBER, st.none()),
                                                                        min_size=BATCH, max_size=BATCH))
def test_property_rewards_are_total_finite_and_consistent(completions, answers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = {}
        for func in ALL:
            got[func.__name__] = values = func(completions=completions, answer=answers)
            check(values, BATCH, func)
    for i in range(BATCH):
        strict, approx = got["strict_format_reward"][i], got["approx_format_reward"][i]
        correct, close = got["correctness_reward"][i], got["closeness_reward"][i]
        assert strict in (0.0, 1.0) and correct in (0.0, 1.0)
        assert strict == got["format_compliance"][i] and correct == got["accuracy"][i]
        assert strict == 0.0 or approx == 1.0  # strictly formatted implies full approximate credit
        assert correct == 0.0 or close == 1.0 or parse_number(answers[i]) is None
        weighted = sum(w * got[n][i] for n, w in DEFAULT_WEIGHTS.items())
        assert got["combined_reward"][i] == pytest.approx(weighted)
    # prefilled=True scores a completion like the default does with the opening text put back
    texts = [c for c in completions if isinstance(c, str)]
    if texts:
        for func, pre in ((strict_format_reward, StrictFormat(prefilled=True)),
                          (approx_format_reward, ApproxFormat(prefilled=True))):
            assert pre(texts) == func([DEFAULT_FORMAT.prefill_text + t for t in texts])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(SPELLED)
def test_property_any_spelling_of_the_gold_value_is_correct(spelled):
    """An answer block holding the gold value in any spelling the parser reads scores full correctness."""
    text, value, _ = spelled
    gold = format_number(Fraction(value))
    completion = DEFAULT_FORMAT.format("r", text)
    assert correctness_reward([completion], answer=[gold]) == [1.0], text
    assert combined_reward([completion], answer=[gold]) == [3.5], text


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(DECORATED)
def test_property_a_decorated_number_earns_no_answer_credit(decorated):
    """18!, 3x, 2 million, \\sqrt{16}: the number inside is not the answer (5377e78 paid for most of them)."""
    text, number = decorated
    completion = DEFAULT_FORMAT.format("r", text)
    scores = reward_functions().scores([completion], answer=[str(number)])
    assert scores["correctness_reward"] == scores["closeness_reward"] == scores["lenient_accuracy"] == [0.0], text


def test_property_run_covers_ten_thousand_completions():
    assert EXAMPLES * BATCH >= 10_000


# --- the notebook table ----------------------------------------------------------------------------


def test_score_table():
    rows = score_table([GOOD, "<answer>6</answer>"], ["7", "7"], labels=["good", "no reasoning"])
    assert list(rows[0]) == ["case", "completion", *NAMES, "reward"]
    assert rows[0]["reward"] == 3.5 and "⏎" in rows[0]["completion"] and len(rows[0]["completion"]) <= 40
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["case", "completion", "strict_format", "approx_format", "correctness",
                                             "closeness", "format_compliance", "accuracy", "lenient_accuracy", "reward"]
    assert "3.50" in table and "no reasoning" in table
    assert format_table([]) == ""


def test_scores_take_a_datasets_column_as_one_answer_per_completion():
    """Notebook 05 scores the reference solutions with ``ds["answer"]``, a ``datasets`` ``Column`` (datasets 4):
    read as one value repeated, every gold answer was the whole column and the solutions scored 0 correctness."""
    from helpers.data.synthetic import synthetic_dataset

    ds = synthetic_dataset(12, seed=0)
    scores = reward_functions().scores([c[0]["content"] for c in ds["completion"]], ds["answer"])
    assert scores["correctness_reward"] and all(s > 0 for s in scores["correctness_reward"])
    assert scores["accuracy"] == [1.0] * 12
    single = reward_functions().scores([ds["completion"][0][0]["content"]] * 2, ds["answer"][0])
    assert single["accuracy"] == [1.0, 1.0]  # one value is repeated
