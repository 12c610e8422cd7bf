"""helpers.generate.completions's one rule for which engine generates (issue 19): GRPO's rollouts (grpo_backend), evaluation
and the notebooks (generation_backend), printed once, overridden by $GRPO_ROLLOUT_BACKEND with a one-line error
where the asked backend cannot run; and generate_completions / helpers.generate.chat.generate going through it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers.generate import backends as rollout
from helpers.generate.completions import generate_completions
from helpers.runtime.hardware import Hardware

CPU = Hardware(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2, colab=False,
               notebook=False, unsloth=False, vllm=False)
H200 = replace(CPU, cuda=True, gpu_name="NVIDIA H200", cuda_capability=(9, 0), vram_gib=139.8, bf16=True,
               unsloth=True, vllm=True)
T4 = replace(H200, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=15.0, bf16=False, vllm=False)


class Plain:  # a transformers/PEFT model: no vLLM engine
    peft_config = None


class FastInference(Plain):  # an Unsloth model loaded with fast_inference=True
    vllm_engine = object()

    def fast_generate(self, *a, **k):
        raise AssertionError("not called here")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for key in (rollout.BACKEND_ENV, "GRPO_GPU_SPEED"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(rollout, "_ANNOUNCED", set())


@pytest.mark.parametrize("model, hw, plain, expected, engine", [
    (FastInference(), H200, False, "vllm", "Unsloth's vLLM engine"),
    (Plain(), H200, True, "vllm", "TRL's vLLM engine in colocate mode"),
    (Plain(), T4, False, "suite-sampler", "helpers.generate.fast_sampler"),
    (Plain(), T4, True, "transformers", "model.generate"),  # plain TRL without vLLM: TRL as it comes
    (Plain(), H200, False, "transformers", "model.generate"),  # vLLM could run but the model was loaded without it
    (Plain(), CPU, False, "transformers", "model.generate"),
    (Plain(), CPU, True, "transformers", "model.generate"),
])
def test_grpo_rule(model, hw, plain, expected, engine):
    backend = rollout.grpo_backend(model, hw, plain_trl=plain)
    assert backend.name == expected and backend.engine.startswith(engine), backend


def test_grpo_sampler_left_out_when_gpu_speed_says_none(monkeypatch):
    monkeypatch.setenv("GRPO_GPU_SPEED", "none")
    backend = rollout.grpo_backend(Plain(), T4)
    assert backend.name == "transformers" and "GRPO_GPU_SPEED" in backend.reason


@pytest.mark.parametrize("forced, model, hw, expected", [
    ("transformers", FastInference(), H200, "transformers"),
    ("suite-sampler", Plain(), T4, "suite-sampler"),
    ("vllm", FastInference(), H200, "vllm"),
    ("VLLM ", Plain(), H200, None),  # plain_trl=False: no engine to use
    ("suite-sampler", Plain(), CPU, None),
    ("vllm", Plain(), CPU, None),
])
def test_grpo_override(monkeypatch, forced, model, hw, expected):
    monkeypatch.setenv(rollout.BACKEND_ENV, forced)
    if expected is None:
        with pytest.raises(ValueError, match=r"GRPO_ROLLOUT_BACKEND=\S+ .*; fix: "):
            rollout.grpo_backend(model, hw)
    else:
        assert rollout.grpo_backend(model, hw).name == expected


def test_unknown_override_is_one_line(monkeypatch):
    monkeypatch.setenv(rollout.BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError) as err:
        rollout.grpo_backend(Plain(), CPU)
    assert "\n" not in str(err.value) and "fix: one of vllm, suite-sampler, transformers" in str(err.value)


def test_generation_rule(monkeypatch):
    monkeypatch.setattr(rollout, "importable", lambda name: True)  # vllm "installed"
    engine = FastInference()
    assert rollout.generation_backend(engine).name == "vllm"
    training = FastInference()
    training.peft_config = {"default": object()}  # an adapter only in memory: vLLM would not see it
    backend = rollout.generation_backend(training)
    assert backend.name == "transformers" and "only in memory" in backend.reason
    assert rollout.generation_backend(training, lora=("grpo", "/x", 1)).name == "vllm"  # adapter as a request
    sampled = Plain()
    sampled._fast_sampler = object()
    assert rollout.generation_backend(sampled).name == "suite-sampler"
    monkeypatch.setenv(rollout.BACKEND_ENV, "transformers")
    assert rollout.generation_backend(engine).name == rollout.generation_backend(sampled).name == "transformers"
    monkeypatch.setenv(rollout.BACKEND_ENV, "vllm")
    with pytest.raises(ValueError, match="not a vLLM engine; fix"):
        rollout.generation_backend(Plain())


def test_announced_once_per_process(capsys):
    backend = rollout.grpo_backend(Plain(), CPU)
    assert rollout.announce(backend, "GRPO rollouts") is True
    assert rollout.announce(backend, "GRPO rollouts") is False
    out = capsys.readouterr().out
    assert out.count("GRPO rollouts: transformers: model.generate (no CUDA GPU)") == 1
    assert "override: GRPO_ROLLOUT_BACKEND=vllm|suite-sampler|transformers" in out


def test_generation_goes_through_the_boundary(fresh_model, capsys, monkeypatch):
    """helpers.generate.chat.generate (notebooks 01/03, the SFT samples) is generate_completions: same greedy text,
    the backend printed once; forcing transformers bypasses a sampler put in front of generate."""
    from helpers.generate.chat import generate

    model, tokenizer = fresh_model
    prompts = ["What is 2 + 3?", "Name a colour."]
    texts = generate(model, tokenizer, prompts, max_new_tokens=8)
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True) for p in prompts]
    direct = generate_completions(model, tokenizer, rendered, max_new_tokens=8, progress=False)
    assert texts == [t[0] for t in direct.texts] and direct.backend == "transformers"
    assert capsys.readouterr().out.count("generation: transformers") == 1

    calls = []
    original = model.generate

    def in_front(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    in_front._fast_sampler_original = original
    monkeypatch.setattr(model, "generate", in_front, raising=False)
    monkeypatch.setattr(model, "_fast_sampler", object(), raising=False)
    assert generate_completions(model, tokenizer, rendered, max_new_tokens=8, progress=False).backend == \
        "suite-sampler" and calls
    calls.clear()
    monkeypatch.setenv(rollout.BACKEND_ENV, "transformers")
    again = generate_completions(model, tokenizer, rendered, max_new_tokens=8, progress=False)
    assert again.backend == "transformers" and not calls and again.texts == direct.texts


def test_per_call_backend_and_token_ids(fresh_model):
    """generate_completions(backend=...) overrides the rule for one call (reload_check compares weights through
    the model's own generate this way) and returns the completions' token ids, cut at the stop token."""
    model, tokenizer = fresh_model
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], tokenize=False,
                                              add_generation_prompt=True)]
    out = generate_completions(model, tokenizer, rendered, max_new_tokens=6, progress=False,
                                       backend="transformers")
    ids = out.token_ids[0][0]
    assert out.backend == "transformers" and 0 < len(ids) <= 6 and tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == out.texts[0][0]
    with pytest.raises(ValueError, match="backend='tensorrt' is not a rollout backend; fix"):
        generate_completions(model, tokenizer, rendered, max_new_tokens=2, progress=False, backend="tensorrt")
    with pytest.raises(ValueError, match="no sampler is in front of this model's generate; fix"):
        generate_completions(model, tokenizer, rendered, max_new_tokens=2, progress=False,
                                     backend="suite-sampler")
