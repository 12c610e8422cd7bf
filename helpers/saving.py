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
- :func:`helpers.gguf_export.export_gguf`: GGUF for llama.cpp / Ollama through Unsloth's ``save_pretrained_gguf`` (it
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

**The reload check** lives in :mod:`helpers.reload_check`, the GGUF export in :mod:`helpers.gguf_export`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from .runtime import detect

log = logging.getLogger(__name__)

__all__ = [
    "AdapterLoadError", "ExportUnavailable", "adapter_weights_file", "atomic_folder", "check_adapter_dir", "demo_adapter",
    "folder_listing",
    "load_adapter", "merge_lora", "merged_dtype", "model_bytes", "save_adapter", "save_lora", "save_merged",
    "unsloth_export", "unsloth_merged_kwargs",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class AdapterLoadError(RuntimeError):
    """An adapter folder could not be used; the message names the cause and the fix on one line."""


class ExportUnavailable(RuntimeError):
    """An export cannot run here (e.g. GGUF without a CUDA GPU and unsloth); the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Atomic folders
# ---------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(final: Path) -> None:
    """Delete ``.<name>.partial-<pid>-*`` folders left by processes that no longer run."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        try:
            pid = int(stale.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder(final: str | os.PathLike, *, needed: int | None = None):
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final`` by a rename.

    On an exception the temporary folder is deleted and ``final`` (if it existed) is left as it was.
    ``final`` is never a half-written folder: it is the old complete folder, briefly absent during
    the swap, then the new complete one. Partial folders of killed processes are cleaned up on the
    next save to the same place. A full or read-only disk raises ``helpers.safety.DiskFullError`` /
    ``ReadOnlyError`` (one line: the folder, the space free and ``needed``, the fix).
    """
    from .safety import on_full_disk

    final = Path(final)
    with on_full_disk(final.parent, needed=needed, what=final.name):
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from .safety import disk_error

        converted = disk_error(exc, final.parent, needed=needed, what=final.name) if isinstance(exc, Exception) else None
        if converted is not None:
            raise converted from None
        raise


def model_bytes(model, *, trainable_only: bool = False, bytes_per_param: int | None = None) -> int:
    """Bytes the parameters of ``model`` take on disk (all, or the trainable ones: a LoRA adapter), in
    their own dtype unless ``bytes_per_param`` is given; 0 if it cannot tell."""
    try:
        params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
        return sum(p.numel() * (bytes_per_param or p.element_size()) for p in params)
    except Exception:
        return 0


# ---------------------------------------------------------------------------------------------
# Loading and checking adapters
# ---------------------------------------------------------------------------------------------


def adapter_weights_file(adapter_dir: str | os.PathLike) -> Path:
    return Path(adapter_dir) / ADAPTER_WEIGHTS


def check_adapter_dir(adapter_dir: str | os.PathLike) -> dict:
    """Validate a LoRA adapter folder and return its ``adapter_config.json``; raise
    :class:`AdapterLoadError` with a one-line cause and fix for a missing folder, a missing or
    unreadable config, missing weights, pickle-only weights, or a corrupt safetensors file."""
    folder = Path(adapter_dir)
    hint = "fix: train one first (notebook 06 or 07), or pass the folder that holds adapter_config.json."
    if not folder.exists():
        raise AdapterLoadError(f"no adapter at {folder}: the folder does not exist; {hint}")
    if not folder.is_dir():
        raise AdapterLoadError(f"no adapter at {folder}: it is a file, not a folder; {hint}")
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        raise AdapterLoadError(f"{folder} is not a LoRA adapter folder: it has no {ADAPTER_CONFIG}; {hint}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "peft_type" not in config:
            raise ValueError("no peft_type")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterLoadError(f"{config_file} is not a valid PEFT adapter config ({exc.__class__.__name__}: {exc}); "
                               "fix: save the adapter again (model.save_pretrained or helpers.saving.save_lora).") from None
    weights = adapter_weights_file(folder)
    if not weights.is_file():
        if (folder / "adapter_model.bin").is_file():
            raise AdapterLoadError(f"{folder} holds only adapter_model.bin (a pickle, which this suite never loads); "
                                   "fix: re-save it as safetensors: model.save_pretrained(folder, safe_serialization=True).")
        raise AdapterLoadError(f"{folder} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}: the save did not finish; "
                               "fix: save the adapter again.")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            keys = list(fh.keys())
            for key in keys:
                fh.get_tensor(key)
        if not keys:
            raise ValueError("it holds no tensors")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise AdapterLoadError(f"{weights} is corrupt or truncated ({reason}); "
                               "fix: save the adapter again, or copy the folder over once more.") from None
    return config


def load_adapter(base=None, adapter_dir: str | os.PathLike = None, *, adapter_name: str = "default",
                 is_trainable: bool = False):
    """A ``PeftModel``: ``base`` with the LoRA adapter from ``adapter_dir`` loaded (and active).

    ``base`` is a model, a model name or folder (loaded with :func:`helpers.loading.load_model`), or
    ``None`` for the profile's default model. Passing a ``PeftModel`` adds the adapter to it under
    ``adapter_name`` (several adapters on one base; switch with ``set_adapter``). The folder is
    validated first (:func:`check_adapter_dir`); an adapter made for another base model fails with
    a one-line :class:`AdapterLoadError` naming the base it was made for. As PEFT does, the base
    model's layers are wrapped in place.
    """
    if adapter_dir is None:
        raise AdapterLoadError("no adapter folder given; fix: pass adapter_dir=RunLayout().grpo_adapter (or sft_adapter).")
    config = check_adapter_dir(adapter_dir)
    if base is None or isinstance(base, str | os.PathLike):
        from .loading import load_model

        base, _ = load_model(None if base is None else str(base))
    from peft import PeftModel

    try:
        if isinstance(base, PeftModel):
            base.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
            base.set_adapter(adapter_name)
            return base
        return PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        made_for = config.get("base_model_name_or_path") or "an unknown base model"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise AdapterLoadError(f"the adapter at {adapter_dir} does not fit this model ({first[:200]}); "
                               f"fix: load the base model it was trained on ({made_for}).") from None


def demo_adapter(model, *, rank: int = 16, scale: float = 0.05, seed: int = 0):
    """An *untrained* LoRA adapter with random ``B`` matrices (LoRA starts with ``B = 0``, i.e. no
    change): a stand-in that changes the model's outputs, so saving, merging and the reload check
    can be shown when no trained adapter exists. It is not a trained model; never evaluate it as one."""
    import torch

    from .lora import add_lora

    peft_model, _ = add_lora(model, rank=rank, gradient_checkpointing=False, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return peft_model


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def _torch_dtype(dtype):
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

    chosen = _torch_dtype(dtype)
    if chosen is not None:
        return chosen
    own = next(model.parameters()).dtype
    return own if own in (torch.bfloat16, torch.float16) else torch.bfloat16


def _peft_active_adapter(model) -> str:
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
                        "fix: pass the model returned by helpers.lora.add_lora or helpers.saving.load_adapter.")
    out_dir = Path(out_dir)
    name = _peft_active_adapter(model)
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


def merge_lora(model, dtype=None):
    """A plain transformers model with ``model``'s active LoRA adapter merged into its weights,
    computed on a deep copy (``model`` is left as it was) and cast to :func:`merged_dtype` at the end."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise TypeError(f"merge_lora needs a PeftModel, got {type(model).__name__}; "
                        "fix: pass the model with its LoRA adapter (helpers.saving.load_adapter).")
    target = merged_dtype(model, dtype)
    merged = copy.deepcopy(model, memo=_shared_engines(model)).merge_and_unload(adapter_names=[_peft_active_adapter(model)])
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
            (staging / "training.json").write_text(json.dumps(info, indent=2, default=str))
        if not (staging / "adapter_model.safetensors").exists():
            raise RuntimeError(f"saving wrote no adapter_model.safetensors to {staging}; fix: pass a PEFT (LoRA) model.")
    return dest
