"""The held-out sets every model is scored on: the synthetic test part, its paraphrased wording and
GSM8K's test split (:func:`held_out_sets`). None of them is ever trained on."""

from __future__ import annotations

import logging
import os

from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.gsm8k import check_gsm8k_path, default_gsm8k_dir, load_gsm8k
from helpers.data.rows import DataUnavailableError
from helpers.data.synthetic import synthetic_dataset
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import settings

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Scoring (pure)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Held-out sets
# ---------------------------------------------------------------------------------------------


# GSM8K problems per profile (default: ``n``). The CPU profiles' model (SmolLM2-135M) solves almost none
# (1 of 64 after SFT + GRPO, measured): ci keeps a slice of 4 to exercise the path, cpu skips it (0) to
# stay within its 20 minutes.
GSM8K_SLICE = {"ci": 4, "cpu": 0}


def held_out_sets(n: int | None = None, *, gsm8k: bool = True, gsm8k_path: str | os.PathLike | None = None,
                  gsm8k_n: int | None = None, paraphrased: int | None = None, seed: int = 0, profile: str | None = None,
                  fmt: ReasoningFormat = DEFAULT_FORMAT) -> dict:
    """The held-out sets to evaluate on, by name: ``"synthetic"`` (always: the test part of the
    offline problems, disjoint from training's), ``"paraphrased"`` (``paraphrased`` problems, default
    half of ``n``; 0: none: the same arithmetic in wording training never saw, ``helpers.data.problems`` style
    ``"paraphrased"``) and ``"gsm8k"`` (its test split, the first
    ``gsm8k_n`` problems, default ``n``, at most ``GSM8K_SLICE`` on the CPU profiles; 0: none) when a local copy (``gsm8k_path``, ``$GRPO_GSM8K_DIR``, the
    project's ``../shared/data/gsm8k``) or the hub is there; a ``gsm8k_path`` you name that cannot be used is
    refused in one line (:func:`check_gsm8k_path`), not skipped. ``n`` defaults to the profile's
    ``eval_problems``."""
    if gsm8k and gsm8k_path is not None:
        check_gsm8k_path(gsm8k_path, "test")
    sizes = settings(profile)
    n = n or sizes.eval_problems
    gsm8k_n = min(n, GSM8K_SLICE.get(sizes.profile, n)) if gsm8k_n is None else gsm8k_n
    gsm8k = gsm8k and gsm8k_n > 0
    sets = {"synthetic": synthetic_dataset(n, split="test", seed=seed, fmt=fmt)}
    paraphrased = n // 2 if paraphrased is None else paraphrased
    if paraphrased > 0:
        sets["paraphrased"] = synthetic_dataset(paraphrased, split="test", seed=seed, fmt=fmt, style="paraphrased")
    if gsm8k:
        path = gsm8k_path or default_gsm8k_dir()
        if path is None and not hub_reachable():
            log.warning("GSM8K: no local copy and the hub is not reachable; evaluating on synthetic problems only")
        else:
            try:
                sets["gsm8k"] = load_gsm8k("test", path, fmt=fmt, limit=gsm8k_n)
            except DataUnavailableError as exc:
                log.warning("GSM8K skipped: %s", exc)
    return sets
