"""Per-profile sizes: one table that every stage reads, so a notebook never hard-codes a size.

``settings()`` returns the row for the current profile (``helpers.runtime.profiles.pick_profile``). The
values are starting points a user may override in a notebook's parameters cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from helpers.runtime.hardware import Hardware, detect

PROFILES = ("colab-t4", "gpu", "cpu", "ci")
PROFILE_ENV = "GRPO_PROFILE"


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
    export it as ``GRPO_PROFILE`` so every helper called afterwards sizes itself the same way."""
    if profile:
        os.environ[PROFILE_ENV] = check_profile(profile)
    resolved = pick_profile()
    os.environ[PROFILE_ENV] = resolved
    return resolved


@dataclass(frozen=True)
class Settings:
    profile: str
    model_name: str | None  # None: the embedded offline model (helpers.model.embedded.EMBEDDED_MODEL)
    max_seq_length: int
    lora_rank: int
    gpu_memory_utilization: float
    # generation and GRPO sizes
    num_generations: int
    max_completion_length: int
    per_device_batch_size: int
    grpo_steps: int
    sft_steps: int
    # evaluation
    eval_problems: int
    eval_max_new_tokens: int
    # GRPO data and zero-spread groups (synthetic problems: helpers.data.problems levels; helpers.train.group_filter modes)
    grpo_levels: tuple[int, ...] = (1, 2, 3)
    group_filter: str = "off"


_TABLE = {
    # Colab's free T4: 15 GB, fp16, no vLLM (the `t4` extra: benchmarks/t4.md), so gpu_memory_utilization
    # is unused there. A 1.5B instruct model in 16-bit with rank-64 LoRA fits.
    "colab-t4": Settings("colab-t4", "unsloth/Qwen2.5-1.5B-Instruct", 1024, 64, 0.6, 8, 512, 8, 250, 60, 200, 512),
    # gpu: 300 GRPO steps of 2 prompts x 16 completions x 512 tokens after a 30-step SFT warm-up (format,
    # not answers: GRPO is left the accuracy to learn); measured with the embedded model on an H200
    # through Unsloth + vLLM (README "Results on a GPU", benchmarks/gpu_e2e/).
    "gpu": Settings("gpu", "unsloth/Qwen2.5-3B-Instruct", 2048, 64, 0.7, 16, 512, 32, 300, 30, 500, 512),
    # cpu (issue 15, benchmarks/learning.md): a 24-step SFT warm-up learns the format and part of the
    # arithmetic; 14 GRPO steps of 2 prompts x 4 completions x 80 tokens (~20 s each on 2 cores) then
    # train on the answers, zero-spread groups dropped from the loss (helpers.train.group_filter): against
    # resampling them, GRPO's gain over the warm-up was +0/+14/+3 points instead of -11/+6/-2 on the same
    # warm-ups, and the steps are cheaper. README "Results" has what it reached.
    "cpu": Settings("cpu", None, 512, 64, 0.0, 4, 80, 8, 14, 24, 64, 96, group_filter="drop"),
    # ci: 3 GRPO steps (~20 s each on a busy 2-core machine) keep notebook 07 under two minutes.
    "ci": Settings("ci", None, 256, 64, 0.0, 4, 24, 4, 3, 4, 8, 32),
}


def settings(profile: str | None = None, **overrides) -> Settings:
    """The sizes for ``profile`` (default: the detected or ``GRPO_PROFILE`` one), with ``overrides`` applied."""
    profile = profile or pick_profile()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    return replace(_TABLE[profile], **overrides)


def check_overrides(cls, overrides: dict, what: str) -> None:
    """Refuse keyword ``overrides`` that are not fields of the settings dataclass ``cls`` (one line naming the
    fields); ``what`` names the stage in the message ("SFT", "GRPO")."""
    names = {f.name for f in fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown {what} setting(s) {sorted(unknown)}; fix: use one of {sorted(names)}.")


def settings_table(obj) -> str:
    """A settings dataclass (``SFTSettings``, ``GRPOSettings``) as text: one line per field with its value and
    its help text, as notebooks 06 and 07 show them."""
    return "\n".join(f"{f.name:>28} = {getattr(obj, f.name)!s:<10}  {f.metadata.get('help', '')}" for f in fields(obj))
