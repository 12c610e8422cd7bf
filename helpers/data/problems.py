"""Datasets of reasoning problems: GSM8K (hub or local JSONL) and offline synthetic word problems.

Every dataset here has the same columns, ready for TRL:

- ``prompt``: chat messages, the system prompt (it states the format) then the question
- ``completion``: one assistant message, a worked solution in the format (for SFT; GRPO ignores it)
- ``answer``: the gold answer, normalised by ``helpers.data.answers`` (``"1234"``, ``"0.75"``); rewards read it
- ``question``, ``reasoning`` (the worked steps as plain text), ``difficulty`` (number of arithmetic
  steps), ``source`` (``"gsm8k"`` or ``"synthetic"``)

``prompt`` and ``completion`` are both conversational, as TRL expects when it checks the format of
a row. Rows whose answer cannot be read are dropped and counted (logged, and written in
``dataset.info.description``); a bad row never stops a run.
"""

from __future__ import annotations

import logging
import os
import random

from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat, render_prompt
from helpers.data.gsm8k import default_gsm8k_dir, load_gsm8k
from helpers.data.rows import DataUnavailableError, NoUsableRowsError
from helpers.data.synthetic import LEVELS, synthetic_dataset
from helpers.runtime.settings import Settings

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Choosing a source, filtering, splitting
# ---------------------------------------------------------------------------------------------


def load_problems(split: str = "train", *, path: str | os.PathLike | None = None, n: int = 1000, seed: int = 0,
                  difficulty: int | tuple[int, ...] = LEVELS, fmt: ReasoningFormat = DEFAULT_FORMAT,
                  system: str | None = None, limit: int | None = None):
    """GSM8K from ``path``, else from ``$GRPO_GSM8K_DIR`` (:func:`default_gsm8k_dir`), else from the hub, else ``n``
    synthetic problems; returns ``(dataset, source)`` where ``source`` says which one was used, and why.

    A path you name (``path``, or ``$GRPO_GSM8K_DIR``) must be usable: missing,
    unreadable, not UTF-8, without ``<split>.jsonl`` or without a usable row, it is refused with a one-line
    :class:`DataUnavailableError` (:func:`check_gsm8k_path` checks a path before any work starts). Only
    when no path is given and the hub cannot be reached or read do synthetic
    problems stand in; the warning and ``source`` say so."""
    folder = path if path is not None else default_gsm8k_dir()
    if folder is not None:
        ds = load_gsm8k(split, folder, fmt=fmt, system=system, limit=limit)
        return ds, ds.info.description
    try:
        ds = load_gsm8k(split, None, fmt=fmt, system=system, limit=limit)
        return ds, ds.info.description
    except NoUsableRowsError:
        raise
    except DataUnavailableError as exc:
        reason = str(exc).split(";")[0]
    except Exception as exc:  # the hub can fail in many ways; fall back, and say why
        reason = f"the hub failed: {type(exc).__name__}: {exc}".splitlines()[0]
    log.warning("GSM8K unavailable (no path given, no local copy, %s); using synthetic problems", reason)
    ds = synthetic_dataset(n, difficulty=difficulty, seed=seed, split=split, fmt=fmt, system=system)
    ds.info.description += f" (instead of GSM8K: no path given, no local copy, {reason})"
    return ds, ds.info.description


def grpo_problems(settings: Settings, *, embedded: bool, n: int | None = None, seed: int = 0,
                  path: str | os.PathLike | None = None):
    """GRPO's training problems, ``(dataset, source)``, by the profile ``settings``: GSM8K's train split
    (:func:`load_problems`) when ``grpo_data`` is "gsm8k" and the model is a hub model; else the synthetic
    train part at ``train_levels``, always for the embedded SmolLM2-135M, which solves about 1 GSM8K problem
    in 250 (its groups would score all-zero and GRPO would learn nothing). ``n`` synthetic problems
    (default: one per prompt GRPO draws, at least 200).

    >>> from helpers.runtime.profiles import profile_settings
    >>> grpo_problems(profile_settings("gpu"), embedded=True, n=3)[1]
    'synthetic arithmetic problems, train part: 3 rows, difficulty (1, 2, 3), seed 0'
    >>> len(grpo_problems(profile_settings("ci", grpo_steps=250), embedded=True)[0])
    250
    """
    n = n or max(200, settings.grpo_prompts_drawn)
    if settings.grpo_data == "gsm8k" and not embedded:
        return load_problems("train", path=path, n=n, seed=seed)
    ds = synthetic_dataset(n, split="train", seed=seed, difficulty=settings.train_levels)
    return ds, ds.info.description


def prompt_lengths(dataset, tokenizer, *, prefill: bool = False, fmt: ReasoningFormat = DEFAULT_FORMAT) -> list[int]:
    """Tokens of each row's rendered prompt (chat template and generation prompt included)."""
    texts = [render_prompt(tokenizer, p, prefill=prefill, fmt=fmt) for p in dataset["prompt"]]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def filter_prompt_length(dataset, tokenizer, max_tokens: int, **kwargs):
    """The rows whose rendered prompt has at most ``max_tokens`` tokens (TRL 1.x has no
    ``max_prompt_length``: long prompts are best dropped before training); the count is logged."""
    keep = [i for i, length in enumerate(prompt_lengths(dataset, tokenizer, **kwargs)) if length <= max_tokens]
    if len(keep) < len(dataset):
        log.warning("dropped %d of %d rows with prompts over %d tokens", len(dataset) - len(keep), len(dataset), max_tokens)
    return dataset.select(keep)


def split_held_out(dataset, held_out: int | float, *, seed: int = 0, key: str = "question"):
    """A deterministic ``DatasetDict`` with ``train`` and ``test`` (the held-out rows).

    Rows repeating an earlier row's ``key`` are dropped first, so no problem is in both parts.
    ``held_out`` is a row count, or a fraction of the distinct rows. Both parts keep the original order.
    """
    from datasets import DatasetDict

    first, seen = [], set()
    for i, value in enumerate(dataset[key]):
        if value not in seen:
            seen.add(value)
            first.append(i)
    count = round(held_out * len(first)) if isinstance(held_out, float) else int(held_out)
    if not 0 <= count <= len(first):
        raise ValueError(f"held_out={held_out} does not fit {len(first)} distinct rows; fix: ask for fewer.")
    order = first[:]
    random.Random(seed).shuffle(order)
    test = sorted(order[:count])
    train = sorted(order[count:])
    return DatasetDict(train=dataset.select(train), test=dataset.select(test))
