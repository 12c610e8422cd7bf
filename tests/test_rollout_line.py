"""The GRPO rollout line says what Unsloth does with the adapter (issue 31): with the pinned unsloth_zoo 2026.10.9
and vLLM 0.26.0 an engine wrapped for merged-weight rollouts gets the adapter folded into its weights for each
rollout, not a LoRA request (evidence: helpers.model.vllm_engine.merged_weight_rollouts). Pinned: the `gpu`
extra must pin the versions the line was read against, and where those packages are installed their code must
still hold the path the line describes (read from the installed files, without importing them)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.generate import backends as rollout
from helpers.model.vllm_engine import (
    MERGED_ROLLOUT_ENV,
    ROLLOUT_LINE_VERIFIED,
    adapter_in_rollouts,
    merged_weight_rollouts,
)
from helpers.runtime.hardware import Hardware

REPO = Path(__file__).resolve().parents[1]
H200 = Hardware(cuda=True, gpu_name="NVIDIA H200", cuda_capability=(9, 0), vram_gib=139.8, bf16=True, cpu_threads=16,
                colab=False, notebook=False, unsloth=True, vllm=True)


class FastInference:  # an Unsloth model loaded with fast_inference=True
    peft_config = None

    def __init__(self, engine):
        self.vllm_engine = engine

    def fast_generate(self, *a, **k):
        raise AssertionError("not called here")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for key in (rollout.BACKEND_ENV, "GRPO_GPU_SPEED", MERGED_ROLLOUT_ENV):
        monkeypatch.delenv(key, raising=False)


def test_a_wrapped_engine_is_said_to_fold_the_adapter(monkeypatch):
    wrapped = SimpleNamespace(_unsloth_merged_rollout_wrapped=True)  # set by install_merged_rollout_engine_wrapper
    line = str(rollout.grpo_backend(FastInference(wrapped), H200))
    assert "the adapter folded into its weights for each rollout, no LoRA request" in line
    assert "LoRA as a request" not in line
    peft = SimpleNamespace(base_model=FastInference(wrapped), fast_generate=None)  # the engine under PEFT's wrapper
    assert merged_weight_rollouts(peft)
    monkeypatch.setenv(MERGED_ROLLOUT_ENV, "attention")
    assert "attention layers' adapter folded" in adapter_in_rollouts(FastInference(wrapped))


def test_an_engine_without_the_wrapper_gets_a_lora_request(monkeypatch):
    monkeypatch.setenv(MERGED_ROLLOUT_ENV, "0")  # Unsloth then does not wrap the engine
    plain = SimpleNamespace()  # a vllm.LLM as it comes: no attribute
    line = str(rollout.grpo_backend(FastInference(plain), H200))
    assert line.startswith("vllm: Unsloth's vLLM engine (fast_inference=True), the LoRA as a request")
    assert not merged_weight_rollouts(SimpleNamespace())


def _gpu_extra_pins() -> dict[str, str]:
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^gpu = \[(.*?)^\]", text, re.M | re.S).group(1)
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', block))


def test_the_gpu_extra_pins_the_versions_the_line_was_read_against():
    pins = {k.replace("-", "_"): v for k, v in _gpu_extra_pins().items()}
    for package, version in ROLLOUT_LINE_VERIFIED.items():
        assert pins.get(package) == version, (
            f"the gpu extra pins {package}=={pins.get(package)}, the rollout line was read against {version}: read "
            "what that version does with the adapter in GRPO rollouts and update helpers.model.vllm_engine")


def _source(package: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path.read_text(encoding="utf-8") if path.exists() else None


# What the line relies on, as it stands in the pinned releases' files.
UPSTREAM = {
    ("unsloth_zoo", "unsloth_zoo", "vllm_utils.py"): [
        "install_merged_rollout_engine_wrapper(llm)",
        "llm._unsloth_merged_rollout_wrapped = True",
        "state = prepare_merged_rollout(model) if load_tensors else None",
        "if state is not None: return _MergedLoRARequest(state, save_directory)",
        'if value in ("", "auto"): return "all" if _merged_rollout_auto_platform() is None else None',
        "Merged-weight rollouts on (",
    ],
    ("unsloth", "unsloth", "models/rl_replacements.py"): [
        'kwargs["lora_request"] = load_lora(lora_name, load_tensors = True)',
    ],
    ("vllm", "vllm", "entrypoints/llm.py"): [
        "lora_request: Sequence[LoRARequest] | LoRARequest | None = None",
        "def reset_prefix_cache(",
    ],
}


@pytest.mark.parametrize("where", list(UPSTREAM), ids=[w[0] for w in UPSTREAM])
def test_the_installed_upstream_still_has_the_path_the_line_describes(where):
    distribution, package, relative = where
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed here (the GPU stack: pip install '.[gpu]')")
    source = _source(package, relative)
    assert source is not None, f"{package}/{relative} is missing from {distribution} {installed}"
    assert installed == ROLLOUT_LINE_VERIFIED[distribution], (
        f"{distribution} {installed} is installed; the rollout line was read against "
        f"{ROLLOUT_LINE_VERIFIED[distribution]}: read it again (helpers.model.vllm_engine.merged_weight_rollouts)")
    missing = [needle for needle in UPSTREAM[where] if needle not in source]
    assert not missing, f"{distribution} {installed} no longer has {missing}: read what it does with the adapter"
