import pytest

from helpers.runtime.hardware import Hardware, describe, detect
from helpers.runtime.profiles import pick_profile, use_profile


def hw(**kw):
    base = dict(cuda=False, gpu_name=None, cuda_capability=None, vram_gib=None, bf16=False, cpu_threads=2,
                colab=False, notebook=False, unsloth=False, vllm=False)
    return Hardware(**(base | kw))


def test_profile_from_hardware():
    assert pick_profile(hw(), env={}) == "cpu"
    t4 = hw(cuda=True, gpu_name="Tesla T4", cuda_capability=(7, 5), vram_gib=14.7)
    assert t4.t4_class and not t4.bf16
    assert pick_profile(t4, env={}) == "colab-t4"
    h100 = hw(cuda=True, gpu_name="NVIDIA H100", cuda_capability=(9, 0), vram_gib=79.2, bf16=True)
    assert pick_profile(h100, env={}) == "gpu"


def test_env_overrides_and_is_validated():
    assert pick_profile(hw(), env={"GRPO_PROFILE": "ci"}) == "ci"
    with pytest.raises(ValueError, match="GRPO_PROFILE='tpu'.*one of colab-t4, gpu, cpu, ci"):
        pick_profile(hw(), env={"GRPO_PROFILE": "tpu"})


def test_use_profile_exports(monkeypatch):
    monkeypatch.delenv("GRPO_PROFILE", raising=False)
    assert use_profile("ci") == "ci"
    import os

    assert os.environ["GRPO_PROFILE"] == "ci"
    with pytest.raises(ValueError):
        use_profile("huge")


def test_detect_on_this_machine():
    found = detect()
    assert found.cpu_threads >= 1
    assert found.headless  # pytest is not a Jupyter kernel
    if not found.cuda:
        assert not found.unsloth and not found.vllm and found.cuda_capability is None


def test_describe_is_one_line_with_versions(monkeypatch):
    monkeypatch.setenv("GRPO_PROFILE", "ci")
    line = describe("ci")
    assert "\n" not in line
    assert line.startswith("profile=ci |")
    for part in ("torch=", "transformers=", "trl=", "peft=", "python="):
        assert part in line
