"""Held-out evaluation: base vs SFT vs GRPO on the same problems, scored the same way.

:func:`evaluate_sets` (:func:`compare_models` for one set) runs the base model and every adapter
the run folder holds (SFT, GRPO) on one loaded base model (PEFT adapters switched on and off, no
reloading, or LoRA requests on a vLLM engine), the held-out sets in a few passes per model (:func:`batch_groups`), and writes
``eval/results.json``, ``eval/results.md`` and ``eval/accuracy.png``. Its parts live in their own
modules and are re-exported here: generation (:mod:`helpers.generate.completions`), scoring
(:mod:`helpers.evaluate.scoring`: strict and lenient accuracy, format compliance, pass@k) and writing the
results (:mod:`helpers.evaluate.results`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.data.chat_template import DEFAULT_FORMAT, PREFILL, ReasoningFormat, render_prompt
from helpers.evaluate.held_out import held_out_sets
from helpers.evaluate.results import render_markdown, write_results
from helpers.evaluate.scoring import ModelScores, score_completions
from helpers.files.disk import on_full_disk
from helpers.files.runs import RunLayout
from helpers.generate.backends import uses_vllm
from helpers.generate.completions import generate_completions
from helpers.generate.sampling import Generation
from helpers.generate.vllm_requests import vllm_lora_id
from helpers.model.adapters import check_adapter_dir, load_adapter
from helpers.model.load import load_model
from helpers.runtime.profiles import profile_settings
from helpers.runtime.threads import cpu_threads

log = logging.getLogger(__name__)

PROGRESS_JSONL = "progress.jsonl"  # one line per finished batch while evaluate_sets generates (the CLI follows it)
# The held-out sets whose prompts share batches (in the order given), as they always have: a greedy completion can
# depend on its batch's padding, so their per-problem results stay what they were. Every other set (SVAMP, a set
# of the caller's) is generated in batches of its own after them, so adding it changes nothing of theirs.
SHARED_BATCHES = ("synthetic", "paraphrased", "gsm8k")


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
    folder exists; a broken one fails later with :class:`helpers.model.adapters.AdapterLoadError`)."""
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    found = {"sft": layout.sft_adapter, "grpo": layout.grpo_adapter}
    return {name: path for name, path in found.items() if path.exists()}


def compare_models(run_dir=None, *, dataset=None, dataset_name: str = "synthetic", **kwargs) -> EvalTable:
    """Evaluate the base model and each adapter on one held-out set (``dataset``, default: the
    synthetic held-out problems) and return its table; the arguments are :func:`evaluate_sets`'."""
    sets = {dataset_name: dataset} if dataset is not None else None
    return evaluate_sets(sets, run_dir, **kwargs)[dataset_name]


def evaluate_sets(sets: dict | None = None, run_dir=None, *, model=None, tokenizer=None,
                  adapters: dict[str, str | os.PathLike] | None = None, include_base: bool = True,
                  problems: int | None = None, max_new_tokens: int | None = None, temperature: float = 0.0,
                  samples_per_problem: int = 1, ks=None, batch_size: int = 32, seed: int = 0,
                  fmt: ReasoningFormat = DEFAULT_FORMAT, prefilled: bool = PREFILL, progress: bool = True,
                  write: bool = True, profile: str | None = None, threads: int | None = None) -> dict[str, EvalTable]:
    """Evaluate the base model and each adapter on every held-out set; return ``{set name: EvalTable}``.

    ``sets`` (name -> rows with ``prompt`` messages and ``answer``) defaults to the synthetic
    held-out set; each is cut to ``problems`` rows. The prompts of the sets in :data:`SHARED_BATCHES` go through
    each model in one pass (fewer, fuller batches), every other set's in a pass of its own after them
    (:func:`batch_groups`), then they are scored per set. ``adapters`` (name -> folder)
    defaults to :func:`find_adapters` of the run folder (SFT and GRPO, whichever exist).
    ``problems`` and ``max_new_tokens`` default to the profile's ``eval_problems`` /
    ``eval_max_new_tokens``. ``model`` is a plain base model (default:
    :func:`helpers.model.load.load_model`) or a vLLM engine. With transformers the adapters are
    loaded onto that one model and switched (``set_adapter``; ``disable_adapter`` for the base), and
    the model is given back as it came. With ``write``, each table goes to the run folder's
    ``eval/`` (:func:`write_results`), and its progress (one JSON line per model start and batch) to
    ``eval/progress.jsonl``. ``threads``: torch CPU threads while generating (``None``: the
    cores not already busy, :func:`helpers.runtime.threads.cpu_threads`; on a busy 2-core machine two OpenMP
    threads run several times slower than one). ``batch_size``: prompts per transformers ``generate`` call; 32
    evaluated the cpu profile's 96 prompts in 90-92 s against 104-106 s in batches of 16, every problem scoring
    the same (``benchmarks/learning_cpu/eval_batch_probe.py``, 2026-11-30); vLLM schedules its own batches.
    """
    sizes = profile_settings(profile)
    problems = sizes.eval_problems if problems is None else problems
    max_new_tokens = max_new_tokens or sizes.eval_max_new_tokens
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    adapters = find_adapters(layout) if adapters is None else {k: Path(v) for k, v in adapters.items()}
    for path in adapters.values():
        check_adapter_dir(path, trained=True)  # an untrained adapter would be scored as SFT or GRPO
    if sets is None:
        sets = {"synthetic": held_out_sets(problems, gsm8k=False, svamp_n=0, seed=seed, fmt=fmt)["synthetic"]}
    sets = {name: _as_dataset(ds, problems) for name, ds in sets.items()}
    check_sets(sets, problems)
    if model is None:
        model, tokenizer = load_model(profile=profile)
    if tokenizer is None:
        raise ValueError("evaluate_sets needs the tokenizer with the model; fix: pass tokenizer=...")

    groups, spans = [], {}  # prompts per batch group; set name -> (group, first, end)
    for group in batch_groups(list(sets)):
        prompts = []
        for name in group:
            spans[name] = (len(groups), len(prompts), len(prompts) + len(sets[name]))
            prompts += [render_prompt(tokenizer, p, prefill=prefilled, fmt=fmt) for p in sets[name]["prompt"]]
        groups.append(prompts)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, samples_per_problem=samples_per_problem,
                      batch_size=batch_size, seed=seed, progress=progress)
    log_progress = _progress_log(layout.eval / PROGRESS_JSONL if write else None,
                                 ["base"] * include_base + list(adapters), sum(map(len, groups)))
    with cpu_threads(threads):
        generations, backend = _generate_all(model, tokenizer, groups, adapters, include_base, gen_kwargs,
                                             log_progress)
    tables = {}
    for name, ds in sets.items():
        group, lo, hi = spans[name]
        answers = list(ds["answer"])
        questions = list(ds["question"]) if "question" in ds.column_names else None
        scores = []
        for model_name, per_group in generations:
            generation = per_group[group]
            result = score_completions(generation.texts[lo:hi], answers, name=model_name,
                                       lengths=generation.lengths[lo:hi], truncated=generation.truncated[lo:hi],
                                       questions=questions, ks=ks, fmt=fmt, prefilled=prefilled)
            share = (hi - lo) / max(len(groups[group]), 1)  # this set's share of its group's time
            result.seconds = round(generation.seconds * share, 2)
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
            with on_full_disk(layout.eval, what="the evaluation results"):
                write_results(tables[name], layout.eval)
    return tables


def check_sets(sets: dict, problems: int) -> None:
    """Refuse, before any model is loaded, what would give an empty or meaningless table (``0.0% (0/0)``)."""
    if not isinstance(problems, int) or isinstance(problems, bool) or problems < 1:
        raise ValueError(f"problems={problems!r}: evaluate at least 1 problem; fix: pass problems=64 (or None for the "
                         "profile's eval_problems).")
    if not sets:
        raise ValueError("no held-out set to evaluate (sets={}); fix: pass sets=None for the synthetic held-out set, "
                         "or helpers.evaluate.held_out.held_out_sets().")
    for name, ds in sets.items():
        if len(ds) == 0:
            raise ValueError(f"the held-out set {name!r} has 0 problems: an accuracy of 0/0 means nothing; fix: pass a "
                             "set with rows (helpers.evaluate.held_out.held_out_sets(64)), or leave this set out.")
        missing = sorted({"prompt", "answer"} - set(ds.column_names))
        if missing:
            raise ValueError(f"the held-out set {name!r} lacks the column(s) {missing} (columns: "
                             f"{sorted(ds.column_names)}); fix: build it with helpers.data.problems (prompt messages + answer).")


def _as_dataset(dataset, problems: int):
    if isinstance(dataset, list | tuple):
        from datasets import Dataset

        dataset = Dataset.from_list(list(dataset))
    return dataset.select(range(problems)) if len(dataset) > problems else dataset


def _progress_log(path: Path | None, models: list[str], total: int):
    """``log(model)``: a callback factory that appends ``{"model", "index", "models", "done", "total"}`` lines to
    ``path`` (emptied first) at a model's start and after each batch; without a path it logs nothing."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def log(name: str):
        def done(n: int) -> None:
            if path is not None:
                row = {"time": time.time(), "model": name, "index": models.index(name) + 1, "models": len(models),
                       "done": n, "total": total}
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
        done(0)
        return done
    return log


def batch_groups(names: list[str]) -> list[list[str]]:
    """The held-out sets (by name, in the order given) that go through ``generate`` together: those of
    :data:`SHARED_BATCHES` in one group, then each other set in a group of its own.

    >>> batch_groups(["synthetic", "paraphrased", "svamp", "gsm8k", "mine"])
    [['synthetic', 'paraphrased', 'gsm8k'], ['svamp'], ['mine']]
    """
    shared = [name for name in names if name in SHARED_BATCHES]
    return ([shared] if shared else []) + [[name] for name in names if name not in SHARED_BATCHES]


def _generate_all(model, tokenizer, groups, adapters, include_base, gen_kwargs,
                  log_progress=None) -> tuple[list, str]:
    """``[(model name, [Generation of each group])]`` for the base model and each adapter, each group of prompts
    (``groups``: lists of rendered prompts) generated in batches of its own; the model is given back as it came."""
    log_progress = log_progress or _progress_log(None, [], 0)

    backend = "vllm" if uses_vllm(model) else "transformers"

    def run(target, name: str, **kwargs) -> list[Generation]:
        done, offset, out = log_progress(name), 0, []
        for prompts in groups:
            def on_batch(n: int, offset: int = offset) -> None:
                done(offset + n)
            out.append(generate_completions(target, tokenizer, prompts, desc=name, on_batch=on_batch,
                                            **kwargs, **gen_kwargs))
            offset += len(prompts)
            if backend == "vllm":  # vLLM reports no batches
                done(offset)
        return out

    out: list[tuple[str, list[Generation]]] = []
    if backend == "vllm":
        if include_base:
            out.append(("base", run(model, "base")))
        for name, path in adapters.items():
            out.append((name, run(model, name, lora=(name, str(path), vllm_lora_id(path)))))
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
                    out.append(("base", run(peft_model, "base")))
            else:
                out.append(("base", run(peft_model, "base")))
        for name, key in zip(adapters, added, strict=True):
            peft_model.set_adapter(key)
            out.append((name, run(peft_model, name)))
    finally:  # give the model back as it came
        if was_peft:
            for key in added:
                peft_model.delete_adapter(key)
            if previous is not None:
                peft_model.set_adapter(previous)
        elif isinstance(peft_model, PeftModel):
            peft_model.unload()
    return out, backend
