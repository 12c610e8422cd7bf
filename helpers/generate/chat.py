"""Generate text from chat messages (greedy by default), in batches, through the suite's one rollout
boundary (:func:`helpers.generate.completions.generate_completions`: vLLM, the suite's sampler or the model's own
``generate`` by :func:`helpers.generate.backends.generation_backend`'s rule)."""

from __future__ import annotations

from helpers.generate.completions import generate_completions


def _as_messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def generate(model, tokenizer, prompts, *, max_new_tokens: int = 64, temperature: float = 0.0,
             batch_size: int = 8, progress: bool = False, seed: int = 0) -> list[str]:
    """Completions for ``prompts`` (strings or chat-message lists), rendered with the chat template.

    ``temperature=0`` decodes greedily, so the same model gives the same text on every run; with
    ``temperature > 0`` sampling is seeded by ``seed``. A model whose adapter is only in memory (being
    trained) generates with its own ``generate``, never a vLLM engine that cannot see the adapter.
    """
    texts = [
        tokenizer.apply_chat_template(_as_messages(p), tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    out = generate_completions(model, tokenizer, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                               batch_size=batch_size, seed=seed, progress=progress)
    return [samples[0] for samples in out.texts]


def chat(model, tokenizer, prompt, *, max_new_tokens: int = 64, temperature: float = 0.0) -> str:
    """One reply to ``prompt`` (a string or a list of chat messages)."""
    return generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, temperature=temperature)[0]
