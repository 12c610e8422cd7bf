"""How the suite starts Unsloth's vLLM engine (``helpers.model.load.load_model(fast_inference=True)``): the
environment it runs with, how long it may take to come up, and how much GPU memory it takes."""

from __future__ import annotations

import os

from helpers.model.checks import ModelLoadError
from helpers.runtime.threads import time_limit

# The vLLM engine as the suite runs it (measured on an H200 with vLLM 0.26.0, 2026-11-29): in this
# process (with the engine in its own process the start hung for 7 minutes after "Using V2 Model
# Runner"; Unsloth sets this too, to reach the engine's model), offline, no usage reports, and
# FlashInfer's sampler off (its JIT needs the CUDA compiler, which a runtime-only install lacks). And Unsloth's
# standby mode (vLLM sleeps while training runs, so both share the GPU's memory; Unsloth's own GRPO notebooks turn it
# on): unsloth_zoo reads it when ``import unsloth`` runs (with it, no ``expandable_segments``, which vLLM's sleep
# allocator refuses), so it must be set before that import (``helpers.model.load.load_model`` does). Standby sizes
# vLLM to ~87% of the GPU whatever ``gpu_memory_utilization`` says: runs sharing a GPU set it to 0
# (benchmarks/gpu_e2e/env.sh).
VLLM_ENV = {
    "UNSLOTH_VLLM_STANDBY": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
VLLM_START_TIMEOUT_ENV = "GRPO_VLLM_START_TIMEOUT"
GPU_MEMORY_ENV = "GRPO_GPU_MEMORY_UTILIZATION"  # the share of GPU memory vLLM takes, e.g. 0.2 when runs share a GPU


def _env_float(name: str, low: float, high: float) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ModelLoadError(f"{name}={raw!r} must be a number in [{low}, {high}]; fix: e.g. {name}=0.3, or unset it.")
    return value


def apply_vllm_env() -> None:
    """Set :data:`VLLM_ENV` where the environment does not already say otherwise (before an engine starts, and for
    Unsloth's before ``import unsloth``: ``load_model``; or TRL's own in colocate mode)."""
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)


def gpu_memory_share() -> float | None:
    """``$GRPO_GPU_MEMORY_UTILIZATION`` (the share of GPU memory a vLLM engine takes) when set, checked to be in
    [0.05, 0.95] (else a one-line ``ModelLoadError``); None when unset."""
    return _env_float(GPU_MEMORY_ENV, 0.05, 0.95)


class EngineStartTimeout(TimeoutError):
    """The vLLM engine did not come up within the allowed time."""


def vllm_start_timeout() -> float:
    """Seconds the vLLM engine may take to start (``$GRPO_VLLM_START_TIMEOUT``, default 900)."""
    raw = os.environ.get(VLLM_START_TIMEOUT_ENV, "900")
    try:
        value = float(raw)
    except ValueError:
        raise ModelLoadError(f"{VLLM_START_TIMEOUT_ENV}={raw!r} is not a number of seconds; fix: e.g. "
                             f"{VLLM_START_TIMEOUT_ENV}=900.") from None
    return max(value, 0.0)


def engine_deadline(seconds: float):
    """Raise :class:`EngineStartTimeout` in the block if it runs longer than ``seconds`` (0: no limit;
    :func:`helpers.runtime.threads.time_limit`: main thread only, where notebooks and scripts run; the engine's
    start waits in Python loops, where the signal is delivered).

    >>> with engine_deadline(0): pass
    """
    return time_limit(seconds, lambda: EngineStartTimeout(f"the vLLM engine did not start within {seconds:.0f} s"))
