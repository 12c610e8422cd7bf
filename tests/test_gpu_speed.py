"""helpers.gpu_speed: option names are checked, the machine defaults and the $GRPO_GPU_SPEED override."""

import pytest

from helpers import gpu_speed
from helpers.runtime import Hardware


def _hw(cuda=True, unsloth=True, vllm=False):
    return Hardware(cuda=cuda, gpu_name="GPU" if cuda else None, cuda_capability=(9, 0) if cuda else None,
                    vram_gib=80.0 if cuda else None, bf16=cuda, cpu_threads=2, colab=False, notebook=False,
                    unsloth=unsloth, vllm=vllm)


def test_defaults_follow_the_machine(monkeypatch):
    monkeypatch.delenv(gpu_speed.ENV, raising=False)
    assert gpu_speed.defaults(_hw()) == ("fast_rollout", "no_compile")
    assert gpu_speed.defaults(_hw(vllm=True)) == ()  # vLLM samples
    assert gpu_speed.defaults(_hw(cuda=False, unsloth=False)) == ()


def test_environment_overrides_and_names_are_checked(monkeypatch):
    monkeypatch.setenv(gpu_speed.ENV, "none")
    assert gpu_speed.defaults(_hw()) == ()
    monkeypatch.setenv(gpu_speed.ENV, "fast_rollout_keep, prealloc")
    assert gpu_speed.defaults(_hw()) == ("fast_rollout_keep", "prealloc")
    monkeypatch.setenv(gpu_speed.ENV, "fast")
    with pytest.raises(ValueError, match="unknown GPU speed option"):
        gpu_speed.defaults(_hw())
    with pytest.raises(ValueError, match="pick one"):
        gpu_speed.apply(["fast_rollout", "fast_rollout_keep"])


def test_environment_options_set_unsloth_variables(monkeypatch):
    monkeypatch.delenv("UNSLOTH_COMPILE_DISABLE", raising=False)
    assert gpu_speed.environment(["no_compile", "fast_rollout"]) == {"UNSLOTH_COMPILE_DISABLE": "1"}
    done = gpu_speed.apply(["no_compile"])
    assert done == {"no_compile": "UNSLOTH_COMPILE_DISABLE=1"}
    import os

    assert os.environ["UNSLOTH_COMPILE_DISABLE"] == "1"


def test_prepare_model_is_a_no_op_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert gpu_speed.prepare_model(object(), ["fast_rollout"]) == {"fast_rollout": "skipped (no CUDA)"}
    assert gpu_speed.prepare_model(object(), ["no_compile"]) == {}
