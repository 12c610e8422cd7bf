"""What a profile sets: :class:`Settings`, one field per per-profile value of the suite, each with its help
text, grouped by the stage that reads it (``metadata["stage"]``: model, sft, grpo, eval), and checked in
``__post_init__`` with a one-line error in the field's own name (which is also the notebook parameter's).

The values of each profile are rows of one table, ``helpers.runtime.profiles.PROFILE_TABLE``; a notebook
takes its row with ``profile_settings(profile, **parameters)`` and passes the values on to TRL's
``SFTConfig`` / ``GRPOConfig`` and to the evaluation, so no stage keeps a size of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from helpers.train.group_filter import MODES

GROUP_FILTERS = tuple(MODES)
GRPO_DATA = ("gsm8k", "synthetic")
LEVELS = (1, 2, 3)  # the synthetic problems' difficulty levels (helpers.data.synthetic)
LORA_RANKS = (8, 16, 32, 64, 128)  # the LoRA ranks helpers.model.lora.add_lora takes


def _f(stage: str, help: str, **kwargs):
    return field(metadata={"stage": stage, "help": help}, **kwargs)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Settings:
    """Every per-profile value; invalid values are refused with the field's name and the fix."""

    profile: str = _f("model", "the profile this row belongs to (colab-t4, gpu, cpu, ci)")
    # -- model (notebooks 01, 02) ------------------------------------------------------------------------
    model_name: str | None = _f("model", "the model to load (a hub id); None: the embedded offline "
                                         "SmolLM2-135M-Instruct")
    max_seq_length: int = _f("model", "prompt + completion tokens the model (and vLLM) is set up for; longer "
                                      "GRPO prompts are dropped from the dataset")
    lora_rank: int = _f("model", "LoRA rank on every linear layer (alpha = rank): 64 is the RL default")
    gpu_memory_utilization: float = _f("model", "share of GPU memory vLLM may take (0: no vLLM on this profile); "
                                                "in Unsloth's standby mode (on where vLLM runs, unless "
                                                "UNSLOTH_VLLM_STANDBY=0) Unsloth sets its own (0.88 on an 80 GB "
                                                "H100), as vLLM sleeps while training runs")
    # -- SFT warm-up (notebook 06) -----------------------------------------------------------------------
    sft_steps: int = _f("sft", "SFT optimizer steps: a warm-up needs only enough to learn the format")
    sft_learning_rate: float = _f("sft", "SFT peak learning rate (linear decay after warm-up); 2e-4 is the "
                                         "usual LoRA rate, the CPU profiles' few steps take more")
    sft_batch_size: int = _f("sft", "worked solutions per forward pass (per_device_train_batch_size)")
    sft_gradient_accumulation_steps: int = _f("sft", "forward passes per SFT optimizer step")
    sft_warmup_ratio: float = _f("sft", "share of the SFT steps spent warming the learning rate up")
    sft_train_problems: int = _f("sft", "synthetic worked solutions the warm-up draws from (the train part)")
    compliance_prompts: int = _f("sft", "held-out prompts on which format compliance is measured before and "
                                        "after the warm-up (greedy); 0: skip")
    compliance_max_new_tokens: int = _f("sft", "greedy tokens per compliance completion")
    # -- GRPO (notebook 07) ------------------------------------------------------------------------------
    grpo_steps: int = _f("grpo", "GRPO optimizer steps; each samples and scores one generation batch")
    grpo_learning_rate: float = _f("grpo", "GRPO peak learning rate of the LoRA weights: 5e-6 to 2e-5 on a "
                                           "GPU; larger on the CPU profiles (few steps, small model)")
    num_generations: int = _f("grpo", "completions sampled per prompt (the group): advantages are relative "
                                      "to the group, so more give a better baseline and more reward spread")
    max_completion_length: int = _f("grpo", "tokens a completion may have; longer ones are cut (and usually "
                                            "lose their answer tag)")
    grpo_batch_size: int = _f("grpo", "completions (not prompts) per step (per_device_train_batch_size): "
                                      "whole groups, a multiple of num_generations")
    grpo_temperature: float = _f("grpo", "sampling temperature of the rollouts: > 0, since identical "
                                         "completions have no reward spread")
    grpo_warmup_ratio: float = _f("grpo", "share of the GRPO steps spent warming the learning rate up")
    save_steps: int = _f("grpo", "write a checkpoint every this many steps (resume needs one)")
    save_total_limit: int = _f("grpo", "keep only this many newest checkpoints")
    grpo_data: str = _f("grpo", "training problems for a hub model: 'gsm8k' (GSM8K's train split) or "
                                "'synthetic'; the embedded 135M model always trains on synthetic problems")
    train_levels: tuple[int, ...] = _f("grpo", "difficulty levels (arithmetic steps) of the synthetic "
                                               "training problems")
    group_filter: str = _f("grpo", "groups whose completions all scored the same: 'off' trains on them as TRL "
                                   "does, 'drop' leaves them out of the loss, 'resample' replaces them")
    # -- evaluation (notebook 08) ------------------------------------------------------------------------
    eval_problems: int = _f("eval", "held-out problems per set (synthetic; the paraphrased set gets half)")
    eval_max_new_tokens: int = _f("eval", "greedy tokens per held-out completion")
    eval_gsm8k_problems: int | None = _f("eval", "GSM8K test problems; None: eval_problems, 0: skip (a 135M "
                                                 "model solves almost none)")
    eval_svamp_problems: int | None = _f("eval", "SVAMP problems (human-written, public); None: eval_problems, "
                                                 "0: skip")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if not isinstance(value, int) or isinstance(value, bool) or value < (0 if f.name in _ZERO_OK else 1):
                    least = 0 if f.name in _ZERO_OK else 1
                    raise ValueError(f"{f.name}={value!r} must be a whole number >= {least}; fix: e.g. "
                                     f"{f.name}={max(least, 1)} or more.")
        for name, high in (("sft_learning_rate", 1e-2), ("grpo_learning_rate", 1e-3)):
            value = getattr(self, name)
            if not (_number(value) and 0 < value <= high):
                raise ValueError(f"{name}={value!r} is outside (0, {high:g}]; fix: e.g. 2e-4 for SFT, 5e-6 to 1e-4 "
                                 "for GRPO.")
        for name in ("sft_warmup_ratio", "grpo_warmup_ratio"):
            if not (_number(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1); fix: e.g. 0.1.")
        if not (_number(self.gpu_memory_utilization) and 0 <= self.gpu_memory_utilization < 1):
            raise ValueError(f"gpu_memory_utilization={self.gpu_memory_utilization!r} must be in [0, 1); fix: e.g. 0.6.")
        if not (_number(self.grpo_temperature) and 0 < self.grpo_temperature <= 10):
            raise ValueError(f"grpo_temperature={self.grpo_temperature!r}: GRPO must sample (0 gives identical "
                             "completions, no reward spread, no learning); fix: use 0.7-1.0.")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: GRPO compares at least 2 completions per "
                             "prompt (advantage = reward - group mean); fix: 8-16 on a GPU, 4-8 on a CPU.")
        if self.grpo_batch_size % self.num_generations:
            raise ValueError(f"grpo_batch_size={self.grpo_batch_size} is not a multiple of num_generations="
                             f"{self.num_generations}: every step must hold whole groups; fix: grpo_batch_size="
                             f"{self.num_generations} (or another multiple of it).")
        if self.max_completion_length >= self.max_seq_length:
            raise ValueError(f"max_completion_length={self.max_completion_length} leaves no room for the prompt in "
                             f"max_seq_length={self.max_seq_length}; fix: lower max_completion_length.")
        if self.lora_rank not in LORA_RANKS:
            raise ValueError(f"lora_rank={self.lora_rank} is not supported; fix: one of "
                             f"{', '.join(map(str, LORA_RANKS))} (64 is the RL default).")
        if self.group_filter not in GROUP_FILTERS:
            raise ValueError(f"group_filter={self.group_filter!r}; fix: one of {', '.join(GROUP_FILTERS)}.")
        if self.grpo_data not in GRPO_DATA:
            raise ValueError(f"grpo_data={self.grpo_data!r}; fix: one of {', '.join(GRPO_DATA)}.")
        levels = (self.train_levels,) if isinstance(self.train_levels, int) else tuple(self.train_levels)
        if not levels or not set(levels) <= set(LEVELS):
            raise ValueError(f"train_levels={self.train_levels!r}; fix: some of {LEVELS}, e.g. (1, 2).")
        object.__setattr__(self, "train_levels", levels)
        for name in ("eval_gsm8k_problems", "eval_svamp_problems"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name}={value!r}; fix: None, 0 or a number of problems.")

    @property
    def grpo_prompts_drawn(self) -> int:
        """Prompts GRPO draws over the run: ``grpo_steps`` x the groups in each step's batch."""
        return self.grpo_steps * self.grpo_batch_size // self.num_generations

    def table(self, stage: str) -> str:
        """The fields of one ``stage`` ("model", "sft", "grpo", "eval") as text: name, value, help."""
        return "\n".join(f"{f.name:>26} = {getattr(self, f.name)!s:<12} {f.metadata['help']}"
                         for f in fields(self) if f.metadata["stage"] == stage)


_ZERO_OK = {"compliance_prompts"}  # 0 compliance prompts skips the check
