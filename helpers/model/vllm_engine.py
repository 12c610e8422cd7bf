"""How the suite starts Unsloth's vLLM engine (``helpers.model.load.load_model(fast_inference=True)``): the
environment it runs with, how long it may take to come up, and how much GPU memory it takes."""

from __future__ import annotations

import os

from helpers.model.checks import ModelLoadError
from helpers.runtime.threads import time_limit

# The vLLM engine as the suite runs it (measured on an H200 with vLLM 0.26.0, 2026-11-29): in this
# process (with the engine in its own process the start hung for 7 minutes after "Using V2 Model
# Runner"; Unsloth sets this too, to reach the engine's model), offline, no usage reports, and
# FlashInfer's sampler off (its JIT needs the CUDA compiler, which a runtime-only install lacks).
VLLM_ENV = {
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
    """Set :data:`VLLM_ENV` where the environment does not already say otherwise (before an engine starts:
    Unsloth's in ``load_model``, or TRL's own in colocate mode)."""
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


# ---------------------------------------------------------------------------------------------------
# What happens to the LoRA adapter in GRPO's rollouts through Unsloth's engine (issue 31)

# The versions the rollout line was read against (pyproject.toml's `gpu` extra must pin these:
# tests/test_rollout_line.py). Read in the wheels of unsloth_zoo 2026.10.9 (unsloth_zoo/vllm_utils.py),
# unsloth 2026.10.9 and vLLM 0.26.0; on the H100 on 2026-12-06 Unsloth printed "Merged-weight rollouts on
# (all, automatic): folding the adapter into 210 shared weights" (SmolLM2-135M: 30 layers x 7 projections).
ROLLOUT_LINE_VERIFIED = {"unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9", "vllm": "0.26.0"}
MERGED_ROLLOUT_ENV = "UNSLOTH_VLLM_MERGED_ROLLOUT"  # Unsloth's switch: unset/"auto", "1", "attention", "0"


def _engine(model):
    for holder in (model, getattr(model, "base_model", None)):
        engine = getattr(holder, "vllm_engine", None)
        if engine is not None:
            return engine
    return None


def merged_weight_rollouts(model) -> bool:
    """Whether Unsloth folds the adapter into its vLLM engine's weights for each GRPO rollout, rather than
    sending vLLM the adapter as a LoRA request: true when the engine on ``model`` carries Unsloth's
    merged-rollout wrapper.

    How it works in unsloth_zoo 2026.10.9 (``unsloth_zoo/vllm_utils.py``, line numbers of the wheel):
    ``load_vllm`` (l. 4377) wraps the engine's ``generate``/``chat`` after it starts, when
    ``_merged_rollout_enabled()`` and ``_merged_rollout_auto_engine_ok(...)`` (l. 5433-5437) hold, through
    ``install_merged_rollout_engine_wrapper`` (l. 7157), which sets ``llm._unsloth_merged_rollout_wrapped``.
    With ``$UNSLOTH_VLLM_MERGED_ROLLOUT`` unset that is automatic (``_merged_rollout_mode``, l. 6341;
    ``_merged_rollout_auto_platform``, l. 6316: Linux, CUDA, Triton, vLLM >= 0.11.2) for one synchronous text
    engine serving 16-bit LoRA on one GPU (``_merged_rollout_auto_engine_ok``, l. 6359): the suite's engine on
    an Ampere-or-newer GPU. Unsloth's GRPO trainer asks ``model.load_lora(name, load_tensors=True)`` for each
    vLLM generate call (unsloth 2026.10.9 ``unsloth/models/rl_replacements.py`` l. 5607; ``model.load_lora``
    is ``unsloth_zoo.vllm_utils.load_lora``, ``unsloth/models/_utils.py`` l. 8089); ``load_lora`` (l. 7183)
    returns a ``_MergedLoRARequest`` marker once ``prepare_merged_rollout`` accepts the model (l. 6634: it
    prints "Merged-weight rollouts on (all, automatic): folding the adapter into N shared weights", or why
    not, and then a real ``LoRARequest`` is sent). The wrapped call (``_merged_rollout_call``, l. 7075) resets
    vLLM's prefix cache, folds s·B·A into the weights vLLM shares with the training model
    (``merged_rollout``, l. 6964), generates with ``lora_request=None`` (``_merged_rollout_rest_request``:
    None when every LoRA layer is folded) and restores the weights. vLLM 0.26.0's ``LLM.generate``
    (``vllm/entrypoints/llm.py`` l. 411) then runs the base path on the folded weights; its
    ``LLM.reset_prefix_cache`` (l. 789) is the reset the wrapper calls.
    """
    return bool(getattr(_engine(model), "_unsloth_merged_rollout_wrapped", False))


def adapter_in_rollouts(model) -> str:
    """How the adapter reaches Unsloth's vLLM engine in GRPO's rollouts, for the rollout line
    (``helpers.generate.backends.grpo_backend``); see :func:`merged_weight_rollouts` for the evidence."""
    if not merged_weight_rollouts(model):
        return "the LoRA as a request"
    if os.environ.get(MERGED_ROLLOUT_ENV, "").strip().lower() in ("attention", "attn"):
        return ("the attention layers' adapter folded into its weights for each rollout, the rest as a LoRA "
                "request (Unsloth's merged-weight rollouts)")
    return ("the adapter folded into its weights for each rollout, no LoRA request (Unsloth's merged-weight "
            "rollouts; Unsloth prints it if it falls back to a request)")
