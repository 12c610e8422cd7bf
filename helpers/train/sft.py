"""The SFT warm-up's data and checks: teach the reasoning *format* on worked solutions before GRPO (notebook 06
builds ``SFTConfig`` and ``SFTTrainer`` itself).

GRPO learns only from differences between the completions of one prompt: a model that never writes
``<reasoning>…</reasoning><answer>…</answer>`` scores 0 on every format reward in every group, so it gets no
signal at all (the embedded 135M model is such a model). A short supervised warm-up on formatted reasoning
traces fixes that, as in Unsloth's GRPO notebooks.

- **Data** (:func:`sft_dataset`): prompt-completion rows; offline the synthetic generator's worked solutions,
  otherwise any dataset with those columns, or a ``messages`` column.
- **Loss on the responses only** (:func:`responses_only`): the model should learn to *answer* in the format,
  not to recite the system prompt. TRL's completion-only loss does it for prompt-completion data; on
  Unsloth's path the rows are rendered to text and Unsloth's ``train_on_responses_only`` masks everything
  but the assistant turns (:func:`mask_prompts`).
- **Measured** (:func:`format_compliance_rate`): the share of strictly formatted greedy completions of
  held-out prompts, before and after.
"""

from __future__ import annotations

import logging

from helpers.data.synthetic import synthetic_dataset
from helpers.generate.chat import generate
from helpers.rewards.functions import FormatCompliance
from helpers.runtime.distributed import unsloth_path
from helpers.runtime.hardware import detect

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




def responses_only(dataset, tokenizer, hw=None) -> tuple[object, dict]:
    """``(train_dataset, sft_config_args)`` that restrict the loss to the responses: prompt-completion rows and
    ``completion_only_loss=True`` (TRL's own masking), or on Unsloth's path the rows rendered to one ``text``
    each with ``dataset_text_field="text"`` (then :func:`mask_prompts` masks the prompts)."""
    if unsloth_path(detect() if hw is None else hw):
        return _as_text_dataset(dataset, tokenizer), {"dataset_text_field": "text"}
    return dataset, {"completion_only_loss": True}


def mask_prompts(trainer, tokenizer, hw=None):
    """On Unsloth's path, Unsloth's ``train_on_responses_only`` on ``trainer`` (markers read from the chat
    template: :func:`response_markers`); elsewhere ``trainer`` as it is (TRL's completion-only loss). Returns
    the trainer to use."""
    if not unsloth_path(detect() if hw is None else hw):
        return trainer
    from unsloth.chat_templates import train_on_responses_only  # heavy: GPU with unsloth only

    instruction, response = response_markers(tokenizer)
    return train_on_responses_only(trainer, instruction_part=instruction, response_part=response)
