"""A vLLM engine start that Unsloth retried is one line on the console and in run.log (issue 31).

On an H100 shared by two runs (2026-12-06) notebook 01's first engine start failed ("Available KV cache memory:
-0.35 GiB", "No available memory for the cache blocks") and Unsloth started it again with smaller sizes; only the
executed notebook showed it. Here ``load_model`` runs on a pretend GPU whose ``FastLanguageModel.from_pretrained``
emits what the pinned versions emit during such a start: unsloth_zoo 2026.10.9's ``print``s (vllm_utils.py
l. 5356-5358 and 5390-5393) and vLLM 0.26.0's log records (its own ``vllm`` logger, configured as
``vllm.logger.DEFAULT_LOGGING_CONFIG`` does, before the start or during it)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import types
from types import SimpleNamespace

import pytest

from helpers.model import load as loading
from helpers.model.checks import ModelLoadError
from helpers.model.vllm_engine import GPU_MEMORY_ENV, VLLM_ENV, EngineStartWatch
from helpers.run.progress import Follower, RunLog
from helpers.runtime.hardware import Hardware
from helpers.runtime.notices import NOTICES_NAME

H100 = Hardware(cuda=True, gpu_name="NVIDIA H100 80GB HBM3", cuda_capability=(9, 0), vram_gib=79.2, bf16=True,
                cpu_threads=16, colab=False, notebook=False, unsloth=True, vllm=True)

# vLLM 0.26.0 v1/core/kv_cache_utils.py l. 758-765, the error Unsloth catches
NO_CACHE_MEMORY = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing "
                   "the engine (this flag also controls CPU memory reservation on the CPU backend, despite its name). "
                   "See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")


def vllm_logging() -> None:
    """vLLM's own logger set-up (vllm/logger.py DEFAULT_LOGGING_CONFIG): a handler on ``vllm`` writing to the
    sys.stdout of the moment, no propagation."""
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"vllm": {"format": "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"}},
        "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "level": "INFO",
                              "stream": "ext://sys.stdout"}},
        "loggers": {"vllm": {"handlers": ["vllm"], "level": "INFO", "propagate": False}},
    })


def engine_args(share: float, seqs: int, tokens: int) -> dict:
    return {"dtype": "torch.bfloat16", "max_model_len": 2048, "enable_prefix_caching": True,
            "gpu_memory_utilization": share, "max_num_batched_tokens": tokens, "max_num_seqs": seqs,
            "enable_lora": True, "max_lora_rank": 64, "model": "/models/smol"}


def args_log(args: dict) -> None:
    logging.getLogger("vllm.entrypoints.serve.utils.api_utils").info("non-default args: %s", args)


def kv_memory_log(gib: str) -> None:
    logging.getLogger("vllm.v1.worker.gpu_worker").info("Available KV cache memory: %s GiB", gib)


@pytest.fixture
def gpu(monkeypatch, tmp_path, embedded_path):
    """``load_model`` on a pretend H100 with Unsloth inside a ``grpo-notebooks run`` (``$GRPO_RUN_DIR``)."""
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRPO_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(loading, "detect", lambda: H100)
    monkeypatch.setattr(loading, "_check_memory", lambda *a, **k: None)
    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = SimpleNamespace(from_pretrained=None)
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    for key in (*VLLM_ENV, GPU_MEMORY_ENV):
        monkeypatch.delenv(key, raising=False)
    vllm = logging.getLogger("vllm")
    saved = vllm.handlers[:], vllm.propagate, vllm.level
    model = SimpleNamespace(config=SimpleNamespace(), generation_config=SimpleNamespace(), named_parameters=lambda: iter(()))
    fake.loaded = (model, AutoTokenizer.from_pretrained(embedded_path))
    yield fake
    vllm.handlers[:], vllm.propagate, vllm.level = saved


def retried_start(configure_inside: bool):
    def start(**kwargs):
        if configure_inside:  # vLLM imported, so its logging configured, only once the start began
            vllm_logging()
        args_log(engine_args(0.3, 96, 8192))
        kv_memory_log("-0.35")
        print(f"Unsloth: Retrying vLLM to process {72} sequences and {8192} tokens in tandem.\n"
              f"Error:\n{NO_CACHE_MEMORY}")  # unsloth_zoo 2026.10.9 vllm_utils.py l. 5390-5393
        args_log(engine_args(0.255, 72, 8192))
        kv_memory_log("4.12")
        logging.getLogger("vllm.v1.core.kv_cache_utils").info("GPU KV cache size: %s tokens", f"{134_816:,}")
        return start.fake.loaded
    return start


@pytest.mark.parametrize("configure_inside", [False, True], ids=["vllm-imported-before", "vllm-imported-during"])
def test_a_retried_start_is_one_line_in_the_notebook_on_the_console_and_in_run_log(gpu, tmp_path, capsys,
                                                                                 configure_inside):
    if not configure_inside:
        vllm_logging()  # `import unsloth` imports vLLM (Unsloth patches it): its logging is set up before the load
    follower = Follower(tmp_path, RunLog(tmp_path / "run.log", console := io.StringIO()), interval=60)
    start = retried_start(configure_inside)
    start.fake = gpu
    gpu.FastLanguageModel.from_pretrained = start
    model, tokenizer = loading.load_model(profile="gpu")
    assert model is gpu.loaded[0]
    out = capsys.readouterr().out
    assert "Unsloth: Retrying vLLM to process 72 sequences" in out  # Unsloth's own output still reaches the notebook
    ours = [line for line in out.splitlines() if line.startswith("vLLM engine:")]
    assert ours == [
        "vLLM engine: the first start failed (No available memory for the cache blocks; KV cache memory -0.35 GiB) "
        "and Unsloth started it again with smaller sizes: gpu_memory_utilization 0.255, 72 sequences, 8,192 batched "
        "tokens, a KV cache of 134,816 tokens (a slower load); fix: a GPU that no other run shares (vLLM counts what "
        "other processes allocate while it measures), or a larger GRPO_GPU_MEMORY_UTILIZATION (it runs with 0.255)."]
    assert [json.loads(line)["text"] for line in (tmp_path / NOTICES_NAME).read_text().splitlines()] == ours
    assert follower.poll() == 1
    assert console.getvalue().splitlines() == ["  " + ours[0]]
    assert (tmp_path / "run.log").read_text().splitlines()[0].endswith("  " + ours[0])
    assert not isinstance(sys.stdout, type(None)) and type(sys.stdout).__name__ != "_Tee"  # stdout given back


def test_a_first_start_that_works_says_nothing(gpu, tmp_path, capsys):
    vllm_logging()

    def start(**kwargs):
        args_log(engine_args(0.7, 96, 8192))
        kv_memory_log("30.5")
        return gpu.loaded

    gpu.FastLanguageModel.from_pretrained = start
    loading.load_model(profile="gpu")
    assert "vLLM engine:" not in capsys.readouterr().out
    assert not (tmp_path / NOTICES_NAME).exists()


def test_a_start_retried_after_a_memory_race_names_the_shared_gpu(gpu, tmp_path, capsys):
    def start(**kwargs):
        print("Unsloth: Another process on this GPU freed memory while vLLM was profiling. Retrying the load "
              "unchanged (1 of 3).\nError:\nError in memory profiling. Initial free memory 70.1 GiB, current free "
              "memory 71.3 GiB.")  # unsloth_zoo 2026.10.9 vllm_utils.py l. 5356-5358
        return gpu.loaded

    gpu.FastLanguageModel.from_pretrained = start
    loading.load_model(profile="gpu")
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("vLLM engine:")]
    assert line == ("vLLM engine: the first start failed (Error in memory profiling) and Unsloth started it again "
                    "unchanged; fix: a GPU that no other run shares (another process freed GPU memory while vLLM "
                    "measured it).")


def test_a_start_that_fails_after_its_retry_is_only_its_error(gpu, tmp_path, capsys):
    def start(**kwargs):
        print(f"Unsloth: Retrying vLLM to process 72 sequences and 8192 tokens in tandem.\nError:\n{NO_CACHE_MEMORY}")
        raise RuntimeError(NO_CACHE_MEMORY)

    gpu.FastLanguageModel.from_pretrained = start
    with pytest.raises(ModelLoadError, match="No available memory for the cache blocks"):
        loading.load_model(profile="gpu")
    assert "vLLM engine:" not in capsys.readouterr().out and not (tmp_path / NOTICES_NAME).exists()


def test_the_watch_counts_two_failed_starts_and_names_the_fix_for_each_cause():
    watch = EngineStartWatch()
    for _ in range(2):
        watch.feed(f"Unsloth: Retrying vLLM to process 54 sequences and 4096 tokens in tandem.\nError:\n{NO_CACHE_MEMORY}")
    assert watch.line().startswith("vLLM engine: the first 2 starts failed (No available memory for the cache blocks)"
                                   " and Unsloth started it again with smaller sizes (a slower load); fix: a GPU that")
    watch = EngineStartWatch()  # vLLM 0.26 v1/worker/utils.py request_memory: the share is more than is free
    watch.feed("Unsloth: Retrying vLLM to process 72 sequences and 8192 tokens in tandem.\nError:\nFree memory on "
               "device cuda:0 (20.1/79.2 GiB) on startup is less than desired GPU memory utilization (0.7, 55.4 GiB). "
               "Decrease GPU memory utilization or reduce GPU memory used by other processes.")
    watch.feed(f"INFO non-default args: {engine_args(0.595, 72, 8192)}")
    assert watch.line().endswith("; fix: a smaller GRPO_GPU_MEMORY_UTILIZATION (it runs with 0.595), or a GPU that no "
                                 "other run shares.")
