"""Save what training produced: the LoRA adapter, a merged 16-bit model, and (on a GPU) GGUF files.

Three exports, each written into a temporary sibling folder and renamed into place, so a crash or a
full disk never leaves a half-written folder under the final name (:func:`atomic_folder`):

- :func:`save_lora`: the adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``, a
  few MB) with the tokenizer and its chat template. It needs the base model to be used.
- :func:`save_merged`: the adapter folded into the base weights, ``W + (alpha/r)·B·A``, saved as an
  ordinary transformers model in 16 bits with the tokenizer and chat template: any tool that loads a
  Hugging Face model (transformers, vLLM, llama.cpp's converter) loads it, no PEFT needed. Where
  unsloth is installed (a CUDA GPU) this is Unsloth's ``save_pretrained_merged(save_method=
  "merged_16bit")``; elsewhere PEFT's ``merge_and_unload``.
- :func:`helpers.save.gguf.export_gguf`: GGUF for llama.cpp / Ollama through Unsloth's ``save_pretrained_gguf`` (it
  builds llama.cpp; CUDA GPU only). Elsewhere it raises :class:`ExportUnavailable` saying why and
  what to do instead.

**Dtype (decided).** ``dtype=None`` keeps a model that is already 16-bit in its own dtype (bf16 on
most GPUs, fp16 on a T4, as loaded); a 32-bit model (the CPU profile) is saved in **bfloat16**: the
dtype the suite's models are published in, the one vLLM's CPU backend runs, and with fp32's range, so
no weight or activation can overflow when it is later run in 16 bits. ``dtype="float16"`` (or
``"float32"``) may be asked for. The merge itself is computed in the model's own precision and
rounded once, at the end. The price of bf16's range is precision (8 significant bits, fp16 has 11):
on the GRPO adapter of a CPU run, the bf16 export parted from the adapter-on model on one of three
greedy check prompts (a top-2 logit gap of 0.24), fp16 and fp32 exports reproduced all three exactly.
Ask for fp16 on a CPU when bit-exact greedy reproduction matters more than range.

**The caller's model is not touched (decided).** PEFT's ``merge_and_unload`` rewrites the layers it
merges; :func:`merge_lora` merges a deep copy instead (one extra copy of the weights in memory: 0.5
GB for the 135M CPU model), so the adapter model can keep training, generating or be saved again.
Unsloth's merged save reads the weights without modifying them.

**The reload check** lives in :mod:`helpers.save.reload_check`, the GGUF export in :mod:`helpers.save.gguf`.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from helpers.files.atomic import atomic_folder
from helpers.runtime.hardware import detect
from helpers.save.adapter import model_bytes, peft_active_adapter


class ExportUnavailable(RuntimeError):
    """An export cannot run here (e.g. GGUF without a CUDA GPU and unsloth); the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def parse_torch_dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "fp32": torch.float32, "float32": torch.float32}
    if str(dtype).lower() not in names:
        raise ValueError(f"dtype={dtype!r} is not supported for saving; fix: use 'bfloat16', 'float16' or 'float32'.")
    return names[str(dtype).lower()]


def merged_dtype(model, dtype=None):
    """The dtype a merged export is saved in: ``dtype`` if given; else the model's own if it is 16-bit;
    else bfloat16 (see the module docstring).

    >>> import torch
    >>> merged_dtype(torch.nn.Linear(2, 2)), merged_dtype(torch.nn.Linear(2, 2).half()), merged_dtype(None, "fp16")
    (torch.bfloat16, torch.float16, torch.float16)
    """
    import torch

    chosen = parse_torch_dtype(dtype)
    if chosen is not None:
        return chosen
    own = next(model.parameters()).dtype
    return own if own in (torch.bfloat16, torch.float16) else torch.bfloat16


def merge_lora(model, dtype=None):
    """A plain transformers model with ``model``'s active LoRA adapter merged into its weights,
    computed on a deep copy (``model`` is left as it was) and cast to :func:`merged_dtype` at the end."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"merge_lora needs a PeftModel, got {type(model).__name__}; "
                        "fix: pass the model with its LoRA adapter (helpers.model.adapters.load_adapter).")
    target = merged_dtype(model, dtype)
    merged = copy.deepcopy(model, memo=_shared_engines(model)).merge_and_unload(adapter_names=[peft_active_adapter(model)])
    merged = merged.to(target)
    merged.config.dtype = target
    merged.eval()
    return merged


def unsloth_merged_kwargs(tokenizer) -> dict:
    """Arguments for Unsloth's ``model.save_pretrained_merged(folder, **kwargs)`` (16-bit merge).

    >>> unsloth_merged_kwargs(None)
    {'tokenizer': None, 'save_method': 'merged_16bit', 'safe_serialization': True}
    """
    return {"tokenizer": tokenizer, "save_method": "merged_16bit", "safe_serialization": True}


def _shared_engines(model) -> dict:
    """A ``deepcopy`` memo that keeps a model's vLLM engine (Unsloth's ``fast_inference``) shared, not copied:
    an engine holds queues and CUDA state that cannot be copied ("cannot pickle '_queue.SimpleQueue'")."""
    memo = {}
    for module in model.modules():  # the engine hangs off the transformers model inside the PEFT wrappers
        for name in ("vllm_engine", "fast_generate", "fast_generate_batches"):
            value = vars(module).get(name)
            if value is not None:
                memo[id(value)] = value
    return memo


def unsloth_export(model, name: str) -> bool:
    """Whether ``model`` has Unsloth's export method ``name`` (``save_pretrained_merged``/``_gguf``) of its own.

    Unsloth's ``get_peft_model`` binds them on the PEFT model itself. A ``peft.PeftModel.from_pretrained``
    adapter (``load_adapter``) only forwards the attribute to the base model, whose method then refuses
    (Unsloth 2026.10, unsloth#11698: "This model has LoRA layers, but the save method was called on the
    base model"), so such a model is merged with PEFT instead.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return name in vars(model)
    return hasattr(model, name)


def _use_unsloth(model) -> bool:
    hw = detect()
    return hw.cuda and hw.unsloth and unsloth_export(model, "save_pretrained_merged")


def save_merged(model, tokenizer, out_dir: str | os.PathLike, *, dtype=None, use_unsloth: bool | None = None) -> Path:
    """Merge ``model``'s LoRA adapter into its weights and save a 16-bit transformers model with
    ``tokenizer`` (and its chat template) to ``out_dir``; returns the folder.

    ``use_unsloth=None`` uses Unsloth's ``save_pretrained_merged`` where it is available (CUDA +
    unsloth; it saves in the model's 16-bit dtype, ``dtype`` must then be None), else PEFT's
    ``merge_and_unload`` on a copy (:func:`merge_lora`). ``model`` is never modified.
    """
    out_dir = Path(out_dir)
    use_unsloth = _use_unsloth(model) if use_unsloth is None else use_unsloth
    with atomic_folder(out_dir, needed=model_bytes(model, bytes_per_param=2) + 2**22) as tmp:
        if use_unsloth:
            if dtype is not None:
                raise ValueError("Unsloth's merged save keeps the model's 16-bit dtype; fix: pass dtype=None, "
                                 "or use_unsloth=False to pick the dtype.")
            model.save_pretrained_merged(str(tmp), **unsloth_merged_kwargs(tokenizer))
        else:
            merged = merge_lora(model, dtype)
            merged.save_pretrained(tmp, safe_serialization=True)
            del merged
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
    return out_dir
