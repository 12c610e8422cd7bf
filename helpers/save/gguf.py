"""GGUF files for llama.cpp / Ollama through Unsloth's ``save_pretrained_gguf`` (it builds llama.cpp; a
CUDA GPU with unsloth only); elsewhere :func:`export_gguf` raises ``ExportUnavailable`` saying why and what to
do instead."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.files.atomic import atomic_folder
from helpers.runtime.hardware import detect, importable
from helpers.save.merged import ExportUnavailable, unsloth_export


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
                f"(no save_pretrained_gguf); load it with helpers.model.load.load_model on the GPU; {alternative}")
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
