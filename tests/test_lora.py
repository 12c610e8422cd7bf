import pytest
import torch

from helpers.model.lora import add_lora, linear_module_names, lora_delta, lora_state
from helpers.runtime.hardware import detect
from helpers.runtime.settings import LORA_RANKS

pytestmark = pytest.mark.slow

ALL_LINEAR = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")


def test_rank_64_on_all_linear_layers(fresh_model):
    model, _ = fresh_model
    assert linear_module_names(model) == ALL_LINEAR
    peft_model, report = add_lora(model)
    config = peft_model.peft_config["default"]
    assert config.r == 64 and config.lora_alpha == 64 and config.lora_dropout == 0.0
    assert set(config.target_modules) == set(ALL_LINEAR)
    assert report.rank == 64 and report.modules == ALL_LINEAR
    # SmolLM2-135M: 30 layers x r=64 x (sum of in+out dims of the 7 projections)
    per_layer = 64 * ((576 + 576) + (576 + 192) * 2 + (576 + 576) + (576 + 1536) * 2 + (1536 + 576))
    assert report.trainable == 30 * per_layer
    assert 0 < report.percent < 50
    assert "trainable" in str(report) and "rank 64" in str(report)
    # the default is the training stages' rule: recompute activations on a GPU only (a CPU run's are small)
    assert peft_model.base_model.model.is_gradient_checkpointing == detect().cuda


def test_gradient_checkpointing_when_asked(fresh_model):
    model, _ = fresh_model
    peft_model, _ = add_lora(model, gradient_checkpointing=True)
    assert peft_model.base_model.model.is_gradient_checkpointing


def test_rank_128_allowed_and_bad_rank_refused(fresh_model):
    model, _ = fresh_model
    with pytest.raises(ValueError, match="rank 48 is not supported.*64"):
        add_lora(model, rank=48)
    assert 128 in LORA_RANKS
    peft_model, report = add_lora(model, rank=128)
    assert report.rank == 128 and peft_model.peft_config["default"].lora_alpha == 128


def test_starts_identical_and_only_lora_learns(fresh_model):
    model, tok = fresh_model
    batch = tok("The answer is 7", return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
    peft_model, _ = add_lora(model, rank=16)
    with torch.no_grad():
        after = peft_model(**batch).logits
    torch.testing.assert_close(before, after)  # lora_B starts at zero
    snapshot = lora_state(peft_model)
    peft_model.train()
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    frozen_grads = [n for n, p in peft_model.named_parameters() if "lora_" not in n and p.grad is not None]
    assert frozen_grads == []
    opt.step()
    assert lora_delta(snapshot, peft_model) > 0
