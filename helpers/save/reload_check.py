"""Does a merged 16-bit model reproduce the adapter-on model? (:func:`reload_check`)

:func:`reload_check` loads the merged folder with plain transformers (no
PEFT) and compares its greedy outputs with the adapter-on model's. The merged model is loaded in
the adapter model's compute dtype (bf16 -> fp32 is exact), so the only difference is the 16-bit
rounding of the weights. That rounding can flip a greedy choice where the two best tokens are
almost tied (measured on SmolLM2-135M: bf16 moves the gap between the two best logits by up to
~0.25, fp16 by 0.011), after which the texts part ways. So a prompt passes if the outputs are identical,
or if they first differ at a *near tie*: a token where the adapter-on model's two best logits were
within ``tie_tolerance`` (default: 0.5 for bf16, 0.0625 for fp16, 0 for fp32, i.e. 128 units of
the format's rounding step). The check also confirms the outputs differ from the base model's
wherever the adapter-on model's do (what training changed survives the merge), and that the
tokenizer kept its chat template.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpers.data.chat_template import build_messages
from helpers.generate.completions import generate_completions
from helpers.runtime.threads import cpu_threads
from helpers.save.merged import parse_torch_dtype

DEFAULT_CHECK_QUESTIONS = (  # asked with the suite's system prompt (helpers.data.chat_template), as in training
    "What is 12 + 7?",
    "Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
    "A box holds 4 rows of 6 eggs. How many eggs are in the box?",
)


@dataclass
class ReloadCheck:
    """What :func:`reload_check` found; ``ok`` is the verdict, ``str()`` explains it."""

    folder: str
    saved_dtype: str
    compared_in: str
    tie_tolerance: float
    prompts: list[str]
    adapter_outputs: list[str]
    merged_outputs: list[str]
    base_outputs: list[str] | None
    exact: list[bool]
    divergence_margins: list[float | None]  # per prompt: the adapter model's top-2 logit gap where texts part
    chat_template_kept: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def changed_by_training(self) -> list[bool] | None:
        if self.base_outputs is None:
            return None
        return [a != b for a, b in zip(self.adapter_outputs, self.base_outputs, strict=True)]

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok, "changed_by_training": self.changed_by_training}

    def __str__(self) -> str:
        lines = [f"merged model at {self.folder} ({self.saved_dtype}, compared in {self.compared_in}); "
                 f"chat template kept: {self.chat_template_kept}"]
        changed = self.changed_by_training
        for i, prompt in enumerate(self.prompts):
            if self.exact[i]:
                verdict = "identical to the adapter-on model"
            else:
                verdict = f"parts from the adapter-on model at a top-2 logit gap of {self.divergence_margins[i]:.4f}"
            if changed is not None:
                verdict += "; adapter changes the base model's output" if changed[i] else "; adapter leaves it as the base model's"
            lines.append(f"  {prompt!r}: {verdict}\n    merged     -> {self.merged_outputs[i]!r}")
            if not self.exact[i]:
                lines.append(f"    adapter-on -> {self.adapter_outputs[i]!r}")
        lines.append("reload check: OK" if self.ok else "reload check FAILED:\n  - " + "\n  - ".join(self.problems))
        return "\n".join(lines)


def _prompt_text(tokenizer, prompt) -> str:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _greedy_ids(model, tokenizer, prompts, max_new_tokens: int) -> list[list[int]]:
    """Greedy completions as token ids (cut at the end-of-turn token), all prompts in one left-padded
    batch through the model's own ``generate`` (``helpers.generate.completions``'s transformers backend, never a vLLM
    engine or the suite's sampler): every model compared sees the same batch, so nothing but the weights
    differs."""
    texts = [_prompt_text(tokenizer, p) for p in prompts]
    out = generate_completions(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=len(texts),
                               progress=False, backend="transformers")
    return [ids[0] for ids in out.token_ids]


def _margin_at(model, tokenizer, prompt, prefix: list[int]) -> float:
    """The gap between the two largest next-token logits of ``model`` after ``prompt`` + ``prefix``."""
    import torch

    batch = tokenizer(_prompt_text(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
    ids = torch.cat([batch["input_ids"], torch.tensor([prefix], dtype=batch["input_ids"].dtype)], dim=1)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=ids.to(device)).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def _label(prompt) -> str:
    """A prompt as shown in the report: the text, or the last message's content."""
    if isinstance(prompt, str):
        return prompt
    messages = list(prompt)
    return str(messages[-1].get("content", "")) if messages and isinstance(messages[-1], dict) else str(prompt)


def _default_tolerance(saved_dtype) -> float:
    import torch

    return {torch.bfloat16: 0.5, torch.float16: 0.0625}.get(saved_dtype, 0.0)


def reload_check(adapter_model, tokenizer, merged_dir: str | os.PathLike, prompts=None, *,
                 max_new_tokens: int = 24, compare_base: bool = True, tie_tolerance: float | None = None,
                 threads: int | None = None) -> ReloadCheck:
    """Load ``merged_dir`` with plain transformers and check it behaves like ``adapter_model``.

    Greedy outputs on ``prompts`` (strings or chat messages; default: three short maths questions
    with the suite's system prompt, the prompt format training used) are compared (see the module
    docstring for how a 16-bit rounding
    near tie is told apart from a real difference). With ``compare_base`` the adapter-on model is
    also run with its adapter disabled: wherever that changes the output, the merged model must
    differ from the base too, i.e. what training changed survived the merge. ``threads``: torch CPU
    threads meanwhile (``None``: the free cores, :func:`helpers.runtime.threads.cpu_threads`).
    """
    with cpu_threads(threads):
        return _reload_check(adapter_model, tokenizer, merged_dir, prompts, max_new_tokens, compare_base, tie_tolerance)


def _reload_check(adapter_model, tokenizer, merged_dir, prompts, max_new_tokens, compare_base, tie_tolerance):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    merged_dir = Path(merged_dir)
    if not (merged_dir / "config.json").is_file():
        raise FileNotFoundError(f"no merged model at {merged_dir} (no config.json); fix: run save_merged first.")
    compute_dtype = next(adapter_model.parameters()).dtype
    saved_dtype = getattr(AutoConfig.from_pretrained(merged_dir), "dtype", None)
    saved_dtype = parse_torch_dtype(str(saved_dtype).replace("torch.", "")) if saved_dtype is not None else compute_dtype
    tolerance = _default_tolerance(saved_dtype) if tie_tolerance is None else float(tie_tolerance)
    reloaded_tok = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=compute_dtype)
    merged.to(next(adapter_model.parameters()).device)
    if prompts is None:
        prompts = [build_messages(q) for q in DEFAULT_CHECK_QUESTIONS]
    prompts = list(prompts)

    adapter_ids = _greedy_ids(adapter_model, tokenizer, prompts, max_new_tokens)
    merged_ids = _greedy_ids(merged, reloaded_tok, prompts, max_new_tokens)
    base_ids = None
    if compare_base and hasattr(adapter_model, "disable_adapter"):
        with adapter_model.disable_adapter():
            base_ids = _greedy_ids(adapter_model, tokenizer, prompts, max_new_tokens)

    exact, margins, problems = [], [], []
    for i, (a, m) in enumerate(zip(adapter_ids, merged_ids, strict=True)):
        same = a == m
        exact.append(same)
        if same:
            margins.append(None)
            continue
        k = next((j for j, (x, y) in enumerate(zip(a, m, strict=False)) if x != y), min(len(a), len(m)))
        margin = _margin_at(adapter_model, tokenizer, prompts[i], a[:k])
        margins.append(margin)
        if margin > tolerance:
            problems.append(f"prompt {i}: the merged model's output differs from the adapter-on model's at token {k}, "
                            f"where the adapter-on model was not near a tie (top-2 gap {margin:.4f} > {tolerance})")
    decode = tokenizer.decode
    adapter_text = [decode(x) for x in adapter_ids]
    merged_text = [reloaded_tok.decode(x) for x in merged_ids]
    base_text = [decode(x) for x in base_ids] if base_ids is not None else None
    if base_ids is not None:
        for i, (a, m, b) in enumerate(zip(adapter_ids, merged_ids, base_ids, strict=True)):
            if a != b and m == b:
                problems.append(f"prompt {i}: the adapter changes the output but the merged model gives the base "
                                "model's: the merge lost the adapter")
    kept = (reloaded_tok.chat_template or None) == (getattr(tokenizer, "chat_template", None) or None)
    if not kept:
        problems.append("the saved tokenizer's chat template differs from the one used in training")
    del merged
    return ReloadCheck(str(merged_dir), str(saved_dtype).replace("torch.", ""), str(compute_dtype).replace("torch.", ""),
                       tolerance, [_label(p) for p in prompts], adapter_text, merged_text,
                       base_text, exact, margins, kept, problems)
