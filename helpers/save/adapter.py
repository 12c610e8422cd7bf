"""Saving a LoRA adapter (with the tokenizer and its chat template) atomically: :func:`save_lora` for an
export, :func:`save_adapter` for the adapter a training stage hands on, with what it was trained on."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

from helpers.files.atomic import atomic_folder
from helpers.model.adapters import TRAINING_RECORD, check_adapter_dir, demo_adapter, load_adapter
from helpers.runtime.distributed import barrier, is_main_process, world_size


def model_bytes(model, *, trainable_only: bool = False, bytes_per_param: int | None = None) -> int:
    """Bytes the parameters of ``model`` take on disk (all, or the trainable ones: a LoRA adapter), in
    their own dtype unless ``bytes_per_param`` is given; 0 if it cannot tell."""
    try:
        params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
        return sum(p.numel() * (bytes_per_param or p.element_size()) for p in params)
    except Exception:
        return 0


def peft_active_adapter(model) -> str:
    active = getattr(model, "active_adapter", "default")
    return active[0] if isinstance(active, list | tuple) else active


def folder_listing(folder: str | os.PathLike) -> str:
    """What a save wrote: ``folder`` with its total size, then each file with its size (MB), by name."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    lines = [f"{folder}  ({sum(p.stat().st_size for p in files) / 2**20:.1f} MB)"]
    lines += [f"  {p.name:<28} {p.stat().st_size / 2**20:8.2f} MB" for p in files]
    return "\n".join(lines)


def save_lora(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save the active LoRA adapter of ``model`` (a ``PeftModel``) and ``tokenizer`` to ``out_dir``
    as ``adapter_config.json`` + ``adapter_model.safetensors`` + tokenizer files; returns the folder."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"save_lora needs a PeftModel (a model with a LoRA adapter), got {type(model).__name__}; "
                        "fix: pass the model returned by helpers.model.lora.add_lora or helpers.model.adapters.load_adapter.")
    out_dir = Path(out_dir)
    name = peft_active_adapter(model)
    with atomic_folder(out_dir, needed=model_bytes(model, trainable_only=True) + 2**22) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[name])
        if name != "default":  # PEFT writes a non-default adapter into a subfolder named after it
            for item in (tmp / name).iterdir():
                os.replace(item, tmp / item.name)
            (tmp / name).rmdir()
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    check_adapter_dir(out_dir)
    return out_dir


def save_adapter(model, tokenizer, dest: str | os.PathLike, *, info: dict | None = None) -> Path:
    """Save ``model``'s LoRA adapter (safetensors), the tokenizer and ``info`` (``training.json``) to
    ``dest`` atomically (:func:`atomic_folder`): an older ``dest`` is replaced only once the
    new one is complete."""
    dest = Path(dest)
    with atomic_folder(dest, needed=model_bytes(model, trainable_only=True) + 2**22) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if info is not None:
            (staging / TRAINING_RECORD).write_text(json.dumps(info, indent=2, default=str))
        if not (staging / "adapter_model.safetensors").exists():
            raise RuntimeError(f"saving wrote no adapter_model.safetensors to {staging}; fix: pass a PEFT (LoRA) model.")
    return dest


RECIPE_ARGS = ("max_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm",
               "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
               "max_completion_length", "temperature", "beta", "loss_type", "scale_rewards", "reward_weights",
               "max_length", "seed")


def save_trained(trainer, tokenizer, dest: str | os.PathLike, *, stage: str, **info) -> Path:
    """Save the adapter ``trainer`` trained to ``dest`` (:func:`save_adapter`, atomic) with ``training.json``:
    the ``stage``, the base model, the steps, the number of processes, the recipe's arguments of the trainer's
    config (``RECIPE_ARGS``) and ``info`` (dataclasses, e.g. the profile's settings, as dicts). Rank 0 writes; every process returns once the adapter is on disk."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    info = {k: asdict(v) if is_dataclass(v) else v for k, v in info.items()}
    config = {k: getattr(trainer.args, k) for k in RECIPE_ARGS if hasattr(trainer.args, k)}
    record = {"stage": stage, "base_model": getattr(getattr(model, "config", None), "name_or_path", None),
              "steps": trainer.state.global_step, "processes": world_size(), "config": config, **info}
    if is_main_process():
        save_adapter(model, tokenizer, dest, info=record)
    barrier()
    return Path(dest)


def adapter_to_export(model, adapters: dict[str, Path], folder: str | os.PathLike):
    """``(peft_model, folders)``: ``model`` with the last adapter trained (``adapters``: ``find_adapters``' GRPO,
    else SFT), or, when there is none, an untrained demo adapter (random weights: it changes outputs and knows
    nothing), said in one line either way; ``folders`` maps each export ("lora", "merged_16bit", "gguf") to its
    folder under ``folder``, named ``demo_*`` for the demo adapter so it is never mistaken for a trained one."""
    final = next(reversed(adapters), None)
    if final is None:
        print("no trained adapter in this run folder: exporting an UNTRAINED demo adapter (random weights), only to "
              "show how saving works; run notebooks 06 and 07 first for a real one", flush=True)
        peft_model, prefix = demo_adapter(model), "demo_"
    else:
        print(f"exporting the {final.upper()} adapter from {adapters[final]}", flush=True)
        peft_model, prefix = load_adapter(model, adapters[final], trained=True), ""
    return peft_model, {name: Path(folder) / f"{prefix}{name}" for name in ("lora", "merged_16bit", "gguf")}
