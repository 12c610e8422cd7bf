"""The policy GRPO trains: the base model with a LoRA adapter, started from the SFT warm-up's adapter
(``<run>/sft/adapter``) when there is one, else fresh; a damaged or mismatched adapter is one line
(:class:`helpers.model.adapters.AdapterLoadError`), never a silent fresh start."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.files.runs import RunLayout
from helpers.model.adapter_weights import missing_modules, weights_problem
from helpers.model.adapters import ADAPTER_CONFIG, AdapterLoadError, check_adapter_dir
from helpers.model.load import load_model
from helpers.model.lora import add_lora
from helpers.runtime.hardware import detect
from helpers.runtime.profiles import pick_profile, profile_settings


def load_policy(run_dir: str | os.PathLike | None = None, *, profile: str | None = None, model_name: str | None = None,
                from_sft: bool = True, lora_rank: int | None = None, model=None, tokenizer=None):
    """``(model, tokenizer, start)``: the model GRPO trains, with its LoRA adapter.

    The adapter starts from the SFT warm-up (``<run>/sft/adapter``) when ``from_sft`` and that folder
    exists, else fresh (LoRA's B is zero, so the model starts identical to the base model). ``start``
    says which. An SFT adapter folder that exists is checked before anything is loaded
    (``helpers.model.adapters.check_adapter_dir``: config, safetensors weights that read back, no pickle-only
    ``adapter_model.bin``) and must fit the model; a damaged one raises
    :class:`helpers.model.adapters.AdapterLoadError` (one line), never a silent fresh start. A
    ``model``/``tokenizer`` already loaded (without LoRA) can be passed in.
    """
    profile = profile or pick_profile()
    adapter = RunLayout(run_dir).sft_adapter
    config = None
    if from_sft and (adapter.exists() or adapter.is_symlink()):
        try:
            config = check_adapter_dir(adapter)
            rank, alpha = int(config["r"]), int(config["lora_alpha"])
        except AdapterLoadError as exc:
            raise AdapterLoadError(f"{exc} (Or start GRPO from a fresh LoRA: from_sft=False.)") from None
        except (KeyError, TypeError, ValueError):
            raise AdapterLoadError(f"{adapter / 'adapter_config.json'} is not a LoRA config (no usable 'r' and "
                                   "'lora_alpha'); fix: run the SFT warm-up (notebook 06) again, or pass "
                                   "from_sft=False.") from None
    if model is None:
        model, tokenizer = load_model(model_name, profile=profile)
    gc = detect().cuda
    if config is not None:
        model, _ = add_lora(model, rank, alpha=alpha, gradient_checkpointing=gc)
        _load_adapter_weights(model, adapter)
        return model, tokenizer, f"SFT adapter {adapter}"
    model, _ = add_lora(model, lora_rank or profile_settings(profile).lora_rank, gradient_checkpointing=gc)
    return model, tokenizer, "base model + fresh LoRA"


def _load_adapter_weights(model, adapter: Path) -> None:
    """Load a saved, trained LoRA adapter's weights into ``model``'s (same-shaped) adapter; refuse with
    :class:`helpers.model.adapters.AdapterLoadError` (one line) weights that are not a whole trained
    adapter (``helpers.model.adapter_weights.weights_problem``: half pairs, NaN/inf, every ``lora_B``
    zero), weights the model has no place for, and a layer the adapter config targets whose pair the
    file lacks (``missing_modules``)."""
    import json

    from peft.utils import load_peft_weights, set_peft_model_state_dict

    fix = "fix: run the SFT warm-up (notebook 06) again, or pass from_sft=False."
    try:
        config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        weights = load_peft_weights(str(adapter), device="cpu")
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise AdapterLoadError(f"the adapter at {adapter} cannot be read ({first}); {fix}") from None
    if (problem := weights_problem(weights, config if isinstance(config, dict) else {}, trained=True)) is not None:
        raise AdapterLoadError(f"the SFT adapter at {adapter} is not usable: {problem}; {fix}")
    try:
        result = set_peft_model_state_dict(model, weights)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise AdapterLoadError(f"the adapter at {adapter} does not fit this model ({first}); fix: start from the "
                               "same base model the SFT stage used, or pass from_sft=False.") from None
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise AdapterLoadError(f"the adapter at {adapter} does not fit this model ({len(unexpected)} unknown weights, "
                               f"e.g. {unexpected[0]}); fix: start from the same base model the SFT stage used.")
    missing = missing_modules(model, weights.keys(), str(adapter))
    if missing:
        raise AdapterLoadError(f"the adapter at {adapter} lacks the LoRA weights of {len(missing)} layers its config "
                               f"targets (e.g. {missing[0]}), which would start fresh; {fix}")
