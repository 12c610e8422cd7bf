"""helpers.model.load's vLLM start on a GPU (issue 14's bad input), driven on a CPU with a stand-in for Unsloth:
an engine that fails to start or hangs becomes one line naming the cause and ``fast_inference=False``."""

from __future__ import annotations

import sys
import time
import types

import pytest

from helpers.model import load as loading
from helpers.model.checks import ModelLoadError
from helpers.model.vllm_engine import (
    GPU_MEMORY_ENV,
    VLLM_ENV,
    VLLM_START_TIMEOUT_ENV,
    EngineStartTimeout,
    engine_deadline,
    gpu_memory_share,
    vllm_start_timeout,
)
from helpers.runtime.hardware import Hardware

H200 = Hardware(cuda=True, gpu_name="H200", cuda_capability=(9, 0), vram_gib=139.8, bf16=True, cpu_threads=16,
                colab=False, notebook=False, unsloth=True, vllm=True)


def test_engine_deadline_interrupts_a_hung_start():
    start = time.perf_counter()
    with pytest.raises(EngineStartTimeout, match="did not start within 0 s"):
        with engine_deadline(0.3):
            time.sleep(10)  # an engine waiting for a worker that never answers
    assert time.perf_counter() - start < 3


def test_engine_deadline_zero_means_no_limit():
    with engine_deadline(0):
        time.sleep(0.01)


@pytest.fixture
def fake_gpu(monkeypatch):
    """``load_model`` on a pretend H200 with Unsloth, whose ``from_pretrained`` the test sets."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loading, "detect", lambda: H200)
    monkeypatch.setattr(loading, "_check_memory", lambda *a, **k: None)
    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = types.SimpleNamespace(from_pretrained=None)
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    for key in VLLM_ENV:
        monkeypatch.delenv(key, raising=False)
    return fake.FastLanguageModel


def test_engine_that_fails_to_start_is_one_line(fake_gpu):
    def start(**kwargs):
        assert kwargs["fast_inference"] is True and kwargs["gpu_memory_utilization"] == 0.7
        raise RuntimeError("Engine core initialization failed. See root cause above.\nFailed core proc(s): {}")

    fake_gpu.from_pretrained = start
    with pytest.raises(ModelLoadError) as err:
        loading.load_model(profile="gpu")
    message = str(err.value)
    assert "\n" not in message and "Engine core initialization failed" in message
    assert "fast_inference=False" in message
    import os

    assert all(os.environ[k] == v for k, v in VLLM_ENV.items())  # the in-process engine, offline


def test_engine_that_hangs_is_stopped_with_a_clear_error(fake_gpu, monkeypatch):
    monkeypatch.setenv(VLLM_START_TIMEOUT_ENV, "0.5")
    fake_gpu.from_pretrained = lambda **kwargs: time.sleep(30)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"did not start within 0 s; fix: pass fast_inference=False"):
        loading.load_model(profile="gpu")
    assert time.perf_counter() - start < 10


def test_no_vllm_means_no_fast_inference(fake_gpu, monkeypatch):
    monkeypatch.setattr(loading, "detect", lambda: Hardware(**{**H200.__dict__, "vllm": False}))
    with pytest.raises(ModelLoadError, match="fix: pass fast_inference=False"):
        loading.load_model(profile="gpu", fast_inference=True)
    seen = {}
    fake_gpu.from_pretrained = lambda **kwargs: seen.update(kwargs) or (_ for _ in ()).throw(KeyError("stop"))
    with pytest.raises(KeyError):  # not an engine failure: vLLM was not asked for, the error is not rewritten
        loading.load_model(profile="gpu")
    assert seen["fast_inference"] is False


def test_bad_start_timeout_and_memory_share_are_refused(monkeypatch):
    monkeypatch.setenv(VLLM_START_TIMEOUT_ENV, "soon")
    with pytest.raises(ModelLoadError, match="not a number of seconds"):
        vllm_start_timeout()
    monkeypatch.setenv(GPU_MEMORY_ENV, "2")
    with pytest.raises(ModelLoadError, match=r"must be a number in \[0.05, 0.95\]"):
        gpu_memory_share()
