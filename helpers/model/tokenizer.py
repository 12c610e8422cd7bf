"""Tokenizer fixes for chat training and batched generation: end of turn as end-of-sequence, a padding token
that is not end-of-sequence, no space clean-up (:func:`fix_tokenizer`)."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# The embedded default model
# ---------------------------------------------------------------------------------------------


def fix_tokenizer(tokenizer, model=None):
    """Make padding and end-of-sequence safe for chat training and batched generation.

    - A chat model ends its turn with ``<|im_end|>``; SmolLM2's GGUF tokenizer says eos=``<|im_start|>``.
    - Padding must not equal eos, or the SFT collator masks every eos and the model never learns to
      stop (Unsloth swaps such a pad for ``<|endoftext|>`` too); use a distinct special token.
    - ``clean_up_tokenization_spaces`` is turned off: it strips spaces before punctuation in BPE text.
    The model's config and generation config are kept in step with the tokenizer.
    """
    vocab = tokenizer.get_vocab()
    # transformers warns that this post-processing corrupts byte-level BPE text (LLM tokenizers)
    tokenizer.clean_up_tokenization_spaces = False
    if "<|im_end|>" in vocab and tokenizer.eos_token in (None, "<|im_start|>"):
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        for candidate in ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", tokenizer.unk_token):
            if candidate and candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer
