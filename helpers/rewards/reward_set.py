"""The reward functions GRPO trains with and the metrics it logs, with their weights
(:func:`reward_functions` returns a :class:`RewardSet`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from helpers.data.chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat
from helpers.rewards.functions import (
    DEFAULT_WEIGHTS,
    Combined,
    FormatCompliance,
    LenientAccuracy,
    StrictAccuracy,
    _check_weights,
    _components,
)


class RewardSet(NamedTuple):
    """Reward functions and their weights, for ``GRPOTrainer(reward_funcs=funcs)`` and
    ``GRPOConfig(reward_weights=weights)``; unpacks as ``funcs, weights = reward_functions()``."""

    funcs: list
    weights: list[float]

    @property
    def names(self) -> list[str]:
        """The names TRL logs, as ``rewards/<name>/mean``."""
        return [f.__name__ for f in self.funcs]

    def scores(self, completions, answer=None, **columns) -> dict[str, list[float]]:
        """Every function's scores, plus ``"reward"``: the weighted sum TRL trains on. Called as TRL calls
        rewards: one ``answer`` (or other column value) per completion; a single value is repeated."""
        completions = list(completions)
        columns["answer"] = answer
        # one value (text, a number, None) is repeated; any other column (a list, a datasets ``Column``) is listed
        columns = {k: [v] * len(completions) if v is None or isinstance(v, (str, bytes, int, float)) else list(v)
                   for k, v in columns.items()}
        out = {f.__name__: f(completions=completions, **columns) for f in self.funcs}
        n = len(next(iter(out.values()), []))
        out["reward"] = [sum(w * out[f.__name__][i] for f, w in zip(self.funcs, self.weights, strict=True)) for i in range(n)]
        return out


def reward_functions(weights: Mapping[str, float] | None = None, *, fmt: ReasoningFormat = DEFAULT_FORMAT,
                     prefilled: bool = PREFILL, combined: bool = False, floor: float = 0.0,
                     tolerance: float = 0.5) -> RewardSet:
    """The rewards the GRPO stage trains with, and the metrics it logs.

    ``combined=False`` (default): the four rewards with their ``weights`` (``DEFAULT_WEIGHTS``
    merged with yours), then ``format_compliance``, ``accuracy`` and ``lenient_accuracy`` at weight 0.
    ``combined=True``: ``combined_reward`` at weight 1, then the four rewards and the three metrics at
    weight 0 (all logged, one training signal). Both give TRL the same total reward.
    ``prefilled``: True when the prompt opens the reasoning block (``check_template(tokenizer).prefilled``).

    >>> funcs, weights = reward_functions()
    >>> [f.__name__ for f in funcs], weights
    (['strict_format_reward', 'approx_format_reward', 'correctness_reward', 'closeness_reward', 'format_compliance', 'accuracy', 'lenient_accuracy'], [0.5, 0.5, 2.0, 0.5, 0.0, 0.0, 0.0])
    """
    chosen = _check_weights({**DEFAULT_WEIGHTS, **(weights or {})})
    parts = _components(fmt, prefilled=prefilled, floor=floor, tolerance=tolerance)
    metrics = [FormatCompliance(fmt, prefilled=prefilled), StrictAccuracy(fmt, prefilled=prefilled),
               LenientAccuracy(fmt, prefilled=prefilled)]
    if combined:
        total = Combined(fmt, prefilled=prefilled, weights=chosen, floor=floor, tolerance=tolerance)
        return RewardSet([total, *parts, *metrics], [1.0] + [0.0] * (len(parts) + len(metrics)))
    return RewardSet([*parts, *metrics], [chosen[p.__name__] for p in parts] + [0.0] * len(metrics))
