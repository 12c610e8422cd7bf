"""helpers.generate.fast_sampler: the graphed sampler computes what transformers computes (checked eagerly on a CPU in
float32: greedy decoding must give the same tokens), falls back where it does not apply, and samples."""

import pytest
import torch

from helpers.generate import fast_sampler as fast_rollout
from helpers.generate.sampler_install import install, uninstall


def _model(kind, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    dims = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if kind == "llama":
        cfg = LlamaConfig(rope_theta=10000.0, tie_word_embeddings=True, **dims)
    else:
        cfg = Qwen2Config(rope_theta=1e6, tie_word_embeddings=True, use_sliding_window=False, **dims)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    with torch.no_grad():  # B starts at zero: make the adapter matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def _prompts():
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [0, 0, 0, 20, 21, 22]])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_greedy_matches_transformers(kind):
    from transformers import GenerationConfig

    model = _model(kind)
    ids, mask = _prompts()
    cfg = GenerationConfig(max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=[], bos_token_id=1)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    sampler = fast_rollout.FastSampler(model, bucket=8, use_graphs=False)
    out = sampler.generate(ids, mask, cfg)
    assert out.shape == ref.shape
    assert torch.equal(out, ref)
    assert sampler.stats["eager_steps"] == 19


def test_a_one_token_prompt_matches_transformers():
    """A prompt of one token (the prefill then has t == 1, as a decode step does) decodes as transformers does."""
    from transformers import GenerationConfig

    model = _model("qwen2", seed=6)
    ids = torch.tensor([[7], [11]])
    cfg = GenerationConfig(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=[], bos_token_id=1)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
    assert torch.equal(fast_rollout.FastSampler(model, bucket=8, use_graphs=False).generate(ids, None, cfg), ref)


def test_eos_rows_continue_with_pad_and_install_falls_back():
    from transformers import GenerationConfig

    model = _model("llama", seed=1)
    ids, mask = _prompts()
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=[2], bos_token_id=1)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        # the first greedy token of row 0 as "eos": that row must be padded from then on
        first = int(ref[0, ids.shape[1]])
        cfg_eos = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=[first],
                                   bos_token_id=1)
        ref_eos = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg_eos)
    sampler = install(model, use_graphs=False, bucket=8)
    try:
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg_eos)
        assert sampler.stats["rollouts"] == 1
        assert (out[0, ids.shape[1] + 1:] == 0).all()
        assert torch.equal(out[:, :ref_eos.shape[1]], ref_eos)
        with pytest.warns(UserWarning, match="top_k"):
            topk = GenerationConfig(max_new_tokens=4, do_sample=True, top_k=5, pad_token_id=0, eos_token_id=[2])
            fallback = model.generate(input_ids=ids, attention_mask=mask, generation_config=topk)
        assert fallback.shape[0] == 3 and sampler.stats["rollouts"] == 1
        assert any("top_k" in why for why in sampler.fallbacks)
    finally:
        uninstall(model)
    assert "generate" not in model.__dict__


def test_sampling_follows_the_softmax():
    """Gumbel-max sampling at temperature T: token frequencies match softmax(logits / T)."""
    from transformers import GenerationConfig

    model = _model("qwen2", seed=2)
    ids = torch.tensor([[5, 6, 7]] * 4000)
    cfg = GenerationConfig(max_new_tokens=1, do_sample=True, temperature=0.7, top_k=0, top_p=1.0,
                           pad_token_id=0, eos_token_id=[], bos_token_id=1)
    torch.manual_seed(0)
    out = fast_rollout.FastSampler(model, use_graphs=False).generate(ids, None, cfg)
    with torch.no_grad():
        logits = model(input_ids=ids[:1]).logits[0, -1]
    probs = torch.softmax(logits / 0.7, -1)
    freq = torch.bincount(out[:, -1], minlength=probs.numel()).float() / out.shape[0]
    assert (freq - probs).abs().max() < 0.03
    assert freq.argmax() == probs.argmax()


def test_unsupported_architecture_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(fast_rollout.Unsupported):
        fast_rollout.FastSampler(model)._build()


def test_triton_decode_matches_torch_decode():
    """The Triton decode kernels (run by Triton's CPU interpreter here, TRITON_INTERPRET=1) give the tokens the
    torch decode step gives, for Llama (MHA-like) and Qwen2 (grouped-query, biases) shapes."""
    import os

    if fast_rollout.triton is None or os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs Triton (on a CPU: installed, with TRITON_INTERPRET=1)")
    from transformers import GenerationConfig

    ids, mask = _prompts()
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=[], bos_token_id=1)
    for kind in ("llama", "qwen2"):
        model = _model(kind, seed=3)
        ref = fast_rollout.FastSampler(model, bucket=8, use_graphs=False, kernels="torch").generate(ids, mask, cfg)
        out = fast_rollout.FastSampler(model, bucket=8, use_graphs=False, kernels="triton").generate(ids, mask, cfg)
        assert torch.equal(out, ref), kind


class _Broken:
    """Stands in for a Triton kernel (``kernel[grid](...)``) or a sampler method that fails on the user's GPU."""

    def __init__(self, exc):
        self.exc, self.calls = exc, 0

    def __getitem__(self, grid):
        return self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise self.exc


def _gpu_failures():
    """What a sampler can meet on a user's GPU: a kernel over the card's shared memory (Triton raises at its first
    launch), a CUDA build without the card's architecture, memory running out for its cache."""
    triton = pytest.importorskip("triton")
    from triton.runtime.errors import OutOfResources

    return [("_add_rms_kernel", OutOfResources(98304, 65536, "shared memory")),
            ("_decode_step", RuntimeError("CUDA error: no kernel image is available for execution on the device\n"
                                          "CUDA kernel errors might be asynchronously reported")),
            ("_alloc", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))] if triton else []


def _break(monkeypatch, where, exc):
    from helpers.generate import fast_kernels

    broken = _Broken(exc)
    if where.startswith("_") and hasattr(fast_kernels, where) and where.endswith("_kernel"):
        monkeypatch.setattr(fast_kernels, where, broken)
    else:
        monkeypatch.setattr(fast_rollout.FastSampler, where, lambda self, *a, **k: broken())
    return broken


@pytest.mark.parametrize("where, exc", _gpu_failures(), ids=lambda x: x if isinstance(x, str) else type(x).__name__)
def test_a_failing_sampler_hands_the_run_to_generate(monkeypatch, capsys, where, exc):
    """Issue 29, item 2: the sampler fails (a kernel at launch, the decode step, its cache allocation); the trainer's
    generate call still returns the model's own completions, one line on stderr says why, and the sampler is not
    tried again (its cache freed)."""
    from transformers import GenerationConfig

    model = _model("llama", seed=4)
    ids, mask = _prompts()
    cfg = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=[], bos_token_id=1)
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    sampler = install(model, use_graphs=False, kernels="triton", bucket=8)
    broken = _break(monkeypatch, where, exc)
    try:
        first = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg, disable_compile=True)
        second = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    finally:
        uninstall(model)
    assert torch.equal(first, ref) and torch.equal(second, ref)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and type(exc).__name__ in lines[0] and "model's own generate" in lines[0], lines
    assert broken.calls == 1 and sampler.stats["rollouts"] == 0 and sampler._state is None
    assert sampler.failed.startswith(type(exc).__name__)


def test_prepare_model_tries_the_sampler_before_training(monkeypatch, capsys):
    """On a CUDA machine (faked here: the sampler runs its eager CPU path) ``prepare_model`` keeps the sampler
    only if its first try works; ``prepare_rollouts`` then names the engine that really generates."""
    from helpers.generate import backends
    from helpers.runtime.hardware import Hardware

    t4 = Hardware(cuda=True, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=15.0, bf16=False, cpu_threads=2,
                  colab=True, notebook=False, unsloth=True, vllm=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("GRPO_GPU_SPEED", raising=False)
    sampler_backend = backends.Backend("suite-sampler", "helpers.generate.fast_sampler", "test")

    model = _model("qwen2", seed=5)
    assert backends.prepare_rollouts(model, sampler_backend, t4) is sampler_backend
    assert model._fast_sampler.stats["rollouts"] == 1  # the probe
    uninstall(model)

    model = _model("qwen2", seed=5)
    _break(monkeypatch, "_decode_step", RuntimeError("CUDA error: no kernel image is available for execution"))
    backend = backends.prepare_rollouts(model, sampler_backend, t4)
    assert backend.name == "transformers" and backend.engine == "model.generate (Unsloth's)"
    assert "failed on this GPU: RuntimeError: CUDA error: no kernel image" in backend.reason
    assert getattr(model, "_fast_sampler", None) is None and "generate" not in model.__dict__
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no kernel image" in err[0]
