"""The profiles and their one table: which profile this machine gets, and every value it sets.

One code path serves every machine; a *profile* only sizes it (``PROFILE_TABLE``, one :class:`Settings` row
each, every field explained in ``helpers.runtime.settings``):

- ``colab-t4``: a T4-class GPU (compute capability 7.5, ~15 GB, fp16 only), Unsloth without vLLM
- ``gpu``: any other CUDA GPU (bf16 where supported), Unsloth + vLLM where it runs
- ``cpu``: no GPU; the embedded offline model, short completions, minutes not hours
- ``ci``: ``cpu`` shrunk to seconds per notebook

``GRPO_PROFILE`` overrides the choice (CI and Binder set it). Notebooks read their row with
:func:`profile_settings`, their parameters (``None``: the profile's value) applied on top.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace

from helpers.runtime.hardware import Hardware, detect
from helpers.runtime.settings import Settings
from helpers.runtime.unsloth_first import import_unsloth_first

PROFILES = ("colab-t4", "gpu", "cpu", "ci")
PROFILE_ENV = "GRPO_PROFILE"

_SFT_GPU = dict(sft_learning_rate=2e-4, sft_warmup_ratio=0.1, sft_train_problems=256, compliance_max_new_tokens=256)
_SAVE = dict(save_steps=50, save_total_limit=2, grpo_warmup_ratio=0.1, train_levels=(1, 2, 3))

PROFILE_TABLE: dict[str, Settings] = {
    # Colab's free T4: 15 GB, fp16, no vLLM (the `t4` extra), so gpu_memory_utilization is unused there. A 1.5B
    # instruct model in 16-bit with rank-64 LoRA fits; lr 5e-6 as in Unsloth's GRPO notebooks.
    "colab-t4": Settings(
        profile="colab-t4", model_name="unsloth/Qwen2.5-1.5B-Instruct", max_seq_length=1024, lora_rank=64,
        gpu_memory_utilization=0.6,
        sft_steps=60, sft_batch_size=4, sft_gradient_accumulation_steps=2, compliance_prompts=32, **_SFT_GPU,
        grpo_steps=250, grpo_learning_rate=5e-6, num_generations=8, max_completion_length=512, grpo_batch_size=8,
        grpo_temperature=1.0, grpo_data="gsm8k", group_filter="off", **_SAVE,
        eval_problems=200, eval_max_new_tokens=512, eval_gsm8k_problems=None, eval_svamp_problems=None),
    # gpu: 300 GRPO steps of 2 prompts x 16 completions x 512 tokens at lr 2e-5 after a 30-step SFT warm-up
    # (format, not answers: GRPO is left the accuracy to learn); measured with the embedded model on an H200
    # through Unsloth + vLLM (README "Results on a GPU").
    "gpu": Settings(
        profile="gpu", model_name="unsloth/Qwen2.5-3B-Instruct", max_seq_length=2048, lora_rank=64,
        gpu_memory_utilization=0.7,
        sft_steps=30, sft_batch_size=8, sft_gradient_accumulation_steps=1, compliance_prompts=64, **_SFT_GPU,
        grpo_steps=300, grpo_learning_rate=2e-5, num_generations=16, max_completion_length=512, grpo_batch_size=32,
        grpo_temperature=1.0, grpo_data="gsm8k", group_filter="off", **_SAVE,
        eval_problems=500, eval_max_new_tokens=512, eval_gsm8k_problems=None, eval_svamp_problems=None),
    # cpu (benchmarks/learning_cpu/README.md): a 24-step SFT warm-up at 5e-4 learns the format and part of the arithmetic;
    # 14 GRPO steps of 2 prompts x 4 completions x 80 tokens at T 0.7, lr 1e-4 (~20 s each on 2 cores), groups
    # without reward spread dropped from the loss (+0/+14/+3 points over the warm-up against -11/+6/-2 when
    # resampled). GSM8K is skipped in the evaluation: the 135M model solves about 1 problem in 64; SVAMP gets one
    # batch of 32 (145 s for base + SFT + GRPO on one thread; the warm-up solves 7.5% of it: benchmarks/svamp_cpu/README.md).
    "cpu": Settings(
        profile="cpu", model_name=None, max_seq_length=512, lora_rank=64, gpu_memory_utilization=0.0,
        sft_steps=24, sft_learning_rate=5e-4, sft_batch_size=4, sft_gradient_accumulation_steps=1,
        sft_warmup_ratio=0.1, sft_train_problems=256, compliance_prompts=16, compliance_max_new_tokens=96,
        grpo_steps=14, grpo_learning_rate=1e-4, num_generations=4, max_completion_length=80, grpo_batch_size=8,
        grpo_temperature=0.7, grpo_warmup_ratio=0.1, save_steps=8, save_total_limit=2, grpo_data="synthetic",
        train_levels=(1, 2, 3), group_filter="drop",
        eval_problems=64, eval_max_new_tokens=96, eval_gsm8k_problems=0, eval_svamp_problems=32),
    # ci: seconds per notebook; 3 GRPO steps (~20 s each on a busy 2-core machine); slices of 4 GSM8K and SVAMP
    # problems exercise those paths.
    "ci": Settings(
        profile="ci", model_name=None, max_seq_length=256, lora_rank=64, gpu_memory_utilization=0.0,
        sft_steps=4, sft_learning_rate=1e-3, sft_batch_size=4, sft_gradient_accumulation_steps=1,
        sft_warmup_ratio=0.0, sft_train_problems=256, compliance_prompts=4, compliance_max_new_tokens=48,
        grpo_steps=3, grpo_learning_rate=1e-4, num_generations=4, max_completion_length=24, grpo_batch_size=4,
        grpo_temperature=1.0, grpo_warmup_ratio=0.0, save_steps=2, save_total_limit=2, grpo_data="synthetic",
        train_levels=(1, 2, 3), group_filter="off",
        eval_problems=8, eval_max_new_tokens=32, eval_gsm8k_problems=4, eval_svamp_problems=4),
}


class ProfileError(ValueError):
    """An unknown profile name; the message names where it came from and the fix, on one line."""


def check_profile(name: str, source: str = "profile") -> str:
    """``name`` as a known profile (case and surrounding spaces ignored), else :class:`ProfileError`.

    >>> check_profile(" CPU ")
    'cpu'
    """
    value = str(name).strip().lower()
    if value not in PROFILES:
        raise ProfileError(f"{source}={name!r} is not a profile; fix: use one of {', '.join(PROFILES)} "
                           f"(or leave {PROFILE_ENV} unset to pick one from the hardware).")
    return value


def pick_profile(hw: Hardware | None = None, env: dict | None = None) -> str:
    """The profile for this machine, or ``GRPO_PROFILE`` when set (refused with :class:`ProfileError`,
    one line, if it is not a known profile)."""
    env = os.environ if env is None else env
    forced = env.get(PROFILE_ENV, "").strip()
    if forced:
        return check_profile(forced, PROFILE_ENV)
    hw = detect() if hw is None else hw
    if not hw.cuda:
        return "cpu"
    return "colab-t4" if hw.t4_class or (hw.vram_gib or 0) < 20 else "gpu"


def use_profile(profile: str | None = None) -> str:
    """Resolve the profile (a notebook's parameter, else ``GRPO_PROFILE``, else the hardware) and
    export it as ``GRPO_PROFILE`` so every helper called afterwards sizes itself the same way. In a notebook on
    Unsloth's path it first imports Unsloth, before any cell imports transformers (``import_unsloth_first``)."""
    import_unsloth_first()
    if profile:
        os.environ[PROFILE_ENV] = check_profile(profile)
    resolved = pick_profile()
    os.environ[PROFILE_ENV] = resolved
    return resolved


def profile_settings(profile: str | None = None, **values) -> Settings:
    """The row of ``profile`` (default: detected, or ``$GRPO_PROFILE``) with ``values`` applied; a value of
    ``None`` keeps the profile's, so a notebook passes its parameters as they are. An unknown name is refused
    (one line, with the names that exist); a new ``num_generations`` that the profile's batch does not hold
    whole sets ``grpo_batch_size`` to one group per step.

    >>> profile_settings("ci", grpo_steps=7, sft_steps=None).grpo_steps, profile_settings("ci").sft_steps
    (7, 4)
    """
    profile = check_profile(profile or pick_profile())
    names = {f.name for f in fields(Settings)} - {"profile"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; fix: use one of {sorted(names)}.")
    given = {k: v for k, v in values.items() if v is not None}
    row = PROFILE_TABLE[profile]
    generations = given.get("num_generations")
    if generations and "grpo_batch_size" not in given and isinstance(generations, int) and generations > 0 \
            and row.grpo_batch_size % generations:
        given["grpo_batch_size"] = generations
    return replace(row, **given)
