"""helpers.runtime.speed_options: option names are checked, the machine defaults and the $GRPO_GPU_SPEED override."""

import pytest

from helpers.generate.backends import prepare_model
from helpers.runtime.hardware import Hardware
from helpers.runtime.speed_options import ENV, apply, defaults, environment


def _hw(cuda=True, unsloth=True, vllm=False):
    return Hardware(cuda=cuda, gpu_name="GPU" if cuda else None, cuda_capability=(9, 0) if cuda else None,
                    vram_gib=80.0 if cuda else None, bf16=cuda, cpu_threads=2, colab=False, notebook=False,
                    unsloth=unsloth, vllm=vllm)


def test_defaults_follow_the_machine(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert defaults(_hw()) == ("fast_rollout", "no_compile")
    assert defaults(_hw(vllm=True)) == ()  # vLLM samples
    assert defaults(_hw(cuda=False, unsloth=False)) == ()


def test_environment_overrides_and_names_are_checked(monkeypatch):
    monkeypatch.setenv(ENV, "none")
    assert defaults(_hw()) == ()
    monkeypatch.setenv(ENV, "fast_rollout_keep, prealloc")
    assert defaults(_hw()) == ("fast_rollout_keep", "prealloc")
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(ValueError, match="unknown GPU speed option"):
        defaults(_hw())
    with pytest.raises(ValueError, match="pick one"):
        apply(["fast_rollout", "fast_rollout_keep"])


def test_environment_options_set_unsloth_variables(monkeypatch):
    monkeypatch.delenv("UNSLOTH_COMPILE_DISABLE", raising=False)
    assert environment(["no_compile", "fast_rollout"]) == {"UNSLOTH_COMPILE_DISABLE": "1"}
    done = apply(["no_compile"])
    assert done == {"no_compile": "UNSLOTH_COMPILE_DISABLE=1"}
    import os

    assert os.environ["UNSLOTH_COMPILE_DISABLE"] == "1"


def test_prepare_model_is_a_no_op_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert prepare_model(object(), ["fast_rollout"]) == {"fast_rollout": "skipped (no CUDA)"}
    assert prepare_model(object(), ["no_compile"]) == {}
