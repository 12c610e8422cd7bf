"""Generate text from chat messages with plain transformers (greedy by default), in batches."""

from __future__ import annotations

import torch


def _as_messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


@torch.no_grad()
def generate(model, tokenizer, prompts, *, max_new_tokens: int = 64, temperature: float = 0.0,
             batch_size: int = 8, progress: bool = False) -> list[str]:
    """Completions for ``prompts`` (strings or chat-message lists), rendered with the chat template.

    Left-pads each batch so every row's completion starts at the same column; ``temperature=0``
    decodes greedily, so the same model gives the same text on every run.
    """
    from tqdm.auto import tqdm

    texts = [
        tokenizer.apply_chat_template(_as_messages(p), tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    out: list[str] = []
    was_training = model.training
    model.eval()
    try:
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="generating", disable=not progress):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(device)
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, top_p=None, top_k=None, **sampling)
            new = ids[:, batch["input_ids"].shape[1]:]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def chat(model, tokenizer, prompt, *, max_new_tokens: int = 64, temperature: float = 0.0) -> str:
    """One reply to ``prompt`` (a string or a list of chat messages)."""
    return generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, temperature=temperature)[0]
