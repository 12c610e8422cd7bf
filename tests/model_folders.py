"""Small model folders for tests: a random Llama with the embedded model's tokenizer, saved as transformers
saves it (loads in milliseconds), to damage in a tmp dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def tiny_causal_lm(hidden: int = 16, *, tie: bool = False, vocab: int = 49152, layers: int = 2):
    """A random Llama (two layers by default) with the embedded tokenizer's vocabulary (loads in milliseconds)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                        tie_word_embeddings=tie))


def model_folder(folder: Path, tokenizer_source: Path, *, hidden: int = 16, shards: bool = False, tie: bool = False):
    """Save a tiny model (in three shards with ``shards``) and the embedded tokenizer into ``folder``;
    returns the model."""
    model = tiny_causal_lm(hidden, tie=tie)
    model.save_pretrained(folder, max_shard_size="300KB" if shards else "5GB")
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_source) / name).exists():
            shutil.copy(Path(tokenizer_source) / name, Path(folder) / name)
    return model


def saved_sft_adapter(run_root: Path, tokenizer, model):
    """A run folder at ``run_root`` whose SFT adapter (rank 8 on ``model``, random ``B``: as if trained) is
    saved; returns the run's layout and the PEFT model."""
    import torch

    from helpers.files.runs import RunLayout
    from helpers.model.lora import add_lora
    from helpers.save.adapter import save_lora

    peft_model, _ = add_lora(model, 8, gradient_checkpointing=False)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    layout = RunLayout(run_root)
    save_lora(peft_model, tokenizer, layout.sft_adapter)
    return layout, peft_model


def stand_in_embedded_cache(monkeypatch, cache: Path, weights: int) -> list[Path]:
    """Point the embedded model's cache at ``cache`` (empty) and make its builds write a stand-in model with
    ``weights`` float32 weights instead of converting the real one (~30 s and PyPI); everything around the
    conversion (manifest, swap, verification) stays the real code. Returns the list each build is added to."""
    import torch
    from safetensors.torch import save_file

    from helpers.model import embedded

    monkeypatch.setenv("GRPO_NOTEBOOKS_CACHE", str(cache))
    builds = []

    def convert(tmp):
        staging = tmp / "model"
        staging.mkdir()
        (staging / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (staging / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
        (staging / "tokenizer_config.json").write_text("{}")
        save_file({"w": torch.arange(weights, dtype=torch.float32)}, staging / "model.safetensors")
        builds.append(staging)
        return staging

    monkeypatch.setattr(embedded, "_convert_embedded", convert)
    return builds
