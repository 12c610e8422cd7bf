"""Several processes (one per GPU, or gloo on a CPU) launched by ``accelerate launch`` / ``torchrun``.

The launcher sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; these helpers read them (so they work
before the trainer creates the process group) and let one process, rank 0, own the run folder:
moving old checkpoints aside, writing the final adapter, the metrics JSONL and the plots (the
dashboard checks ``state.is_world_process_zero`` itself). A single process is rank 0 of 1.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run (``$WORLD_SIZE``, 1 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's rank (``$RANK``, 0 when alone)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's GPU index on its machine (``$LOCAL_RANK``, 0 when alone)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main_process() -> bool:
    """Whether this process writes the run folder (rank 0; a single process is)."""
    return rank() == 0


PLAIN_TRL_ENV = "GRPO_PLAIN_TRL"


def plain_trl() -> bool:
    """Whether to load with transformers + PEFT and train with TRL as it comes (vLLM colocate where vLLM
    runs) instead of Unsloth: always with several processes (Unsloth's open-source path is single-GPU),
    and on one process when ``$GRPO_PLAIN_TRL`` is 1 (the one-GPU baseline of the multi-GPU path)."""
    value = os.environ.get(PLAIN_TRL_ENV, "").strip().lower()
    if value not in ("", "0", "1", "false", "true"):
        raise ValueError(f"{PLAIN_TRL_ENV}={value!r} is not 0 or 1; fix: unset it, or set 1 for plain TRL + PEFT.")
    return world_size() > 1 or value in ("1", "true")


def unsloth_path(hw) -> bool:
    """Whether this process loads and trains through Unsloth: a CUDA GPU with unsloth installed, and not
    the plain-TRL path (:func:`plain_trl`). ``helpers.model.load``, ``helpers.model.lora``, ``helpers.train.sft`` and
    notebooks 06 and 07 (``helpers.train.sft``, ``helpers.train.trainer_args``) all ask this, so a model is never loaded one way and trained the other."""
    return bool(hw.cuda and hw.unsloth) and not plain_trl()


def barrier() -> None:
    """Wait for every process; a no-op for one process, with or without a process group (vLLM and Unsloth start a
    group of one on a single GPU, where NCCL's barrier warned "Guessing device ID based on global rank" after each
    saved adapter: H100, 2026-12-06)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Destroy the process group the trainer created, if any: without it torch warns at exit on every rank
    ("destroy_process_group() was not called before program exit, which can leak resources"), as the two-GPU
    run of 2026-11-30 did. A no-op for a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
