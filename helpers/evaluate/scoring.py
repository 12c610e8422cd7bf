"""Scoring held-out completions (pure: tested on hand-made completions).

:func:`score_completions` turns completions and gold answers into
  :class:`ModelScores` with the rewards' own metrics (``helpers.rewards.functions``: one answer parser for
  training and evaluation):

  ==================  =====================================================================
  strict accuracy     the number *inside the answer tags* equals the gold answer (after
                      ``helpers.data.answers`` normalisation: ``$1,234.00`` = ``1234``)
  lenient accuracy    the *last number anywhere* in the completion equals the gold answer
  format compliance   exactly one reasoning block then one answer block, nothing around them
  mean tokens         completion length in tokens (end-of-turn token not counted)
  truncated           share of completions that hit ``max_new_tokens`` before ending
  pass@k              with several samples per problem: the unbiased estimator of Chen et al.
                      (2021), ``1 - C(n-c, k) / C(n, k)``, averaged over problems (strict)
  ==================  =====================================================================

  Strict accuracy is what the format promises a downstream program (read the tags, get the
  answer); lenient accuracy is what the model *knows*. A model that reasons right but ignores
  the format scores high lenient / low strict; training for the format moves strict toward
  lenient. Lenient can also overstate: a completion cut off after restating the question ends
  on one of the question's numbers, which is sometimes the answer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from helpers.data.chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat
from helpers.rewards.completions import completion_text
from helpers.rewards.functions import FormatCompliance, LenientAccuracy, StrictAccuracy


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: ``n`` samples, ``c`` of them correct (Chen et al. 2021).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 1, 2), 4)
    (0.25, 1.0, 0.0, 0.5)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}; fix: k at most the samples per problem.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass
class ModelScores:
    """One model's results on one held-out set (fractions in [0, 1])."""

    name: str
    problems: int
    samples_per_problem: int
    strict_accuracy: float
    lenient_accuracy: float
    format_compliance: float
    mean_completion_tokens: float | None
    truncated: float | None
    pass_at_k: dict[str, float] = field(default_factory=dict)
    strict_correct: int = 0  # counts behind the fractions (over all samples)
    lenient_correct: int = 0
    formatted: int = 0
    samples: list[dict] = field(default_factory=list)
    seconds: float | None = None
    strict_per_problem: list[int] = field(default_factory=list)  # strict-correct samples of each problem, in order

    def as_dict(self) -> dict:
        return asdict(self)


def _per_problem(completions) -> list[list]:
    return [list(c) if isinstance(c, list | tuple) and not (c and isinstance(c[0], dict)) else [c] for c in completions]


def score_completions(completions, answers, *, name: str = "model", lengths=None, truncated=None, questions=None,
                      ks=None, fmt: ReasoningFormat = DEFAULT_FORMAT, prefilled: bool = PREFILL,
                      show: int = 3) -> ModelScores:
    """Score completions against gold ``answers`` (one per problem).

    ``completions[i]`` is problem ``i``'s completion (a string or chat messages) or a list of its
    samples (all problems the same number). ``lengths`` / ``truncated``, shaped the same, are the
    token counts and whether each hit the token limit (None: not reported). ``ks`` are the pass@k
    values to report (default: 1 and the number of samples). ``prefilled``: the prompts ended with
    the opening reasoning tag, which is put back before scoring (``helpers.data.chat_template``).
    ``show`` sample completions (the first problems') are kept for display.

    >>> s = score_completions(["<reasoning>3+4=7</reasoning>\\n<answer>7</answer>", "It is 8."], ["7", "8"])
    >>> s.strict_accuracy, s.lenient_accuracy, s.format_compliance
    (0.5, 1.0, 0.5)
    """
    per_problem = _per_problem(completions)
    answers = list(answers)
    if len(per_problem) != len(answers):
        raise ValueError(f"{len(per_problem)} problems' completions but {len(answers)} answers; fix: one answer per problem.")
    n = len(per_problem[0]) if per_problem else 1
    if any(len(c) != n for c in per_problem) or n < 1:
        raise ValueError("every problem needs the same number (>= 1) of samples; fix: generate samples_per_problem for each.")
    strict_fn, lenient_fn, format_fn = (StrictAccuracy(fmt, prefilled=prefilled), LenientAccuracy(fmt, prefilled=prefilled),
                                        FormatCompliance(fmt, prefilled=prefilled))
    strict, lenient, formatted = [], [], []
    for samples, gold in zip(per_problem, answers, strict=True):
        strict.append(strict_fn(samples, answer=[gold] * n))
        lenient.append(lenient_fn(samples, answer=[gold] * n))
        formatted.append(format_fn(samples))
    total = len(per_problem) * n

    def mean(rows) -> float:
        return sum(map(sum, rows)) / total if total else 0.0

    ks = sorted({1, n} if ks is None else set(ks))
    pass_k = {f"pass@{k}": (sum(pass_at_k(n, int(sum(row)), k) for row in strict) / len(strict) if strict else 0.0)
              for k in ks}
    flat_lengths = [x for row in _per_problem(lengths) for x in row] if lengths is not None else None
    flat_trunc = [bool(x) for row in _per_problem(truncated) for x in row] if truncated is not None else None
    samples = []
    for i in range(min(show, len(per_problem))):
        samples.append({
            "question": questions[i] if questions is not None else None,
            "answer": answers[i],
            "completion": completion_text(per_problem[i][0]),
            "strict": bool(strict[i][0]), "lenient": bool(lenient[i][0]), "formatted": bool(formatted[i][0]),
        })
    return ModelScores(
        name=name, problems=len(per_problem), samples_per_problem=n,
        strict_accuracy=mean(strict), lenient_accuracy=mean(lenient), format_compliance=mean(formatted),
        mean_completion_tokens=(sum(flat_lengths) / len(flat_lengths)) if flat_lengths else None,
        truncated=(sum(flat_trunc) / len(flat_trunc)) if flat_trunc else None,
        pass_at_k=pass_k, strict_correct=int(sum(map(sum, strict))), lenient_correct=int(sum(map(sum, lenient))),
        formatted=int(sum(map(sum, formatted))), samples=samples,
        strict_per_problem=[int(sum(row)) for row in strict],
    )


def paired_change(before: dict, after: dict) -> dict | None:
    """How ``after``'s strict accuracy differs from ``before``'s on the same problems (two score dicts of one
    held-out set, as ``ModelScores.as_dict`` writes them): the change in points, the problems gained and lost,
    and one standard error of the change (of the per-problem differences' mean), so that a gain can be read
    against the noise of the set's size. None when either lacks per-problem results (results of older runs)
    or they cover different problems.

    >>> c = paired_change({"strict_per_problem": [1, 0, 0, 1], "samples_per_problem": 1},
    ...                   {"strict_per_problem": [1, 1, 1, 0], "samples_per_problem": 1})
    >>> c["points"], c["gained"], c["lost"], c["standard_error"]
    (25.0, 2, 1, 47.9)
    """
    a, b = before.get("strict_per_problem") or [], after.get("strict_per_problem") or []
    n_a, n_b = before.get("samples_per_problem", 1), after.get("samples_per_problem", 1)
    if not a or len(a) != len(b):
        return None
    diffs = [y / n_b - x / n_a for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / len(diffs)
    spread = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else 0.0
    return {"points": round(100 * mean, 1), "gained": sum(d > 0 for d in diffs), "lost": sum(d < 0 for d in diffs),
            "problems": len(diffs), "standard_error": round(100 * spread / len(diffs) ** 0.5, 1)}


def change_line(before: dict, after: dict) -> str | None:
    """``paired_change`` as one line of text, e.g. "grpo vs sft: +7.8 points (9 problems gained, 4 lost of 64;
    standard error 5.6)"; None where it cannot be computed."""
    c = paired_change(before, after)
    if c is None:
        return None
    return (f"{after.get('name', 'after')} vs {before.get('name', 'before')}: {c['points']:+.1f} points "
            f"({c['gained']} problem{'s' * (c['gained'] != 1)} gained, {c['lost']} lost of {c['problems']}; "
            f"standard error {c['standard_error']:.1f})")


def change_lines(scores: list[dict]) -> list[str]:
    """:func:`change_line` for each model against the one before it in a table's scores (SFT against the base
    model, SFT+GRPO against SFT), skipping pairs without per-problem results."""
    return [line for before, after in zip(scores, scores[1:], strict=False) if (line := change_line(before, after))]
