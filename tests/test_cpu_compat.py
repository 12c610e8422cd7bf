"""The TRL-on-CPU workaround: it must match the math, and fail loudly when TRL changes."""

import pytest
import torch

from helpers.train import cpu_compat

trl_utils = pytest.importorskip("trl.trainer.utils")


def reference(hidden, weight, bias, targets, temperature, softcap, scale):
    logits = hidden @ weight.t() + (0 if bias is None else bias)
    logits = logits * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    logp = torch.log_softmax(logits / temperature, -1)
    return logp, logp.gather(-1, targets[:, None]).squeeze(-1)


@pytest.mark.parametrize("softcap,scale,bias", [(None, 1.0, False), (30.0, 0.5, True)])
def test_matches_log_softmax_and_backprops(softcap, scale, bias):
    torch.manual_seed(0)
    hidden = torch.randn(9, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    b = torch.randn(40) if bias else None
    targets = torch.randint(0, 40, (9,))
    out = cpu_compat.TorchChunkedLogProb.apply(
        hidden, weight, b, targets, 0.7, 4096, softcap, scale, ("log_probs", "entropy", "is_top1", "mean_logits",
                                                               "log_sum_sq_probs"))
    logp_all, logp = reference(hidden, weight, b, targets, 0.7, softcap, scale)
    torch.testing.assert_close(out[0], logp)
    torch.testing.assert_close(out[1], -(logp_all.exp() * logp_all).sum(-1))
    torch.testing.assert_close(out[2], torch.log((logp_all.exp() ** 2).sum(-1)))
    assert out[4].dtype == torch.bool and torch.equal(out[4], logp_all.argmax(-1) == targets)
    out[0].sum().backward()
    assert hidden.grad is not None and weight.grad.abs().sum() > 0


def test_only_requested_outputs_and_empty_batch():
    hidden, weight = torch.randn(0, 8, requires_grad=True), torch.randn(10, 8)
    logp, entropy, sq, mean, top1 = cpu_compat.TorchChunkedLogProb.apply(
        hidden, weight, None, torch.zeros(0, dtype=torch.long), 1.0, 4096)
    assert logp.shape == (0,) and logp.requires_grad
    assert entropy is sq is mean is top1 is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the crash is CPU-only")
def test_upstream_still_lacks_a_cpu_kernel():
    """Fails loudly when TRL ships a CPU path of its own (then drop helpers/cpu_compat.py) or renames the hook."""
    assert hasattr(trl_utils, "_ChunkedLogProbFunction"), "TRL renamed its fused LM head: re-check cpu_compat"
    assert hasattr(trl_utils, "add_fused_lm_head"), "TRL removed add_fused_lm_head: re-check cpu_compat"
    head = trl_utils._ChunkedLogProbFunction
    if head is cpu_compat.TorchChunkedLogProb:
        pytest.skip("already patched in this process")
    if head is not None:  # Triton is installed (the dev extra has it): TRL keeps its Triton kernel, GPU-only
        assert head.__module__.startswith("trl.kernels"), head
        h, w, labels = torch.randn(4, 8), torch.randn(10, 8), torch.tensor([1, 2, 3, 4])
        with pytest.raises(RuntimeError, match="active drivers"):
            head.apply(h, w, None, labels, 1.0, 2, None, None, ("logprobs",))
    assert cpu_compat.trl_needs_cpu_patch(), (
        "TRL now has a fused LM head kernel on CPU: helpers/cpu_compat.py may no longer be needed"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the crash is CPU-only")
def test_fused_head_crashes_unpatched_and_works_patched(monkeypatch):
    """The upstream symptom itself, on a tiny real model, then the fix."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config)
    trl_utils.add_fused_lm_head(model)
    ids = torch.randint(0, 64, (2, 5))
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", None)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'apply'"):
        model(input_ids=ids, labels=ids, fused_lm_head=True)
    assert "patched" in cpu_compat.patch_trl_for_cpu()
    out = model(input_ids=ids, labels=ids, fused_lm_head=True)
    logits = model(input_ids=ids).logits
    expected = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(out.log_probs, expected, rtol=1e-4, atol=1e-5)
