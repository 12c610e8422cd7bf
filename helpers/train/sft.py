"""The optional SFT warm-up: teach the reasoning *format* on worked solutions before GRPO.

GRPO learns only from differences between the completions of one prompt: a model that never
writes ``<reasoning>…</reasoning><answer>…</answer>`` scores 0 on every format reward in every
group, so it gets no signal at all (the embedded 135M model is such a model). A short supervised
warm-up on formatted reasoning traces fixes that, as in Unsloth's GRPO notebooks.

- **Data**: prompt-completion rows (``prompt`` = the system prompt + question, ``completion`` = one
  assistant message with a worked solution in the format). Offline the synthetic generator's traces
  (``helpers.data.synthetic.synthetic_dataset``); otherwise any dataset with those columns, or a ``messages``
  column (whole conversations, the last message the assistant's), see :func:`sft_dataset`.
- **Loss on the responses only**: the model should learn to *answer* in the format, not to recite
  the system prompt. With unsloth (GPU) the rows are rendered to text and Unsloth's
  ``train_on_responses_only`` masks everything but the assistant turns; elsewhere TRL's own
  completion-only loss does it (``SFTConfig.completion_only_loss``, on for prompt-completion data).
- **Checkpoint**: the LoRA adapter (and tokenizer) go to ``<run>/sft/adapter``, written to a
  temporary folder and renamed into place, so a killed run never leaves half an adapter there; an
  older warm-up's adapter is first moved to ``<run>/sft/previous-adapters/``, so a killed run never
  leaves it beside the new metrics either. ``helpers.train.policy.load_policy`` starts GRPO from it.
- **Report**: format compliance (the share of strictly formatted completions, greedy decoding) on
  held-out prompts before and after, saved to ``<run>/sft/summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from helpers.dashboard.callback import attach
from helpers.data.synthetic import synthetic_dataset
from helpers.files.atomic import retire_stale_adapter
from helpers.files.disk import on_full_disk
from helpers.files.runs import RunLayout
from helpers.generate.chat import generate
from helpers.model.lora import add_lora
from helpers.rewards.functions import FormatCompliance
from helpers.runtime.distributed import unsloth_path
from helpers.runtime.hardware import detect
from helpers.runtime.profiles import settings
from helpers.runtime.threads import cpu_threads
from helpers.save.adapter import save_adapter
from helpers.train.cpu_compat import patch_trl_for_cpu
from helpers.train.sft_config import SFTSettings

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def sft_dataset(source=None, *, n: int = 256, seed: int = 0):
    """Prompt-completion rows for the warm-up.

    ``source=None``: ``n`` synthetic problems with their worked solutions (offline). A
    ``datasets.Dataset`` (or a list of dicts) is used as given when it has ``prompt`` and
    ``completion`` columns; a ``messages`` column (whole conversations ending with the assistant's
    reply) is split into the two. Anything else is refused with the fix.
    """
    from datasets import Dataset

    if source is None:
        ds = synthetic_dataset(n, seed=seed)
    elif isinstance(source, Dataset):
        ds = source
    elif isinstance(source, list):
        ds = Dataset.from_list(source)
    else:
        raise TypeError(f"SFT data must be a datasets.Dataset or a list of dicts, not {type(source).__name__}; "
                        "fix: pass helpers.data.synthetic.synthetic_dataset(...) or Dataset.from_list(rows).")
    if len(ds) == 0:
        raise ValueError("the SFT dataset is empty; fix: pass rows with 'prompt' and 'completion' "
                         "(e.g. helpers.data.synthetic.synthetic_dataset(256)).")
    columns = set(ds.column_names)
    if {"prompt", "completion"} <= columns:
        return ds.select_columns(["prompt", "completion"])
    if "messages" in columns:
        def split(row):
            messages = row["messages"]
            if not messages or messages[-1].get("role") != "assistant":
                raise ValueError("a 'messages' row does not end with an assistant message; fix: end every "
                                 "conversation with the reply the model should learn.")
            return {"prompt": messages[:-1], "completion": messages[-1:]}

        return ds.map(split, remove_columns=ds.column_names)
    raise ValueError(f"the SFT dataset has columns {sorted(columns)} but needs 'prompt' and 'completion' (or "
                     "'messages'); fix: build rows with helpers.data.rows.make_row or rename your columns.")


def response_markers(tokenizer) -> tuple[str, str]:
    """``(instruction_part, response_part)``: the text the chat template puts before a user message
    and before the assistant's reply, read from the template itself (what Unsloth's
    ``train_on_responses_only`` needs). For ChatML: ``'<|im_start|>user\\n'``, ``'<|im_start|>assistant\\n'``.
    """
    probe = "\u2063PROBE\u2063"
    system = [{"role": "system", "content": "S"}]
    with_user = system + [{"role": "user", "content": probe}]
    before = tokenizer.apply_chat_template(system, tokenize=False)
    rendered = tokenizer.apply_chat_template(with_user, tokenize=False)
    prompt = tokenizer.apply_chat_template(with_user, tokenize=False, add_generation_prompt=True)
    if not rendered.startswith(before) or not prompt.startswith(rendered) or probe not in rendered:
        raise ValueError("cannot read the user and assistant markers from this chat template; fix: pass "
                         "instruction_part and response_part to train_on_responses_only yourself.")
    instruction = rendered[len(before): rendered.index(probe)]
    response = prompt[len(rendered):]
    if not instruction.strip() or not response.strip():
        raise ValueError("the chat template has no visible user or assistant marker; fix: use a template "
                         "with role markers (e.g. chatml).")
    return instruction, response


def _as_text_dataset(ds, tokenizer):
    """Rows rendered to one ``text`` each (the whole conversation), for Unsloth's responses-only masking."""
    def render(row):
        return {"text": tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)}

    return ds.map(render, remove_columns=ds.column_names)


# ---------------------------------------------------------------------------------------------
# Format compliance
# ---------------------------------------------------------------------------------------------


def format_compliance_rate(model, tokenizer, prompts, *, max_new_tokens: int = 128, batch_size: int = 16,
                           prefilled: bool = False) -> tuple[float, list[str]]:
    """The share of greedy completions of ``prompts`` in the strict format, and the completions.

    Uses ``helpers.rewards.functions.FormatCompliance`` (the same check GRPO logs as ``format_compliance``).
    """
    prompts = list(prompts)
    if not prompts:
        return float("nan"), []
    completions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scores = FormatCompliance(prefilled=prefilled)(completions)
    return sum(scores) / len(scores), completions


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class SFTResult:
    """What the warm-up did: where the adapter is, the steps, and compliance before and after."""

    adapter: Path
    steps: int
    seconds: float
    compliance_before: float
    compliance_after: float
    samples_before: list[str]
    samples_after: list[str]
    responses_only: str  # how the loss was restricted to the responses
    trainer: Any = field(default=None, repr=False)

    def summary(self) -> dict:
        """The result as JSON-ready values (the trainer left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trainer"}
        out["adapter"] = str(self.adapter)
        return out

    def __str__(self) -> str:
        return (f"SFT: {self.steps} steps in {self.seconds:.0f} s ({self.responses_only}); format compliance on "
                f"held-out prompts {self.compliance_before:.0%} -> {self.compliance_after:.0%}; adapter: {self.adapter}")


def _held_out_prompts(held_out, count: int, seed: int) -> list:
    if count == 0:
        return []
    if held_out is None:
        held_out = synthetic_dataset(count, seed=seed + 1_000_003)  # another seed: not the training problems
    prompts = list(held_out["prompt"]) if hasattr(held_out, "column_names") else list(held_out)
    return prompts[:count]


def train_sft(model, tokenizer, dataset=None, *, settings: SFTSettings | None = None, held_out=None,
              run_dir: str | os.PathLike | None = None, dashboard: bool | dict = True, callbacks=None,
              lora_rank: int | None = None, profile: str | None = None, **overrides) -> SFTResult:
    """Warm the model up on formatted reasoning traces; save the adapter for GRPO; report compliance.

    ``model``: a LoRA model (``helpers.model.lora.add_lora``) or a plain one (LoRA is added, rank from the
    profile); ``dataset``: see :func:`sft_dataset` (``None``: synthetic traces); ``held_out``: rows
    with a ``prompt`` column (or a list of prompts) for the compliance check (``None``: fresh
    synthetic problems); ``settings``/``overrides``: :class:`SFTSettings`; ``dashboard``: attach
    ``helpers.dashboard.callback`` (``True``, or a dict of its options), writing ``<run>/sft/metrics.jsonl``.
    """
    hw = detect()
    unsloth = unsloth_path(hw)  # the same path load_model took (helpers.runtime.distributed)
    if unsloth:
        import unsloth as _unsloth  # noqa: F401  (patches TRL before its trainers are used)
    patch_trl_for_cpu()
    settings = settings or SFTSettings.for_profile(profile, **overrides)
    layout = RunLayout(run_dir)
    data = sft_dataset(dataset, n=max(64, settings.max_steps * settings.per_device_train_batch_size
                                          * settings.gradient_accumulation_steps), seed=settings.seed)
    prompts = _held_out_prompts(held_out, settings.compliance_prompts, settings.seed)
    model = _ensure_lora(model, settings.profile, lora_rank, settings.seed)

    with cpu_threads(settings.cpu_threads):
        return _train_sft(model, tokenizer, data, prompts, settings, layout, hw, unsloth, dashboard, callbacks)


def _train_sft(model, tokenizer, data, prompts, settings, layout, hw, unsloth, dashboard, callbacks) -> SFTResult:
    retire_stale_adapter(layout.sft_adapter)  # never an older warm-up's adapter beside this run's metrics
    before, samples_before = format_compliance_rate(model, tokenizer, prompts,
                                                    max_new_tokens=settings.compliance_max_new_tokens)
    log.info("format compliance before SFT: %.2f", before)

    from trl import SFTTrainer

    if unsloth:
        args = settings.to_trl(layout.stage("sft") / "checkpoints", hw, completion_only=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=_as_text_dataset(data, tokenizer),
                             processing_class=tokenizer, callbacks=callbacks)
        from unsloth.chat_templates import train_on_responses_only

        instruction, response = response_markers(tokenizer)
        trainer = train_on_responses_only(trainer, instruction_part=instruction, response_part=response)
        how = "unsloth train_on_responses_only"
    else:
        args = settings.to_trl(layout.stage("sft") / "checkpoints", hw)
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             callbacks=callbacks)
        how = "TRL completion_only_loss"
    if dashboard:
        from transformers.trainer_callback import PrinterCallback

        attach(trainer, layout.root, "sft", **(dashboard if isinstance(dashboard, dict) else {}))
        trainer.remove_callback(PrinterCallback)  # the dashboard prints (or draws) each step already

    start = time.perf_counter()
    with on_full_disk(layout.stage("sft"), what="the SFT metrics and plots"):
        trainer.train()
    seconds = time.perf_counter() - start

    after, samples_after = format_compliance_rate(model, tokenizer, prompts,
                                                  max_new_tokens=settings.compliance_max_new_tokens)
    result = SFTResult(layout.sft_adapter, trainer.state.global_step, seconds, before, after, samples_before,
                       samples_after, how, trainer)
    info = {"stage": "sft", "base_model": getattr(model.config, "name_or_path", None), "profile": settings.profile,
            "settings": asdict(settings), **{k: v for k, v in result.summary().items() if not k.startswith("samples")}}
    save_adapter(model, tokenizer, layout.sft_adapter, info=info)
    (layout.stage("sft") / "summary.json").write_text(json.dumps(result.summary(), indent=2))
    return result


def read_curves(history, result: SFTResult | None = None) -> str:
    """A short reading of a warm-up's curves (``helpers.dashboard.metrics.read_metrics`` rows) and result."""
    rows = [r for r in history if r.get("loss") is not None]
    if not rows:
        return "No SFT step was logged yet."
    k = max(1, len(rows) // 3)

    def trend(key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return (sum(values[:k]) / len(values[:k]), sum(values[-k:]) / len(values[-k:])) if values else None

    lines = [f"{len(rows)} logged steps."]
    loss = trend("loss")
    lines.append(f"- loss (on the responses only) {loss[0]:.3g} in the first third -> {loss[1]:.3g} in the last: "
                 + ("the model is learning the traces' layout and wording." if loss[1] < loss[0] else
                    "not falling: raise the learning rate or the steps, or check the data."))
    accuracy = trend("mean_token_accuracy")
    if accuracy:
        lines.append(f"- next-token accuracy on the responses {accuracy[0]:.0%} -> {accuracy[1]:.0%}: the format is "
                     "fixed text, so it is learned first; the numbers inside take longer.")
    if result is not None:
        lines.append(f"- format compliance on held-out prompts (greedy): {result.compliance_before:.0%} before, "
                     f"{result.compliance_after:.0%} after.")
        lines.append("  GRPO needs completions whose rewards differ within a group; a model that writes the format "
                     "at least sometimes gives the format and correctness rewards something to compare."
                     if result.compliance_after > 0 else
                     "  Still 0%: GRPO would see no reward spread from the format rewards; train longer first.")
    lines.append("A warm-up should stop early: a few dozen steps teach the format; many more start to teach the "
                 "traces' answers by heart, which is GRPO's job to improve on.")
    return "\n".join(lines)


def _ensure_lora(model, profile: str, rank: int | None, seed: int):
    if getattr(model, "peft_config", None):
        return model
    model, report = add_lora(model, rank or settings(profile).lora_rank, gradient_checkpointing=detect().cuda,
                             seed=seed)
    log.info("%s", report)
    return model
