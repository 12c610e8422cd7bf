"""Reward functions for GRPO, with TRL's signature, that never raise and never return NaN or infinity.

Every reward is called as TRL 1.15's ``GRPOTrainer`` calls it: ``f(prompts=..., completions=...,
completion_ids=..., **dataset_columns, trainer_state=..., log_extra=..., log_metric=...)``. A
completion may be a string or a list of chat messages; the gold answer arrives as the ``answer``
column (``helpers.data.problems`` makes one). Each returns one float per completion, in ``[0, 1]``
(``combined_reward``: in ``[0, sum of weights]``); a malformed, empty, huge or non-string
completion scores low, it never raises. A missing ``answer`` column scores 0 and warns (Python
shows a warning once per calling line).

Rewards are callable objects with a fixed ``__name__`` (TRL logs ``rewards/<__name__>/mean``) and
are picklable, as TRL's own are (its async rollout worker sends them to a child process).

==========================  =========================================================================
``strict_format_reward``    1 if the completion is exactly one reasoning block then one answer block,
                            both non-empty, with only whitespace around them, else 0
``approx_format_reward``    partial credit: 0.125 per tag present exactly once (less for repeats),
                            0.25 for the right order, 0.125 for a non-empty answer, 0.125 for
                            nothing after the closing tag; never below ``floor``
``correctness_reward``      1 if the answer block's number equals the gold answer (exact, after
                            ``helpers.data.answers`` normalisation), else 0
``closeness_reward``        ``max(0, 1 - relative_error / tolerance)`` for the answer block's number
``combined_reward``         the weighted sum of the four above
``format_compliance``       metric (weight 0): the share of strictly formatted completions
``accuracy``                metric (weight 0): strict accuracy, the answer *inside the tags* is right
``lenient_accuracy``        metric (weight 0): the *last number anywhere* in the completion is right
==========================  =========================================================================

Multi-line reasoning, no trailing newline, and trailing whitespace are all fine (the pitfalls of
regexes without ``re.DOTALL`` and of formats that demand ``\n`` at the end do not apply: tags are
found by plain substring search). See ``helpers.data.chat_template`` for the prefill decision: build
the rewards with ``prefilled=True`` when the prompt already opens the reasoning block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

from helpers.data.answers import last_number, same_text_answer
from helpers.data.chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat, restore_prefill
from helpers.rewards.completions import Graded, completion_text, finite_score

DEFAULT_WEIGHTS: dict[str, float] = {
    "strict_format_reward": 0.5,
    "approx_format_reward": 0.5,
    "correctness_reward": 2.0,
    "closeness_reward": 0.5,
}


class _Reward:
    """Shared machinery: read completions, restore a prefill, grade each safely."""

    __name__ = "reward"
    low, high = 0.0, 1.0

    def __init__(self, fmt: ReasoningFormat = DEFAULT_FORMAT, *, prefilled: bool = PREFILL):
        self.fmt, self.prefilled = fmt, bool(prefilled)

    def text(self, completion) -> str:
        text = completion_text(completion)
        return restore_prefill(text, self.fmt) if self.prefilled else text

    def score(self, text: str, answer) -> float:
        """The score of one completion's (prefill-restored) ``text`` against the gold ``answer``."""
        return self.grade(Graded(self.fmt, text, answer))

    def grade(self, graded: Graded) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, completions=None, answer=None, **kwargs) -> list[float]:
        if completions is None:
            return []
        if isinstance(completions, (str, bytes, Mapping)):
            completions = [completions]
        try:
            completions = list(completions)
        except TypeError:
            return []
        answers = _answers(answer, len(completions), self)
        out = []
        for completion, gold in zip(completions, answers, strict=True):
            try:
                value = self.score(self.text(completion), gold)
            except Exception:  # a reward must never stop training: a completion we cannot read scores low
                value = self.low
            out.append(finite_score(value, self.low, self.high))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, prefilled={self.prefilled})"


def _answers(answer, n: int, reward: _Reward) -> list:
    if isinstance(answer, (str, int, float)) or answer is None:
        answer = [answer] * n
    else:
        try:
            answer = list(answer)
        except TypeError:
            answer = [None] * n
    if n and getattr(reward, "needs_answer", False) and all(a is None for a in answer):
        warnings.warn(f"{reward.__name__} got no 'answer' column, so no completion earns credit for its answer; "
                      "fix: give the dataset an 'answer' column (helpers.data.problems does).", stacklevel=3)
    return (answer + [None] * n)[:n]


class StrictFormat(_Reward):
    """1.0 for exactly one non-empty reasoning block then one non-empty answer block, with only
    whitespace before, between and after them; else 0.0.

    >>> strict_format_reward(["<reasoning>\\nStep 1\\nStep 2\\n</reasoning>\\n<answer>7</answer>",
    ...                       "<reasoning>3+4=7</reasoning><answer>7</answer> I hope that helps!"])
    [1.0, 0.0]
    """

    __name__ = "strict_format_reward"

    def grade(self, graded):
        return 1.0 if graded.parsed.strict else 0.0


class ApproxFormat(_Reward):
    """Partial format credit in ``[floor, 1]``: 0.125 for each tag present exactly once (each extra
    copy costs 0.125), 0.25 for all four in order, 0.125 for a non-empty answer block and 0.125
    for nothing after the closing answer tag. A strictly formatted completion scores 1.0.

    >>> approx_format_reward(["<reasoning>3+4=7</reasoning>\\n<answer>7</answer>", "<reasoning>3+4=7", "7"])
    [1.0, 0.125, 0.0]
    """

    __name__ = "approx_format_reward"

    def __init__(self, fmt: ReasoningFormat = DEFAULT_FORMAT, *, prefilled: bool = PREFILL, floor: float = 0.0):
        super().__init__(fmt, prefilled=prefilled)
        if not (math.isfinite(floor) and floor <= 1.0):
            raise ValueError(f"floor={floor} must be a finite number at most 1; fix: use e.g. 0.0 or -0.5.")
        self.low = float(floor)

    def grade(self, graded):
        parsed = graded.parsed
        value = sum(0.125 if c == 1 else -0.125 * max(c - 1, 0) for c in parsed.counts)
        if parsed.ordered:
            value += 0.25
        if parsed.answer:
            value += 0.125
        if parsed.counts[3] and not parsed.after.strip():
            value += 0.125
        return value


class Correctness(_Reward):
    """1.0 when the number in the (last complete) answer block equals the gold ``answer`` after
    normalisation (``1,234`` = ``1234``, ``18.00`` = ``$18``, ``3/4`` = ``0.75``); else 0.0.
    Numbers in the reasoning do not count.

    >>> correctness_reward(["<reasoning>18</reasoning><answer>$18.00</answer>", "<reasoning>18</reasoning><answer>20</answer>"],
    ...                    answer=["18", "18"])
    [1.0, 0.0]
    """

    __name__ = "correctness_reward"
    needs_answer = True

    def grade(self, graded):
        if graded.parsed.answer is None:
            return 0.0
        if graded.gold is not None:
            return 1.0 if graded.predicted == graded.gold else 0.0
        return 1.0 if same_text_answer(graded.parsed.answer, graded.answer) else 0.0


class Closeness(_Reward):
    """Partial credit for a near miss: ``max(0, 1 - |predicted - gold| / max(|gold|, 1) / tolerance)``
    for the number in the answer block; 1.0 when exact, 0.0 without a number.

    >>> closeness_reward(["<answer>18</answer>", "<answer>16</answer>", "<answer>9</answer>", "18"], answer="20")
    [0.8, 0.6, 0.0, 0.0]
    """

    __name__ = "closeness_reward"
    needs_answer = True

    def __init__(self, fmt: ReasoningFormat = DEFAULT_FORMAT, *, prefilled: bool = PREFILL, tolerance: float = 0.5):
        super().__init__(fmt, prefilled=prefilled)
        if not (math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance={tolerance} must be a positive number; fix: use e.g. 0.5 (50% off scores 0).")
        self.tolerance = tolerance

    def grade(self, graded):
        gold, predicted = graded.gold, graded.predicted
        if gold is None or predicted is None:
            return 0.0
        relative = abs(predicted - gold) / max(abs(gold), 1) / self.tolerance  # exact Fraction: no overflow
        return 0.0 if relative >= 1 else float(1 - relative)


class FormatCompliance(StrictFormat):
    """Metric, weight 0: 1.0 for a strictly formatted completion (its mean is the compliance rate).

    >>> format_compliance(["<reasoning>r</reasoning><answer>1</answer>", "1"])
    [1.0, 0.0]
    """

    __name__ = "format_compliance"


class StrictAccuracy(Correctness):
    """Metric, weight 0: strict accuracy, 1.0 when the answer *inside the answer tags* is right.

    >>> accuracy(["<answer>7</answer>", "The answer is 7."], answer="7")
    [1.0, 0.0]
    """

    __name__ = "accuracy"


class LenientAccuracy(_Reward):
    """Metric, weight 0: lenient accuracy, 1.0 when the *last number anywhere* equals the gold answer.

    >>> lenient_accuracy(["The answer is 7.", "<answer>7</answer> or maybe 8"], answer="7")
    [1.0, 0.0]
    """

    __name__ = "lenient_accuracy"
    needs_answer = True

    def grade(self, graded):
        return 1.0 if graded.gold is not None and last_number(graded.text) == graded.gold else 0.0


class Combined(_Reward):
    """The weighted sum of the four rewards (``weights`` keyed by reward name; missing ones are 0), each part
    bounded and guarded as it is alone; the completion and the gold answer are read once for all four.

    >>> combined_reward(["<reasoning>3+4=7</reasoning>\\n<answer>7</answer>"], answer=["7"])
    [3.5]
    """

    __name__ = "combined_reward"
    needs_answer = True

    def __init__(self, fmt: ReasoningFormat = DEFAULT_FORMAT, *, prefilled: bool = PREFILL,
                 weights: Mapping[str, float] | None = None, floor: float = 0.0, tolerance: float = 0.5):
        super().__init__(fmt, prefilled=prefilled)
        self.weights = _check_weights(DEFAULT_WEIGHTS if weights is None else weights)
        self.parts = _components(fmt, prefilled=False, floor=floor, tolerance=tolerance)  # text already restored
        self.low = sum(w * p.low for p in self.parts if (w := self.weights.get(p.__name__, 0.0)))
        self.high = sum(w * p.high for p in self.parts if (w := self.weights.get(p.__name__, 0.0)))

    def grade(self, graded):
        return sum(w * _guarded(p, graded) for p in self.parts if (w := self.weights.get(p.__name__, 0.0)))


def _guarded(reward: _Reward, graded: Graded) -> float:
    """``reward``'s grade as its own call would give it: finite, within its bounds, its low end on an error."""
    try:
        return finite_score(reward.grade(graded), reward.low, reward.high)
    except Exception:  # a reward must never stop training
        return reward.low


def _components(fmt, *, prefilled, floor, tolerance) -> list[_Reward]:
    return [StrictFormat(fmt, prefilled=prefilled), ApproxFormat(fmt, prefilled=prefilled, floor=floor),
            Correctness(fmt, prefilled=prefilled), Closeness(fmt, prefilled=prefilled, tolerance=tolerance)]


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown reward name(s) {sorted(unknown)}; fix: use keys from {list(DEFAULT_WEIGHTS)}.")
    bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"weights must be finite and >= 0, got {bad}; fix: set 0 to switch a reward off.")
    return {k: float(v) for k, v in weights.items()}


strict_format_reward = StrictFormat()
approx_format_reward = ApproxFormat()
correctness_reward = Correctness()
closeness_reward = Closeness()
combined_reward = Combined()
format_compliance = FormatCompliance()
accuracy = StrictAccuracy()
lenient_accuracy = LenientAccuracy()
