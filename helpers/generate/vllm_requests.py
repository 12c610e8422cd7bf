"""Generation through a vLLM engine: sampling parameters, LoRA requests for adapters, engine arguments,
and :func:`vllm_generate`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers.generate.sampling import Generation, check_sampling
from helpers.model.adapters import adapter_weights_file


def vllm_sampling_kwargs(*, max_new_tokens: int, temperature: float = 0.0, samples_per_problem: int = 1,
                         seed: int | None = 0) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` (greedy when ``temperature == 0``).

    >>> vllm_sampling_kwargs(max_new_tokens=32)
    {'n': 1, 'temperature': 0.0, 'top_p': 1.0, 'top_k': -1, 'max_tokens': 32, 'seed': 0}
    """
    check_sampling(temperature, samples_per_problem, max_new_tokens)
    return {"n": samples_per_problem, "temperature": float(temperature), "top_p": 1.0, "top_k": -1,
            "max_tokens": int(max_new_tokens), "seed": seed}


def vllm_lora_kwargs(name: str, adapter_dir: str | os.PathLike, index: int) -> dict:
    """Keyword arguments for ``vllm.lora.request.LoRARequest`` (``index`` >= 1, unique per adapter).

    >>> vllm_lora_kwargs("grpo", "/runs/latest/grpo/adapter", 2)
    {'lora_name': 'grpo', 'lora_int_id': 2, 'lora_path': '/runs/latest/grpo/adapter'}
    """
    if index < 1:
        raise ValueError(f"vLLM LoRA ids start at 1, got {index}; fix: number adapters 1, 2, ...")
    return {"lora_name": name, "lora_int_id": int(index), "lora_path": str(adapter_dir)}


# max_lora_rank values vLLM 0.32 accepts (vllm.config.lora.MaxLoRARanks)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_engine_kwargs(model: str | os.PathLike, *, lora_rank: int | None = None, max_loras: int = 1,
                       dtype: str = "float32", max_model_len: int = 1024, seed: int = 0) -> dict:
    """Keyword arguments for ``vllm.LLM`` serving ``model`` for evaluation; ``lora_rank``: serve LoRA
    requests of adapters up to that rank (None: no LoRA).

    ``max_lora_rank`` is the adapters' rank rounded up to the next value vLLM accepts, never more:
    vLLM's LoRA ops on a CPU (``vllm/lora/ops/torch_ops``) gather a ``[tokens, out, max_lora_rank]``
    copy of the weights per layer, so rank-64 slots for a rank-16 adapter made greedy generation
    3.8x slower (4 prompts x 32 tokens: 41 s vs 11 s, measured on the 2-core machine).

    >>> vllm_engine_kwargs("/models/smol", lora_rank=12)["max_lora_rank"]
    16
    """
    kwargs = {"model": str(model), "dtype": dtype, "max_model_len": int(max_model_len), "seed": seed}
    if lora_rank is not None:
        fits = [r for r in VLLM_LORA_RANKS if r >= lora_rank]
        if lora_rank < 1 or not fits:
            raise ValueError(f"lora_rank={lora_rank}: vLLM serves LoRA ranks 1 to {VLLM_LORA_RANKS[-1]}; "
                             "fix: train the adapter with a rank in that range.")
        kwargs.update(enable_lora=True, max_lora_rank=fits[0], max_loras=int(max_loras))
    return kwargs


_LORA_IDS: dict[tuple, int] = {}


def vllm_lora_id(adapter_dir: str | os.PathLike) -> int:
    """A vLLM LoRA id (>= 1) for the adapter in ``adapter_dir`` *as it is now on disk*.

    vLLM caches adapters by id and, asked again for an id it holds, reuses the cached weights
    without reading the folder. Numbering adapters 1, 2, ... per call would make a second evaluation
    on the same engine (after retraining into the same folder, or of another run's adapters) silently
    generate with the first one's weights; so the id is keyed on the folder and its weights file's
    size and modification time, and a changed adapter gets a new id.
    """
    folder = Path(adapter_dir).resolve()
    try:
        weights = adapter_weights_file(folder)
        stat = weights.stat()
        key = (str(folder), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = (str(folder), None, None)
    if key not in _LORA_IDS:
        _LORA_IDS[key] = len(_LORA_IDS) + 1
    return _LORA_IDS[key]


def vllm_prompts(tokenizer, prompts: list[str]) -> list:
    """Token-id prompts, tokenized as the transformers path does (``add_special_tokens=False``: the chat
    template already wrote the special tokens; vLLM's own tokenizing of a string adds a BOS token
    where the tokenizer has one, which would double it for Llama-3- or Gemma-style templates)."""
    if tokenizer is None:
        return prompts
    return [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]


def _completion_tokens(output, stop_ids: set[int]) -> int:
    """A vLLM completion's length as the transformers path counts it: the end-of-turn token that
    stopped it (vLLM keeps it in ``token_ids``) is not counted."""
    ids = list(output.token_ids)
    if output.finish_reason == "stop" and ids and ids[-1] in stop_ids:
        return len(ids) - 1
    return len(ids)


def vllm_generate(model, tokenizer, prompts, *, max_new_tokens, temperature, samples_per_problem, seed, lora,
                   progress) -> Generation:
    from vllm import SamplingParams

    start = time.perf_counter()
    params = SamplingParams(**vllm_sampling_kwargs(max_new_tokens=max_new_tokens, temperature=temperature,
                                                   samples_per_problem=samples_per_problem, seed=seed))
    request = None
    if lora is not None:
        from vllm.lora.request import LoRARequest

        request = LoRARequest(**vllm_lora_kwargs(*lora))
    inputs = vllm_prompts(tokenizer, prompts)
    if hasattr(model, "fast_generate"):  # Unsloth's fast_inference model (fast_generate is its engine's generate)
        outputs = model.fast_generate(inputs, sampling_params=params, lora_request=request, use_tqdm=progress)
    else:
        outputs = model.generate(inputs, params, lora_request=request, use_tqdm=progress)
    stop_ids = {getattr(tokenizer, "eos_token_id", None)} - {None}
    texts = [[o.text for o in out.outputs] for out in outputs]
    lengths = [[_completion_tokens(o, stop_ids) for o in out.outputs] for out in outputs]
    truncated = [[o.finish_reason == "length" for o in out.outputs] for out in outputs]
    return Generation(texts, lengths, truncated, "vllm", time.perf_counter() - start)
