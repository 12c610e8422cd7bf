"""Checks made right after a model loaded, so that nothing trains on weights that are not the checkpoint's:
transformers' loading info (weights the checkpoint lacked, which transformers initialised at random, and
weights it holds that the model does not use) and NaN/inf in the parameters (:func:`check_loaded`). Each
problem is one :class:`helpers.model.checks.ModelLoadError` line naming the fix."""

from __future__ import annotations

from helpers.model.checks import ModelLoadError

_AGAIN = "fix: copy the model folder again from its source (config.json and weights from the same model)"


def check_loading_info(info: dict | None, name: str) -> None:
    """Refuse what ``from_pretrained(..., output_loading_info=True)`` reports as missing, unexpected or
    mismatched (after transformers' own exceptions: tied weights, ``_keys_to_ignore_on_load_*``)."""
    info = info or {}
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(k[0]) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        keys = missing or mismatched
        raise ModelLoadError(f"{name} lacks {len(keys)} of the model's weights (e.g. {keys[0]}), which transformers "
                             f"would start at random: not the checkpoint's weights; {_AGAIN}.")
    if unexpected:
        raise ModelLoadError(f"{name} holds {len(unexpected)} weights this model does not use (e.g. {unexpected[0]}): "
                             f"the weights are not this architecture's; {_AGAIN}.")


def nonfinite_parameters(model) -> list[str]:
    """Names of the floating-point parameters holding a NaN or an infinity.

    One reduction per tensor: the float32 sum of finite weights is finite (it would need 1e38), NaN or
    inf anywhere makes it NaN or inf; no copy of the tensor is made."""
    import torch

    bad = []
    for name, param in model.named_parameters():
        if not param.is_floating_point() or param.device.type == "meta" or param.numel() == 0:
            continue
        if not torch.isfinite(param.detach().sum(dtype=torch.float32)):
            bad.append(name)
    return bad


def check_finite(model, name: str) -> None:
    """Refuse a loaded model with NaN/inf weights (e.g. bytes overwritten in a weights file)."""
    bad = nonfinite_parameters(model)
    if bad:
        raise ModelLoadError(f"{name} has NaN or infinite values in {len(bad)} weight tensors (e.g. {bad[0]}): the "
                             f"weights file is damaged; {_AGAIN}.")


def check_loaded(model, info: dict | None, name: str) -> None:
    """Both checks: the loading info (``None`` where the loader gives none, e.g. Unsloth) and NaN/inf."""
    check_loading_info(info, name)
    check_finite(model, name)
