"""Small model folders for tests: a random Llama with the embedded model's tokenizer, saved as transformers
saves it (loads in milliseconds), to damage in a tmp dir."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def tiny_causal_lm(hidden: int = 16, *, tie: bool = False, vocab: int = 49152):
    """A random two-layer Llama with the embedded tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
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
