"""Reward functions that fail with their own name: :class:`GuardedReward` turns an exception or a
non-finite score into a one-line :class:`RewardFunctionError` naming the function and the batch."""

from __future__ import annotations

import inspect

from helpers.rewards.completions import as_number

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
        self.__name__ = function_name(func)
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
        bad = [s for s in scores if s is not None and not as_number(s)]
        if bad:
            raise RewardFunctionError(f"reward function {self.__name__!r} returned {bad[0]!r}; fix: return finite "
                                      "floats (or None to skip a completion).")
        return scores

    def __repr__(self) -> str:
        return f"GuardedReward({self.func!r})"


def function_name(func) -> str:
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
