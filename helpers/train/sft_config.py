"""The SFT warm-up's settings (:class:`SFTSettings`): per-profile defaults, checks with one-line errors, and
the ``trl.SFTConfig`` they become on this machine. ``helpers.train.sft`` re-exports :class:`SFTSettings`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from helpers.runtime.hardware import Hardware, detect, importable
from helpers.runtime.profiles import PROFILES, check_overrides, pick_profile, settings

# Per-profile defaults (the step count and sequence length come from helpers.runtime.profiles).
#   learning_rate: 2e-4 is the usual LoRA SFT rate (Unsloth's notebooks). The CPU profiles train the
#     135M model for few steps: 5e-4 for 30 steps took it from 0% to 100% format compliance on
#     held-out prompts (cpu), and 1e-3 for 4-6 steps to 25-100% (ci).
#   compliance_*: how many held-out prompts are generated greedily before and after, and how long
#     (a worked solution of the synthetic problems is 30-70 tokens; GSM8K's need 150-250).
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "colab-t4": dict(learning_rate=2e-4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                     compliance_prompts=32, compliance_max_new_tokens=256),
    "gpu": dict(learning_rate=2e-4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                compliance_prompts=64, compliance_max_new_tokens=256),
    "cpu": dict(learning_rate=5e-4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                compliance_prompts=16, compliance_max_new_tokens=96),
    "ci": dict(learning_rate=1e-3, per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_ratio=0.0,
               compliance_prompts=4, compliance_max_new_tokens=48),
}


def _precision(hw: Hardware) -> tuple[bool, bool]:
    """``(fp16, bf16)``: bf16 where the GPU supports it, fp16 on a T4-class GPU, neither on a CPU."""
    if not hw.cuda:
        return False, False
    return (not hw.bf16), hw.bf16


@dataclass
class SFTSettings:
    """The warm-up's settings; ``SFTSettings.for_profile()`` sizes them for the machine.

    Invalid values are refused with a message that names the fix.
    """

    profile: str = field(metadata={"help": "the profile these settings were sized for (helpers.runtime.profiles.PROFILES)"})
    max_steps: int = field(metadata={"help": "optimizer steps; a warm-up needs only enough to learn the format"})
    learning_rate: float = field(metadata={"help": "peak learning rate of the LoRA weights (linear decay after warm-up)"})
    per_device_train_batch_size: int = field(metadata={"help": "worked solutions per forward pass"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "forward passes per optimizer step"})
    max_length: int = field(default=512, metadata={"help": "tokens per example (prompt + completion); longer ones are cut"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of the steps spent warming the learning rate up"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=3407, metadata={"help": "seed of the data order and LoRA initialisation"})
    compliance_prompts: int = field(default=16, metadata={"help": "held-out prompts used to measure format compliance"})
    compliance_max_new_tokens: int = field(default=128, metadata={"help": "greedy tokens per compliance completion"})
    fp16: bool | None = field(default=None, metadata={"help": "None: on a GPU without bf16 (T4)"})
    bf16: bool | None = field(default=None, metadata={"help": "None: where the GPU supports it"})
    cpu_threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads while training (CPU only); None: the cores not already busy, 0: leave as is"})

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; fix: use one of {', '.join(PROFILES)}.")
        for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                     "compliance_max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer; fix: pass e.g. {name}=1 or more.")
        if self.compliance_prompts < 0:
            raise ValueError(f"compliance_prompts={self.compliance_prompts} is negative; fix: pass 0 to skip the check.")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and 0 < self.learning_rate <= 1e-2):
            raise ValueError(f"learning_rate={self.learning_rate!r} is outside (0, 1e-2]; fix: 2e-4 is the usual "
                             "LoRA SFT rate.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1); fix: e.g. 0.1.")
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 are both set; fix: choose one (bf16 where supported, fp16 on a T4).")

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides) -> SFTSettings:
        """The settings for ``profile`` (default: detected or ``$GRPO_PROFILE``), with ``overrides``."""
        profile = profile or pick_profile()
        sizes = settings(profile)
        values = dict(profile=profile, max_steps=sizes.sft_steps, max_length=sizes.max_seq_length,
                      **_PROFILE_DEFAULTS[profile])
        check_overrides(cls, overrides, "SFT")
        return cls(**{**values, **overrides})

    def trl_kwargs(self, output_dir: str | os.PathLike, hw: Hardware | None = None, *,
                   completion_only: bool = True) -> dict[str, Any]:
        """The keyword arguments of ``trl.SFTConfig`` (checked against TRL 1.15's ``sft_config.py``)."""
        hw = detect() if hw is None else hw
        fp16, bf16 = _precision(hw)
        fp16 = fp16 if self.fp16 is None else self.fp16
        bf16 = bf16 if self.bf16 is None else self.bf16
        if (fp16 or bf16) and not hw.cuda:
            raise ValueError("fp16/bf16 mixed precision was asked for on a CPU; fix: leave fp16 and bf16 at None.")
        if bf16 and hw.cuda and not hw.bf16:
            raise ValueError(f"{hw.gpu_name} has no bf16; fix: pass fp16=True (or leave both at None).")
        kwargs = dict(
            output_dir=str(output_dir),
            max_steps=self.max_steps,
            learning_rate=self.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=self.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of max_steps
            weight_decay=self.weight_decay,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_length=self.max_length,
            packing=False,
            completion_only_loss=True if completion_only else None,
            logging_steps=1,
            save_strategy="no",  # a warm-up is minutes; the adapter is saved once, atomically, at the end
            report_to="none",
            seed=self.seed,
            fp16=fp16,
            bf16=bf16,
            dataloader_num_workers=0,
            gradient_checkpointing=hw.cuda,  # a CPU run's activations are small; recomputing them only costs time
            disable_tqdm=True,
        )
        if not hw.cuda:
            kwargs["use_cpu"] = True
        if hw.cuda and _importable("bitsandbytes"):
            kwargs["optim"] = "adamw_8bit"
        if not completion_only:  # Unsloth's responses-only masking works on rendered text
            kwargs["dataset_text_field"] = "text"
        return kwargs

    def to_trl(self, output_dir: str | os.PathLike, hw: Hardware | None = None, *, completion_only: bool = True):
        """A ``trl.SFTConfig`` built from these settings."""
        import trl  # looked up at call time: after ``import unsloth`` this is Unsloth's patched class

        return trl.SFTConfig(**self.trl_kwargs(output_dir, hw, completion_only=completion_only))


def _importable(module: str) -> bool:
    return importable(module)
