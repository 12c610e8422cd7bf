"""Stages 1-2 (notebooks 01, 02): resolve, load and check a model and its tokenizer; LoRA adapters."""
