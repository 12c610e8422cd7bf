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
- :func:`export_gguf`: GGUF for llama.cpp / Ollama through Unsloth's ``save_pretrained_gguf`` (it
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

**The reload check.** :func:`reload_check` loads the merged folder with plain transformers (no
PEFT) and compares its greedy outputs with the adapter-on model's. The merged model is loaded in
the adapter model's compute dtype (bf16 -> fp32 is exact), so the only difference is the 16-bit
rounding of the weights. That rounding can flip a greedy choice where the two best tokens are
almost tied (measured on SmolLM2-135M: bf16 moves the gap between the two best logits by up to
~0.25, fp16 by 0.011), after which the texts part ways. So a prompt passes if the outputs are identical,
or if they first differ at a *near tie*: a token where the adapter-on model's two best logits were
within ``tie_tolerance`` (default: 0.5 for bf16, 0.0625 for fp16, 0 for fp32, i.e. 128 units of
the format's rounding step). The check also confirms the outputs differ from the base model's
wherever the adapter-on model's do (what training changed survives the merge), and that the
tokenizer kept its chat template.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .runtime import detect, importable

log = logging.getLogger(__name__)

__all__ = [
    "AdapterLoadError", "ExportUnavailable", "ReloadCheck", "adapter_weights_file", "atomic_folder",
    "check_adapter_dir", "demo_adapter", "export_gguf", "gguf_unavailable_reason", "load_adapter", "merge_lora",
    "merged_dtype", "model_bytes", "reload_check", "save_lora", "save_merged", "unsloth_gguf_kwargs", "unsloth_merged_kwargs",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
DEFAULT_CHECK_QUESTIONS = (  # asked with the suite's system prompt (helpers.chat_template), as in training
    "What is 12 + 7?",
    "Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
    "A box holds 4 rows of 6 eggs. How many eggs are in the box?",
)


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


# ---------------------------------------------------------------------------------------------
# GGUF (Unsloth, CUDA only)
# ---------------------------------------------------------------------------------------------


def gguf_unavailable_reason(model=None) -> str | None:
    """``None`` if GGUF export can run here, else one line saying why not and what to do instead."""
    hw = detect()
    alternative = ("fix: run notebook 08 on a CUDA GPU (e.g. Colab) with unsloth installed, or convert the merged "
                   "folder yourself with llama.cpp: python convert_hf_to_gguf.py <run>/saved/merged_16bit.")
    if not hw.cuda:
        return f"GGUF export is not available here: it runs through Unsloth on a CUDA GPU and this machine has none; {alternative}"
    if not importable("unsloth"):
        return f"GGUF export is not available here: unsloth is not installed (pip install 'grpo-notebooks[gpu]'); {alternative}"
    if model is not None and not unsloth_export(model, "save_pretrained_gguf"):
        return ("GGUF export is not available for this model: it was not loaded through Unsloth "
                f"(no save_pretrained_gguf); load it with helpers.loading.load_model on the GPU; {alternative}")
    return None


def unsloth_gguf_kwargs(tokenizer, quantization_method: str | list[str] = "q8_0") -> dict:
    """Arguments for Unsloth's ``model.save_pretrained_gguf(folder, **kwargs)``.

    ``quantization_method`` is one of Unsloth's methods (``"q8_0"``, ``"q4_k_m"``, ``"f16"``, ...) or
    a list of them; unknown names are refused here, before the (slow) merge and llama.cpp build.

    >>> unsloth_gguf_kwargs(None, "Q4_K_M")
    {'tokenizer': None, 'quantization_method': ['q4_k_m']}
    """
    allowed = {"not_quantized", "fast_quantized", "quantized", "f32", "bf16", "f16", "q8_0", "q4_k_m", "q5_k_m",
               "q2_k", "q3_k_l", "q3_k_m", "q3_k_s", "q4_0", "q4_1", "q4_k_s", "q4_k", "q5_k", "q5_0", "q5_1",
               "q5_k_s", "q6_k"}
    methods = [quantization_method] if isinstance(quantization_method, str) else list(quantization_method)
    methods = [m.lower() for m in methods]
    unknown = [m for m in methods if m not in allowed]
    if not methods or unknown:
        raise ValueError(f"unknown GGUF quantization {unknown or methods!r}; fix: use e.g. 'q8_0', 'q4_k_m' or 'f16'.")
    return {"tokenizer": tokenizer, "quantization_method": methods}


def export_gguf(model, tokenizer, out_dir: str | os.PathLike, quantization_method: str | list[str] = "q8_0") -> list[Path]:
    """GGUF files of the merged model in ``out_dir`` through Unsloth's ``save_pretrained_gguf``;
    returns their paths. Raises :class:`ExportUnavailable` (one line: why, and what to do) where
    there is no CUDA GPU with unsloth."""
    reason = gguf_unavailable_reason(model)
    if reason:
        raise ExportUnavailable(reason)
    kwargs = unsloth_gguf_kwargs(tokenizer, quantization_method)
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        result = model.save_pretrained_gguf(str(tmp), **kwargs)
    names = [Path(p).name for p in (result or {}).get("gguf_files", [])] if isinstance(result, dict) else []
    files = [out_dir / n for n in names] or sorted(out_dir.rglob("*.gguf"))
    return files


# ---------------------------------------------------------------------------------------------
# The reload check
# ---------------------------------------------------------------------------------------------


@dataclass
class ReloadCheck:
    """What :func:`reload_check` found; ``ok`` is the verdict, ``str()`` explains it."""

    folder: str
    saved_dtype: str
    compared_in: str
    tie_tolerance: float
    prompts: list[str]
    adapter_outputs: list[str]
    merged_outputs: list[str]
    base_outputs: list[str] | None
    exact: list[bool]
    divergence_margins: list[float | None]  # per prompt: the adapter model's top-2 logit gap where texts part
    chat_template_kept: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def changed_by_training(self) -> list[bool] | None:
        if self.base_outputs is None:
            return None
        return [a != b for a, b in zip(self.adapter_outputs, self.base_outputs, strict=True)]

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok, "changed_by_training": self.changed_by_training}

    def __str__(self) -> str:
        lines = [f"merged model at {self.folder} ({self.saved_dtype}, compared in {self.compared_in}); "
                 f"chat template kept: {self.chat_template_kept}"]
        changed = self.changed_by_training
        for i, prompt in enumerate(self.prompts):
            if self.exact[i]:
                verdict = "identical to the adapter-on model"
            else:
                verdict = f"parts from the adapter-on model at a top-2 logit gap of {self.divergence_margins[i]:.4f}"
            if changed is not None:
                verdict += "; adapter changes the base model's output" if changed[i] else "; adapter leaves it as the base model's"
            lines.append(f"  {prompt!r}: {verdict}\n    merged     -> {self.merged_outputs[i]!r}")
            if not self.exact[i]:
                lines.append(f"    adapter-on -> {self.adapter_outputs[i]!r}")
        lines.append("reload check: OK" if self.ok else "reload check FAILED:\n  - " + "\n  - ".join(self.problems))
        return "\n".join(lines)


def _prompt_text(tokenizer, prompt) -> str:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _greedy_ids(model, tokenizer, prompts, max_new_tokens: int) -> list[list[int]]:
    """Greedy completions as token ids (cut at the end-of-turn token), all prompts in one left-padded
    batch: every model compared sees the same batch, so nothing but the weights differs."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    try:
        batch = tokenizer([_prompt_text(tokenizer, p) for p in prompts], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(next(model.parameters()).device)
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                 temperature=None, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    out = []
    for row in ids[:, batch["input_ids"].shape[1]:].tolist():
        end = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        out.append([t for t in row[:end] if t != tokenizer.pad_token_id])
    return out


def _margin_at(model, tokenizer, prompt, prefix: list[int]) -> float:
    """The gap between the two largest next-token logits of ``model`` after ``prompt`` + ``prefix``."""
    import torch

    batch = tokenizer(_prompt_text(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
    ids = torch.cat([batch["input_ids"], torch.tensor([prefix], dtype=batch["input_ids"].dtype)], dim=1)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=ids.to(device)).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def _label(prompt) -> str:
    """A prompt as shown in the report: the text, or the last message's content."""
    if isinstance(prompt, str):
        return prompt
    messages = list(prompt)
    return str(messages[-1].get("content", "")) if messages and isinstance(messages[-1], dict) else str(prompt)


def _default_tolerance(saved_dtype) -> float:
    import torch

    return {torch.bfloat16: 0.5, torch.float16: 0.0625}.get(saved_dtype, 0.0)


def reload_check(adapter_model, tokenizer, merged_dir: str | os.PathLike, prompts=None, *,
                 max_new_tokens: int = 24, compare_base: bool = True, tie_tolerance: float | None = None,
                 threads: int | None = None) -> ReloadCheck:
    """Load ``merged_dir`` with plain transformers and check it behaves like ``adapter_model``.

    Greedy outputs on ``prompts`` (strings or chat messages; default: three short maths questions
    with the suite's system prompt, the prompt format training used) are compared (see the module
    docstring for how a 16-bit rounding
    near tie is told apart from a real difference). With ``compare_base`` the adapter-on model is
    also run with its adapter disabled: wherever that changes the output, the merged model must
    differ from the base too, i.e. what training changed survived the merge. ``threads``: torch CPU
    threads meanwhile (``None``: the free cores, :func:`helpers.runtime.cpu_threads`).
    """
    from .runtime import cpu_threads

    with cpu_threads(threads):
        return _reload_check(adapter_model, tokenizer, merged_dir, prompts, max_new_tokens, compare_base, tie_tolerance)


def _reload_check(adapter_model, tokenizer, merged_dir, prompts, max_new_tokens, compare_base, tie_tolerance):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    merged_dir = Path(merged_dir)
    if not (merged_dir / "config.json").is_file():
        raise FileNotFoundError(f"no merged model at {merged_dir} (no config.json); fix: run save_merged first.")
    compute_dtype = next(adapter_model.parameters()).dtype
    saved_dtype = getattr(AutoConfig.from_pretrained(merged_dir), "dtype", None)
    saved_dtype = _torch_dtype(str(saved_dtype).replace("torch.", "")) if saved_dtype is not None else compute_dtype
    tolerance = _default_tolerance(saved_dtype) if tie_tolerance is None else float(tie_tolerance)
    reloaded_tok = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=compute_dtype)
    merged.to(next(adapter_model.parameters()).device)
    if prompts is None:
        from .chat_template import build_messages

        prompts = [build_messages(q) for q in DEFAULT_CHECK_QUESTIONS]
    prompts = list(prompts)

    adapter_ids = _greedy_ids(adapter_model, tokenizer, prompts, max_new_tokens)
    merged_ids = _greedy_ids(merged, reloaded_tok, prompts, max_new_tokens)
    base_ids = None
    if compare_base and hasattr(adapter_model, "disable_adapter"):
        with adapter_model.disable_adapter():
            base_ids = _greedy_ids(adapter_model, tokenizer, prompts, max_new_tokens)

    exact, margins, problems = [], [], []
    for i, (a, m) in enumerate(zip(adapter_ids, merged_ids, strict=True)):
        same = a == m
        exact.append(same)
        if same:
            margins.append(None)
            continue
        k = next((j for j, (x, y) in enumerate(zip(a, m, strict=False)) if x != y), min(len(a), len(m)))
        margin = _margin_at(adapter_model, tokenizer, prompts[i], a[:k])
        margins.append(margin)
        if margin > tolerance:
            problems.append(f"prompt {i}: the merged model's output differs from the adapter-on model's at token {k}, "
                            f"where the adapter-on model was not near a tie (top-2 gap {margin:.4f} > {tolerance})")
    decode = tokenizer.decode
    adapter_text = [decode(x) for x in adapter_ids]
    merged_text = [reloaded_tok.decode(x) for x in merged_ids]
    base_text = [decode(x) for x in base_ids] if base_ids is not None else None
    if base_ids is not None:
        for i, (a, m, b) in enumerate(zip(adapter_ids, merged_ids, base_ids, strict=True)):
            if a != b and m == b:
                problems.append(f"prompt {i}: the adapter changes the output but the merged model gives the base "
                                "model's: the merge lost the adapter")
    kept = (reloaded_tok.chat_template or None) == (getattr(tokenizer, "chat_template", None) or None)
    if not kept:
        problems.append("the saved tokenizer's chat template differs from the one used in training")
    del merged
    return ReloadCheck(str(merged_dir), str(saved_dtype).replace("torch.", ""), str(compute_dtype).replace("torch.", ""),
                       tolerance, [_label(p) for p in prompts], adapter_text, merged_text,
                       base_text, exact, margins, kept, problems)


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
