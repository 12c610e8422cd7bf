"""GRPO's dataset, checked before training (:func:`grpo_dataset`): a ``datasets.Dataset`` with a ``prompt`` column
and every column the reward functions read, without the prompts that leave no room for a completion."""

from __future__ import annotations

import inspect

from helpers.data.problems import filter_prompt_length
from helpers.rewards.guard import function_name
from helpers.runtime.settings import Settings

_TRL_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
               "environments", "self"}


def _needed_columns(func) -> set[str]:
    """Dataset columns a reward function needs: ``answer`` when it says so (``needs_answer``, as
    ``helpers.rewards.functions``' functions do), and its keyword parameters without a default."""
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
                        "Dataset.from_list(rows) or helpers.data.problems.load_problems().")
    if len(dataset) == 0:
        raise ValueError("the GRPO dataset is empty (0 rows); fix: check the source or filters (e.g. "
                         "helpers.data.problems.filter_prompt_length dropped every prompt), or use "
                         "helpers.data.synthetic.synthetic_dataset(200).")
    columns = set(dataset.column_names)
    if "prompt" not in columns:
        raise ValueError(f"the GRPO dataset has no 'prompt' column (columns: {sorted(columns)}); fix: rename the "
                         "question column to 'prompt' with chat messages, as helpers.data.rows.make_row builds it.")
    for f in funcs:
        missing = sorted(_needed_columns(f) - columns)
        if missing:
            raise ValueError(f"reward function {function_name(f)!r} needs the dataset column(s) {missing}, which the dataset "
                             f"lacks (columns: {sorted(columns)}); fix: add an 'answer' column with the gold answer "
                             "(helpers.data.problems builds it) or drop that reward function.")


def grpo_dataset(dataset, reward_funcs, tokenizer, settings: Settings):
    """``dataset`` checked (:func:`check_dataset`) and without the rows whose rendered prompt is longer than
    ``settings.max_seq_length - settings.max_completion_length`` tokens (TRL >= 1.0 has no
    ``max_prompt_length``); every prompt too long is refused with the fix."""
    check_dataset(dataset, reward_funcs)
    if "prompt" not in dataset.column_names:
        return dataset
    budget = settings.max_seq_length - settings.max_completion_length
    kept = filter_prompt_length(dataset, tokenizer, budget)
    if len(kept) == 0:
        raise ValueError(f"every prompt is longer than {budget} tokens (max_seq_length {settings.max_seq_length} - "
                         f"max_completion_length {settings.max_completion_length}); fix: lower max_completion_length.")
    return kept
