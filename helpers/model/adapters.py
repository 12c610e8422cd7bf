"""LoRA adapter folders: check one before use (one-line :class:`AdapterLoadError` naming the cause and the fix),
load it onto a base model, or make an untrained demo adapter."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from helpers.model.adapter_weights import missing_modules, weights_problem
from helpers.model.load import load_model
from helpers.model.lora import add_lora

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TRAINING_RECORD = "training.json"  # written by helpers.save.adapter.save_trained beside the adapter

log = logging.getLogger(__name__)


class AdapterLoadError(RuntimeError):
    """An adapter folder could not be used; the message names the cause and the fix on one line."""


# ---------------------------------------------------------------------------------------------
# Loading and checking adapters
# ---------------------------------------------------------------------------------------------


def adapter_weights_file(adapter_dir: str | os.PathLike) -> Path:
    return Path(adapter_dir) / ADAPTER_WEIGHTS


def check_adapter_dir(adapter_dir: str | os.PathLike, *, trained: bool = False) -> dict:
    """Validate a LoRA adapter folder and return its ``adapter_config.json``; raise
    :class:`AdapterLoadError` with a one-line cause and fix for a missing folder, a missing or
    unreadable config, missing weights, pickle-only weights, a corrupt safetensors file, or weights that
    are not a whole adapter (``helpers.model.adapter_weights.weights_problem``: a ``lora_A`` without its
    ``lora_B`` or the reverse, ranks that disagree, NaN/inf, and with ``trained`` an untrained LoRA
    whose every ``lora_B`` is zero)."""
    folder = Path(adapter_dir)
    hint = "fix: train one first (notebook 06 or 07), or pass the folder that holds adapter_config.json."
    if not folder.exists():
        raise AdapterLoadError(f"no adapter at {folder}: the folder does not exist; {hint}")
    if not folder.is_dir():
        raise AdapterLoadError(f"no adapter at {folder}: it is a file, not a folder; {hint}")
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        raise AdapterLoadError(f"{folder} is not a LoRA adapter folder: it has no {ADAPTER_CONFIG}; {hint}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "peft_type" not in config:
            raise ValueError("no peft_type")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterLoadError(f"{config_file} is not a valid PEFT adapter config ({exc.__class__.__name__}: {exc}); "
                               "fix: save the adapter again (model.save_pretrained or helpers.save.adapter.save_lora).") from None
    weights = adapter_weights_file(folder)
    if not weights.is_file():
        if (folder / "adapter_model.bin").is_file():
            raise AdapterLoadError(f"{folder} holds only adapter_model.bin (a pickle, which this suite never loads); "
                                   "fix: re-save it as safetensors: model.save_pretrained(folder, safe_serialization=True).")
        raise AdapterLoadError(f"{folder} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}: the save did not finish; "
                               "fix: save the adapter again.")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        if not tensors:
            raise ValueError("it holds no tensors")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise AdapterLoadError(f"{weights} is corrupt or truncated ({reason}); "
                               "fix: save the adapter again, or copy the folder over once more.") from None
    steps = _recorded_steps(folder) if trained else 0
    if (problem := weights_problem(tensors, config, trained=trained and not steps)) is not None:
        raise AdapterLoadError(f"{weights} is not a usable adapter: {problem}; fix: train and save the adapter again "
                               "(notebook 06 or 07), or pass the folder of a trained one.")
    if steps and weights_problem(tensors, config, trained=True):  # trained, yet every lora_B still zero
        log.warning("%s: its %d training steps left every lora_B at zero (no step had a gradient, e.g. no group with "
                    "reward spread): it scores exactly as the model it started from", folder, steps)
    return config


def _recorded_steps(folder: Path) -> int:
    """The optimizer steps that ``save_trained``'s record beside the adapter says it was trained for (0: none)."""
    try:
        steps = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8")).get("steps")
    except (OSError, ValueError, AttributeError):
        return 0
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 0


def load_adapter(base=None, adapter_dir: str | os.PathLike = None, *, adapter_name: str = "default",
                 is_trainable: bool = False, trained: bool = False):
    """A ``PeftModel``: ``base`` with the LoRA adapter from ``adapter_dir`` loaded (and active).

    ``base`` is a model, a model name or folder (loaded with :func:`helpers.model.load.load_model`), or
    ``None`` for the profile's default model. Passing a ``PeftModel`` adds the adapter to it under
    ``adapter_name`` (several adapters on one base; switch with ``set_adapter``). The folder is
    validated first (:func:`check_adapter_dir`, with ``trained``: refuse an untrained LoRA); an adapter
    made for another base model, or one that lacks the pair of a layer its config targets on this model
    (which PEFT would leave fresh with only a warning), fails with a one-line :class:`AdapterLoadError`
    naming the base it was made for. As PEFT does, the base model's layers are wrapped in place.
    """
    if adapter_dir is None:
        raise AdapterLoadError("no adapter folder given; fix: pass adapter_dir=RunLayout().grpo_adapter (or sft_adapter).")
    config = check_adapter_dir(adapter_dir, trained=trained)
    if base is None or isinstance(base, str | os.PathLike):
        base, _ = load_model(None if base is None else str(base))
    from peft import PeftModel

    made_for = config.get("base_model_name_or_path") or "an unknown base model"
    try:
        if isinstance(base, PeftModel):
            base.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
            base.set_adapter(adapter_name)
            model = base
        else:
            model = PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise AdapterLoadError(f"the adapter at {adapter_dir} does not fit this model ({first[:200]}); "
                               f"fix: load the base model it was trained on ({made_for}).") from None
    from safetensors import safe_open

    with safe_open(str(adapter_weights_file(adapter_dir)), framework="pt") as fh:
        keys = list(fh.keys())
    missing = missing_modules(model, keys, str(adapter_dir), adapter_name)
    if missing:
        raise AdapterLoadError(f"the adapter at {adapter_dir} lacks the LoRA weights of {len(missing)} layers its "
                               f"config targets on this model (e.g. {missing[0]}); fix: load the base model it was "
                               f"trained on ({made_for}), or save the adapter again.")
    return model


def demo_adapter(model, *, rank: int = 16, scale: float = 0.05, seed: int = 0):
    """An *untrained* LoRA adapter with random ``B`` matrices (LoRA starts with ``B = 0``, i.e. no
    change): a stand-in that changes the model's outputs, so saving, merging and the reload check
    can be shown when no trained adapter exists. It is not a trained model; never evaluate it as one."""
    import torch

    peft_model, _ = add_lora(model, rank=rank, gradient_checkpointing=False, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return peft_model
