"""LoRA for RL: a 16-bit adapter on every linear layer, sized for GRPO.

Defaults follow Unsloth's GRPO notebooks: rank 64 (128 allowed for harder tasks), ``alpha = rank``
(an effective scale of 1, so the learning rate means the same at every rank), no dropout (it would
make the policy's log-probs noisy between rollout and update), and all attention and MLP
projections. On a GPU with unsloth, ``FastLanguageModel.get_peft_model`` with Unsloth's offloaded
gradient checkpointing; elsewhere PEFT with transformers' (non-reentrant) gradient checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.runtime.distributed import unsloth_path
from helpers.runtime.hardware import detect
from helpers.runtime.settings import LORA_RANKS

DEFAULT_RANK = 64


@dataclass(frozen=True)
class TrainableReport:
    trainable: int
    total: int
    modules: tuple[str, ...]
    rank: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return (
            f"LoRA rank {self.rank} on {', '.join(self.modules)}: "
            f"{self.trainable:,} trainable of {self.total:,} parameters ({self.percent:.2f}%)"
        )


def linear_module_names(model) -> tuple[str, ...]:
    """Names of the linear projections inside the transformer blocks (the output head excluded)."""
    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and "lm_head" not in name
    }
    return tuple(sorted(names))


def trainable_report(model) -> TrainableReport:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    config = getattr(model, "peft_config", {}).get("default")
    modules = tuple(sorted(config.target_modules)) if config is not None else ()
    return TrainableReport(trainable, total, modules, config.r if config is not None else 0)


def add_lora(
    model,
    rank: int = DEFAULT_RANK,
    *,
    alpha: int | None = None,
    gradient_checkpointing: bool | None = None,
    seed: int = 3407,
):
    """Wrap ``model`` with a LoRA adapter on all linear layers and return ``(peft_model, report)``;
    ``gradient_checkpointing=None``: on a GPU only (on a CPU recomputing activations only costs time)."""
    if rank not in LORA_RANKS:
        raise ValueError(f"LoRA rank {rank} is not supported; use one of {LORA_RANKS} (64 is the RL default).")
    alpha = rank if alpha is None else alpha
    modules = list(linear_module_names(model))
    if not modules:
        raise ValueError("the model has no linear layers to adapt; fix: pass a causal language model.")
    hw = detect()
    gradient_checkpointing = hw.cuda if gradient_checkpointing is None else gradient_checkpointing
    if unsloth_path(hw):  # else plain PEFT (several processes or $GRPO_PLAIN_TRL: helpers.runtime.distributed)
        from unsloth import FastLanguageModel

        peft_model = FastLanguageModel.get_peft_model(
            model,
            r=rank,
            lora_alpha=alpha,
            lora_dropout=0.0,
            target_modules=modules,
            bias="none",
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False,
            random_state=seed,
        )
    else:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        config = LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=modules, bias="none", task_type="CAUSAL_LM"
        )
        peft_model = get_peft_model(model, config)
    return peft_model, trainable_report(peft_model)


def lora_state(model) -> dict[str, torch.Tensor]:
    """A detached copy of the LoRA weights, to check later that training moved them."""
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def lora_delta(before: dict[str, torch.Tensor], model) -> float:
    """Largest absolute change of any LoRA weight since ``before``."""
    after = lora_state(model)
    return max(((after[k].float() - v.float()).abs().max().item() for k, v in before.items()), default=0.0)
