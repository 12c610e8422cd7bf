"""What each ``-p`` value may be: one table (:data:`PARAMS`), keyed by the notebook parameter's own name.

A notebook parameter whose default is ``None`` ("the profile's") has no type papermill could infer, so before this
table ``-p grpo_steps=abc`` reached notebook 07 after 01-06 had run and failed there naming ``max_steps``. A
parameter that is a field of the profile table (``helpers.runtime.settings.Settings``) is also checked by the
table's own ``__post_init__``, against the profile's other values. Every
such parameter has an entry (``tests/test_hostile_run.py`` fails when a notebook adds one without), and so do the
typed ones with a range (``lora_rank``, ``samples_per_problem``). An entry holds the kind, the allowed range or
choices, a help line, an example, and what the value becomes in the code that uses it; the ranges are the ones that
code accepts (the same test checks each boundary against it). :func:`check_value` turns a ``-p`` text into the value
or refuses it in one line, in the user's own names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from helpers.data.gsm8k import check_gsm8k_path
from helpers.data.rows import DataUnavailableError
from helpers.generate.sampling import check_sampling
from helpers.runtime.profiles import profile_settings
from helpers.runtime.settings import LEVELS, LORA_RANKS, Settings
from helpers.train.group_filter import MODES

MERGED_DTYPES = ("bfloat16", "float16", "float32", "bf16", "fp16", "half", "fp32")  # helpers.save.merged.parse_torch_dtype


@dataclass(frozen=True)
class Param:
    """One ``-p`` parameter. ``kind``: ``int``, ``float``, ``text``, ``path`` (must exist; passed on absolute) or
    ``levels`` (one level or several: ``2``, ``1,2``); ``low``/``high``: the inclusive bounds (``low_open``: above
    ``low``), ``high`` may be a function of the profile; ``choices``: the allowed values; ``none_ok``: ``None``
    (the profile's value) is allowed; ``becomes``: where the value goes."""

    kind: str
    help: str
    example: str
    becomes: str = ""
    low: float | None = None
    high: float | Callable[[str], float] | None = None
    low_open: bool = False
    choices: tuple = ()
    none_ok: bool = True

    def bounds(self, profile: str | None) -> tuple[float | None, float | None]:
        """``(low, high)`` for ``profile`` (``None``: a bound that depends on the profile is left out)."""
        if callable(self.high):
            return self.low, self.high(profile) if profile is not None else None
        return self.low, self.high

    def range_text(self, profile: str | None) -> str:
        """The allowed values in words, e.g. ``an integer >= 1`` or ``a number in (0, 0.001]``."""
        noun = {"int": "an integer", "float": "a number", "levels": "levels"}.get(self.kind, "a value")
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}" + (" (several: 1,2)" if self.kind == "levels" else "")
        if self.kind == "path":
            return "an existing file or folder"
        low, high = self.bounds(profile)
        if low is not None and high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{low:g}, {high:g}]"
        if low is not None:
            limit = " (at most a limit of the profile)" if callable(self.high) else ""
            return f"{noun} {'>' if self.low_open else '>='} {low:g}{limit}"
        return noun


PARAMS: dict[str, Param] = {
    # 02_lora
    "lora_rank": Param("int", "LoRA rank", "64", "helpers.model.lora.add_lora(rank=)", choices=LORA_RANKS,
                       none_ok=False),
    # 04_dataset
    "gsm8k_path": Param("path", "a GSM8K folder or .jsonl file", "data/gsm8k", "helpers.data.problems.load_problems(path=)"),
    "n_synthetic": Param("int", "synthetic training problems", "1000", "synthetic_dataset(n)", low=1, none_ok=False),
    # 06_sft_warmup: the profile table's fields (helpers.runtime.settings), checked there
    "sft_steps": Param("int", "SFT optimizer steps", "24", "SFTConfig(max_steps=)", low=1),
    "sft_learning_rate": Param("float", "SFT learning rate", "2e-4", "SFTConfig(learning_rate=)", low=0, high=1e-2,
                               low_open=True),
    "sft_train_problems": Param("int", "worked solutions to train on", "256", "synthetic_dataset(n)", low=1),
    # 07_grpo_training
    "grpo_steps": Param("int", "GRPO optimizer steps", "40", "GRPOConfig(max_steps=)", low=1),
    "num_generations": Param("int", "completions per prompt (GRPO compares them)", "8", "GRPOConfig(num_generations=)",
                             low=2),
    "max_completion_length": Param("int", "tokens per completion (below the profile's max_seq_length)", "256",
                                   "GRPOConfig(max_completion_length=)", low=1),
    "grpo_learning_rate": Param("float", "GRPO learning rate", "5e-6", "GRPOConfig(learning_rate=)", low=0, high=1e-3,
                                low_open=True),
    "grpo_temperature": Param("float", "rollout sampling temperature (0 would give no reward spread)", "1.0",
                              "GRPOConfig(temperature=)", low=0, high=10, low_open=True),
    "save_steps": Param("int", "a checkpoint every this many GRPO steps", "50", "GRPOConfig(save_steps=)", low=1),
    "beta": Param("float", "KL penalty", "0.04", "GRPOConfig(beta=)", low=0, none_ok=False),
    "grpo_train_problems": Param("int", "synthetic problems GRPO draws from", "400", "grpo_problems(n=)", low=1),
    "train_levels": Param("levels", "difficulty levels of GRPO's synthetic problems", "1,2",
                          "grpo_problems: synthetic_dataset(difficulty=)", choices=LEVELS),
    "group_filter": Param("text", "what to do with zero-spread groups", "drop", "GroupFilter(mode=)", choices=tuple(MODES)),
    # 08_save_and_evaluate
    "eval_problems": Param("int", "held-out problems per set", "64", "evaluate_sets(problems=)", low=1),
    "eval_max_new_tokens": Param("int", "tokens per evaluation completion", "256", "evaluate_sets(max_new_tokens=)",
                                 low=1),
    "eval_temperature": Param("float", "evaluation temperature (0: greedy)", "0.8", "evaluate_sets(temperature=)",
                              low=0, none_ok=False),
    "samples_per_problem": Param("int", "completions per problem (pass@k; needs eval_temperature > 0)", "1",
                                 "evaluate_sets(samples_per_problem=)", low=1, none_ok=False),
    "merged_dtype": Param("text", "dtype of the merged 16-bit export", "float16", "save_merged(dtype=)",
                          choices=MERGED_DTYPES),
}
SETTINGS_FIELDS = {f.name for f in fields(Settings)}  # checked once more by the profile table, in its own words


class ParamError(ValueError):
    """A ``-p`` value its parameter does not take; the message is one line with the fix."""


def _number(kind: str, raw: str) -> Any:
    """``raw`` as an ``int`` (``"4"``; not ``"1.5"``, ``"True"``) or a ``float`` (``"1e-4"``, ``"3"``), else ``None``."""
    text = raw.strip()
    if text in ("True", "False"):
        return None
    try:
        return int(text)
    except ValueError:
        if kind == "int":
            return None
    try:
        return float(text)
    except ValueError:
        return None


def _levels(raw: str) -> tuple[int, ...] | None:
    parts = [p for p in raw.strip().strip("()[]").replace(" ", "").split(",") if p]
    try:
        return tuple(int(p) for p in parts) if parts else None
    except ValueError:
        return None


def check_value(name: str, raw: str, profile: str, where: str = "") -> Any:
    """The value of ``-p name=raw`` for a parameter in :data:`PARAMS` (``None`` for ``"None"`` where allowed; a path
    made absolute); raises :class:`ParamError` naming the parameter, what it takes and an example."""
    spec = PARAMS[name]
    if raw.strip() == "None" and spec.none_ok:
        return None
    value: Any
    if spec.kind in ("int", "float"):
        value = _number(spec.kind, raw)
        ok = value is not None and math.isfinite(value)
        low, high = spec.bounds(profile)
        if ok and low is not None:
            ok = value > low if spec.low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if ok and spec.choices:
            ok = value in spec.choices
        value = float(value) if ok and spec.kind == "float" else value
    elif spec.kind == "levels":
        value = _levels(raw)
        ok = value is not None and all(v in spec.choices for v in value)
        value = list(value) if ok else value  # papermill writes a list literal into the notebook
    elif spec.kind == "path":
        value = str(Path(raw).expanduser().absolute())  # notebooks run in notebooks/, not where the command ran
        if not Path(value).exists():
            raise ParamError(f"-p {name}={raw}: no such file or folder ({value}); fix: pass the path of {spec.help}, "
                             "or leave it out.")
        if name == "gsm8k_path":  # a folder without train.jsonl, an empty or non-UTF-8 file: refused before 01 runs
            try:
                check_gsm8k_path(value, "train")
            except DataUnavailableError as exc:
                raise ParamError(f"-p {name}={raw}: {exc}") from None
        return value
    else:
        value, ok = raw, (not spec.choices or raw in spec.choices)
    if not ok:
        none = " or None (the profile's)" if spec.none_ok else ""
        at = f" in {where}" if where else ""
        raise ParamError(f"-p {name}={raw}: {name}{at} ({spec.help}) takes {spec.range_text(profile)}{none}; "
                         f"fix: e.g. -p {name}={spec.example}.")
    if name in SETTINGS_FIELDS:  # what the profile's row refuses (e.g. max_completion_length >= max_seq_length)
        try:
            profile_settings(profile, **{name: value})
        except ValueError as exc:
            raise ParamError(f"-p {name}={raw}: {exc}") from None
    return value


def check_together(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse combinations the code that uses them refuses: evaluation's sampling settings
    (``helpers.generate.sampling.check_sampling``: several samples per problem need a temperature above 0)."""
    def get(name: str) -> Any:
        return values[name] if values.get(name) is not None else defaults.get(name)

    temperature, samples = get("eval_temperature"), get("samples_per_problem")
    if temperature is None or samples is None:
        return
    try:
        check_sampling(temperature, samples, 1)
    except ValueError:
        raise ParamError(f"-p samples_per_problem={samples} with eval_temperature={temperature}: greedy decoding "
                         "gives the same completion every time; fix: -p eval_temperature=0.8 (pass@k), or "
                         "-p samples_per_problem=1.") from None
