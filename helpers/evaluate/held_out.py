"""The held-out sets every model is scored on: the synthetic test part, its paraphrased wording, GSM8K's test
split and SVAMP's human-written problems (:func:`held_out_sets`). None of them is ever trained on."""

from __future__ import annotations

import logging
import os

from helpers.data.chat_template import DEFAULT_FORMAT, ReasoningFormat
from helpers.data.gsm8k import check_gsm8k_path, default_gsm8k_dir, load_gsm8k
from helpers.data.rows import DataUnavailableError
from helpers.data.svamp import load_svamp
from helpers.data.synthetic import synthetic_dataset
from helpers.runtime.hardware import hub_reachable
from helpers.runtime.profiles import profile_settings

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Each held-out set in a few words, for the tables' readers (the CLI summary prints it beside the set's name).
SET_LABELS = {
    "synthetic": "the generator's held-out problems",
    "paraphrased": "the same arithmetic in wording never trained on",
    "gsm8k": "GSM8K test, human-written, multi-step",
    "svamp": "SVAMP, human-written public benchmark",
}


def held_out_sets(n: int | None = None, *, gsm8k: bool = True, gsm8k_path: str | os.PathLike | None = None,
                  gsm8k_n: int | None = None, paraphrased: int | None = None, svamp_n: int | None = None,
                  svamp_path: str | os.PathLike | None = None, seed: int = 0, profile: str | None = None,
                  fmt: ReasoningFormat = DEFAULT_FORMAT) -> dict:
    """The held-out sets to evaluate on, by name: ``"synthetic"`` (always: the test part of the
    offline problems, disjoint from training's), ``"paraphrased"`` (``paraphrased`` problems, default
    half of ``n``; 0: none: the same arithmetic in wording training never saw, ``helpers.data.problems`` style
    ``"paraphrased"``) and ``"gsm8k"`` (its test split, the first
    ``gsm8k_n`` problems, default ``n``, at most the profile's ``eval_gsm8k_problems``; 0: none) when a local copy
    (``gsm8k_path``, ``$GRPO_GSM8K_DIR``) or the hub is there (a ``gsm8k_path`` you name that cannot be used is
    refused in one line, :func:`helpers.data.gsm8k.check_gsm8k_path`, not skipped); ``"svamp"`` (``svamp_n`` problems of SVAMP,
    human-written, default ``n``, at most the profile's ``eval_svamp_problems``; 0: none) from ``svamp_path`` or
    :func:`helpers.data.svamp.load_svamp`'s local copy or download, skipped with a warning when neither is there.
    ``n`` defaults to the profile's ``eval_problems``. Evaluation generates SVAMP in batches of its own
    (:func:`helpers.evaluate.evaluation.batch_groups`), so adding it leaves the other sets' results as they were."""
    if gsm8k and gsm8k_path is not None:
        check_gsm8k_path(gsm8k_path, "test")
    sizes = profile_settings(profile)
    n = n or sizes.eval_problems
    if gsm8k_n is None:
        gsm8k_n = n if sizes.eval_gsm8k_problems is None else min(n, sizes.eval_gsm8k_problems)
    gsm8k = gsm8k and gsm8k_n > 0
    if svamp_n is None:
        svamp_n = n if sizes.eval_svamp_problems is None else min(n, sizes.eval_svamp_problems)
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
    if svamp_n > 0:
        try:
            sets["svamp"] = load_svamp(svamp_path, fmt=fmt, limit=svamp_n)
        except DataUnavailableError as exc:
            log.warning("SVAMP skipped: %s", exc)
    return sets
