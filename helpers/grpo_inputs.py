"""What GRPO is given, checked before training: reward functions that fail with their own name
(:class:`GuardedReward`) and a dataset that holds what they read (:func:`check_dataset`)."""

from __future__ import annotations

import inspect

from .grpo_config import GRPOSettings, _number

__all__ = ["GuardedReward", "RewardFunctionError", "check_dataset", "guard_rewards"]


# ---------------------------------------------------------------------------------------------
# Reward functions: named failures
# ---------------------------------------------------------------------------------------------


class RewardFunctionError(RuntimeError):
    """A reward function raised or returned something TRL cannot train on; the message names it."""


class GuardedReward:
    """A reward function that fails with its own name: a raise, a wrong count or a non-finite score
    becomes a :class:`RewardFunctionError` naming the function (``None`` scores pass through)."""

    def __init__(self, func):
        self.func = func
        self.__name__ = _name(func)
        self.__doc__ = getattr(func, "__doc__", None)

    def __call__(self, *args, **kwargs):
        completions = kwargs.get("completions", args[0] if args else None)
        try:
            scores = self.func(*args, **kwargs)
        except Exception as exc:
            raise RewardFunctionError(
                f"reward function {self.__name__!r} raised {type(exc).__name__}: {exc} (on a batch of "
                f"{len(completions) if completions is not None else '?'} completions); fix: make it return a low "
                "score for completions it cannot read instead of raising, then rerun (resume=True continues "
                "from the last checkpoint).") from exc
        try:
            scores = list(scores)
        except TypeError:
            raise RewardFunctionError(f"reward function {self.__name__!r} returned {type(scores).__name__}, not a list "
                                      "of floats; fix: return one float (or None) per completion.") from None
        bad = [s for s in scores if s is not None and not _number(s)]
        if bad:
            raise RewardFunctionError(f"reward function {self.__name__!r} returned {bad[0]!r}; fix: return finite "
                                      "floats (or None to skip a completion).")
        return scores

    def __repr__(self) -> str:
        return f"GuardedReward({self.func!r})"


def _name(func) -> str:
    while hasattr(func, "func") and not hasattr(func, "__name__"):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def guard_rewards(funcs) -> list:
    """Each callable reward wrapped in :class:`GuardedReward` (async ones and reward models left as they are)."""
    out = []
    for f in funcs:
        is_async = inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(type(f).__call__)
        if isinstance(f, (GuardedReward, str)) or is_async:
            out.append(f)
        elif hasattr(f, "forward") and hasattr(f, "config"):  # a reward model (nn.Module)
            out.append(f)
        elif callable(f):
            out.append(GuardedReward(f))
        else:
            raise TypeError(f"reward function {f!r} is not callable; fix: pass functions f(completions, **kwargs).")
    return out


def _split_rewards(rewards) -> tuple[list, list[float] | None]:
    """``(funcs, weights)`` from a ``helpers.rewards.RewardSet``, a ``(funcs, weights)`` pair, a list or one function."""
    if rewards is None:
        from .rewards import reward_functions

        rewards = reward_functions()
    if hasattr(rewards, "funcs") and hasattr(rewards, "weights"):
        return list(rewards.funcs), list(rewards.weights)
    if isinstance(rewards, tuple) and len(rewards) == 2 and isinstance(rewards[0], (list, tuple)):
        return list(rewards[0]), (list(rewards[1]) if rewards[1] is not None else None)
    if callable(rewards):
        return [rewards], None
    return list(rewards), None


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

_TRL_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
               "environments", "self"}


def _needed_columns(func) -> set[str]:
    """Dataset columns a reward function needs: ``answer`` when it says so (``needs_answer``, as
    ``helpers.rewards``' functions do), and its keyword parameters without a default."""
    target = getattr(func, "func", func)
    needed = {"answer"} if getattr(target, "needs_answer", False) else set()
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return needed
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in _TRL_KWARGS:
            continue
        if p.default is p.empty:
            needed.add(p.name)
    return needed


def check_dataset(dataset, funcs=()) -> None:
    """Refuse a dataset GRPO cannot train on, with the fix: not a ``datasets.Dataset``, empty, no
    ``prompt`` column, or lacking a column a reward function reads (``answer`` for correctness)."""
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, IterableDataset):
        return
    if not isinstance(dataset, Dataset):
        raise TypeError(f"the GRPO dataset must be a datasets.Dataset, not {type(dataset).__name__}; fix: "
                        "Dataset.from_list(rows) or helpers.data.load_problems().")
    if len(dataset) == 0:
        raise ValueError("the GRPO dataset is empty (0 rows); fix: check the source or filters (e.g. "
                         "helpers.data.filter_prompt_length dropped every prompt), or use "
                         "helpers.data.synthetic_dataset(200).")
    columns = set(dataset.column_names)
    if "prompt" not in columns:
        raise ValueError(f"the GRPO dataset has no 'prompt' column (columns: {sorted(columns)}); fix: rename the "
                         "question column to 'prompt' with chat messages, as helpers.data.make_row builds it.")
    for f in funcs:
        missing = sorted(_needed_columns(f) - columns)
        if missing:
            raise ValueError(f"reward function {_name(f)!r} needs the dataset column(s) {missing}, which the dataset "
                             f"lacks (columns: {sorted(columns)}); fix: add an 'answer' column with the gold answer "
                             "(helpers.data builds it) or drop that reward function.")


def _filter_long_prompts(dataset, tokenizer, settings: GRPOSettings):
    if settings.max_seq_length is None or "prompt" not in dataset.column_names:
        return dataset
    from .data import filter_prompt_length

    budget = settings.max_seq_length - settings.max_completion_length
    kept = filter_prompt_length(dataset, tokenizer, budget)
    if len(kept) == 0:
        raise ValueError(f"every prompt is longer than {budget} tokens (max_seq_length {settings.max_seq_length} - "
                         f"max_completion_length {settings.max_completion_length}); fix: raise max_seq_length or "
                         "lower max_completion_length.")
    return kept


