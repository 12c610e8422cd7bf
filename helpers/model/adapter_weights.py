"""What must hold for a LoRA adapter's saved weights to be a real adapter: each problem is one sentence
(the caller, :mod:`helpers.model.adapters` or :mod:`helpers.train.policy`, adds the file and the fix).

- :func:`weights_problem` (the file alone): every LoRA module has both ``lora_A`` and ``lora_B`` (a file
  with only one half leaves the other fresh: with ``B`` zero the adapter changes nothing), their ranks
  agree with each other and with the config's ``r``, every value is finite, and, where a trained adapter
  is expected, not every ``lora_B`` is zero (a fresh LoRA, identical to the base model);
- :func:`missing_modules` (the file against a model with LoRA layers): every LoRA layer of the model that
  the adapter config's ``target_modules`` names (matched as PEFT matches them) has its pair in the file.
"""

from __future__ import annotations

import re

# PEFT's saved names: <module>.lora_A.weight / .lora_B.weight (linear, conv), <module>.lora_embedding_A / _B
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<embedding>embedding_)?(?P<half>[AB])(?:\.weight)?$")
_SAVED_PREFIX = "base_model.model."


def lora_pairs(keys) -> dict[str, dict[str, str]]:
    """``{module: {"A": key, "B": key}}`` for the LoRA weight names among ``keys`` (halves may be absent)."""
    pairs: dict[str, dict[str, str]] = {}
    for key in keys:
        if (match := _LORA_KEY.match(key)) is not None:
            module = match["module"] + (".embedding" if match["embedding"] else "")
            pairs.setdefault(module, {})[match["half"]] = key
    return pairs


def weights_problem(tensors: dict, config: dict, *, trained: bool = False) -> str | None:
    """What is wrong with an adapter's ``tensors`` (its safetensors file) and ``config`` (its
    ``adapter_config.json``), or ``None``."""
    import torch

    pairs = lora_pairs(tensors)
    if not pairs:
        return f"it holds no LoRA weights (no lora_A/lora_B among its {len(tensors)} tensors)"
    for half, other in (("A", "B"), ("B", "A")):
        lonely = [m for m, pair in pairs.items() if half in pair and other not in pair]
        if lonely:
            return (f"{len(lonely)} of its {len(pairs)} LoRA modules have lora_{half} but no lora_{other} "
                    f"(e.g. {lonely[0]}): half an adapter, the other half would start fresh")
    rank = config.get("r") if not config.get("rank_pattern") else None
    for module, pair in pairs.items():
        a, b = tensors[pair["A"]], tensors[pair["B"]]
        if a.dim() < 2 or b.dim() < 2 or a.shape[0] != b.shape[1] or (isinstance(rank, int) and a.shape[0] != rank):
            return (f"the LoRA pair of {module} has shapes {list(a.shape)} (A) and {list(b.shape)} (B), which do not "
                    f"make a rank-{rank or a.shape[0]} adapter")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        return f"{len(bad)} of its {len(tensors)} tensors hold NaN or infinite values (e.g. {bad[0]})"
    if trained and all(not tensors[pair["B"]].any() for pair in pairs.values()):
        return ("every lora_B is zero: it is an untrained (fresh) LoRA, which leaves the model exactly as it was, "
                "not a trained adapter")
    return None


def missing_modules(model, adapter_keys, adapter_dir: str, adapter_name: str = "default") -> list[str]:
    """The model's LoRA modules that the config at ``adapter_dir`` targets but ``adapter_keys`` (saved
    names) lack a ``lora_A``/``lora_B`` for. ``model`` is a ``PeftModel`` whose LoRA layers were
    added (by PEFT from the same config, or by ``helpers.model.lora.add_lora``)."""
    from peft import get_peft_model_state_dict

    targets = _targets(adapter_dir)
    have = lora_pairs(adapter_keys)
    expected = lora_pairs(get_peft_model_state_dict(model, adapter_name=adapter_name).keys())
    missing = []
    for module in sorted(expected):
        name = module.removesuffix(".embedding").removeprefix(_SAVED_PREFIX)
        if targets is not None and not targets(name):
            continue  # a layer the adapter was not made for: it stays fresh (B = 0), as it was when saved
        if set(have.get(module, {})) != {"A", "B"}:
            missing.append(module)
    return missing


def _targets(adapter_dir: str):
    """``name -> bool``: whether the adapter config targets a module (PEFT's own matching), or ``None``
    when the config cannot be read as a LoRA config (then every LoRA layer counts)."""
    try:
        from peft import LoraConfig
        from peft.tuners.tuners_utils import check_target_module_exists

        config = LoraConfig.from_pretrained(adapter_dir)
    except Exception:  # an unusual or older config: fall back to the model's layers
        return None
    if config.target_modules is None:
        return None
    return lambda name: bool(check_target_module_exists(config, name))
