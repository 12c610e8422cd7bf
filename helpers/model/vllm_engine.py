"""How the suite starts Unsloth's vLLM engine (``helpers.model.load.load_model(fast_inference=True)``): the
environment it runs with, how long it may take to come up, how much GPU memory it takes, a start that
Unsloth had to retry (:class:`EngineStartWatch`), and what the engine does with the LoRA adapter in GRPO's
rollouts (:func:`adapter_in_rollouts`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

from helpers.model.checks import ModelLoadError
from helpers.runtime.notices import notice
from helpers.runtime.threads import time_limit
from helpers.runtime.upstream_noise import quiet_upstream

# The vLLM engine as the suite runs it (measured on an H200 with vLLM 0.26.0, 2026-11-29): in this
# process (with the engine in its own process the start hung for 7 minutes after "Using V2 Model
# Runner"; Unsloth sets this too, to reach the engine's model), offline, no usage reports, and
# FlashInfer's sampler off (its JIT needs the CUDA compiler, which a runtime-only install lacks). And Unsloth's
# standby mode (vLLM sleeps while training runs, so both share the GPU's memory; Unsloth's own GRPO notebooks turn it
# on): unsloth_zoo reads it when ``import unsloth`` runs (with it, no ``expandable_segments``, which vLLM's sleep
# allocator refuses), so it must be set before that import (``helpers.model.load.load_model`` does). Standby sizes
# vLLM to ~87% of the GPU whatever ``gpu_memory_utilization`` says: runs sharing a GPU set it to 0.
# VLLM_HOST_IP: the single-GPU engine's torch.distributed store on the loopback address. vLLM 0.26's
# UniProcExecutor connects it to ``tcp://{get_ip()}:{port}`` (v1/executor/uniproc_executor.py l. 73), and
# get_ip() (utils/network_utils.py l. 33) is the machine's outward address unless VLLM_HOST_IP says otherwise;
# torch's c10d names the peer of each store socket with getnameinfo(), and where that address has no reverse
# DNS (the offline GPU machine: err=-3) it prints "[c10d] The hostname of the client socket cannot be retrieved"
# on the console at every engine start (issue 31); 127.0.0.1 resolves locally (/etc/hosts). Several GPUs use
# TRL's external launcher, whose vLLM connects through the launcher's variables (env://) instead.
VLLM_ENV = {
    "UNSLOTH_VLLM_STANDBY": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_HOST_IP": "127.0.0.1",
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
    """Set :data:`VLLM_ENV` where the environment does not already say otherwise, and install the filters of
    ``helpers.runtime.upstream_noise.quiet_upstream`` (before an engine starts, and for Unsloth's before
    ``import unsloth``: ``load_model``; or TRL's own in colocate mode)."""
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    quiet_upstream()


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
# A start that Unsloth retried (issue 31)

# unsloth_zoo 2026.10.9 ``vllm_utils.load_vllm`` (l. 5295-5420 of the wheel) starts the engine up to twice: a
# start whose error mentions memory is retried with 3/4 of the sequences, the batched tokens capped to them
# (``_shrink_for_memory_retry``, l. 3712) and ``gpu_memory_utilization`` x 0.85, after it prints
# "Unsloth: Retrying vLLM to process {seqs} sequences and {tokens} tokens in tandem.\nError:\n{error}"; a
# memory-profiling race (another process freed GPU memory while vLLM measured it) is retried unchanged, up to
# 3 tries ("... Retrying the load unchanged (k of 3).\nError:\n{error}"). It only prints, inside the notebook.
# vLLM 0.26.0 logs the sizes of each try: "non-default args: {...}" (entrypoints/serve/utils/api_utils.py
# l. 273), "Available KV cache memory: %s GiB" (v1/worker/gpu_worker.py l. 561), the error "No available memory
# for the cache blocks. ..." (v1/core/kv_cache_utils.py l. 759) and, once started, "GPU KV cache size: %s tokens"
# (l. 2177). Seen on an H100 shared by two runs (2026-12-06): "-0.35 GiB", then a silent retry (243 s, not 150).
_RETRY = re.compile(r"Unsloth: Retrying vLLM to process (\d+) sequences and (\d+) tokens in tandem")
_RACE = re.compile(r"Retrying the load unchanged \((\d+) of (\d+)\)")
_KV_MEMORY = re.compile(r"Available KV cache memory: (-?[\d.]+) GiB")
_KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
_SIZES = {name: re.compile(rf"'{name}': ([\d.]+)")
          for name in ("gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens")}


class _Tee:
    """``sys.stdout`` during an engine start: writes go through at once, whole lines also to ``watch.feed``."""

    def __init__(self, stream, watch: EngineStartWatch):
        self._stream, self._watch, self._partial, self.active = stream, watch, "", True

    def write(self, text: str) -> int:
        if self.active:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self._watch.feed(line)
        return self._stream.write(text)

    def __getattr__(self, name):  # flush, isatty, fileno, encoding ... of the real stream
        return getattr(self._stream, name)


class _Records(logging.Handler):
    def __init__(self, watch: EngineStartWatch):
        super().__init__()
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._watch.feed(record.getMessage())
        except Exception:  # a record that cannot be formatted is not ours to report
            pass


class EngineStartWatch:
    """Around Unsloth's ``from_pretrained(fast_inference=True)``: read what Unsloth prints and vLLM logs while
    the engine starts, and if Unsloth had to start it again, say so in one line (:func:`notice`: the
    notebook's output, and the console and ``run.log`` of ``grpo-notebooks run``): what failed, the sizes it
    runs with, and the fix. Nothing is said when the first start worked, or when the load fails anyway (its
    error says why)."""

    def __init__(self) -> None:
        self.shrunk = self.raced = 0
        self.causes: list[str] = []
        self.kv_memory_gib: list[float] = []
        self.kv_tokens: str | None = None
        self.sizes: dict[str, float] = {}
        self._error_next = False

    def feed(self, text: str) -> None:
        """Read one line (or a multi-line message) of the start's output."""
        for line in str(text).splitlines():
            if self._error_next and line.strip():
                self.causes.append(line.strip().split(". ")[0][:160])
                self._error_next = False
            elif line.strip() == "Error:" and (self.shrunk or self.raced) and len(self.causes) < self.shrunk + self.raced:
                self._error_next = True
            if _RETRY.search(line):
                self.shrunk += 1
            elif _RACE.search(line):
                self.raced += 1
            if found := _KV_MEMORY.search(line):
                self.kv_memory_gib.append(float(found.group(1)))
            if found := _KV_TOKENS.search(line):
                self.kv_tokens = found.group(1)
            if "non-default args:" in line:
                self.sizes = {k: float(m.group(1)) for k, rx in _SIZES.items() if (m := rx.search(line))}

    def line(self) -> str | None:
        """The one line to report, or None when the first start worked."""
        tries = self.shrunk + self.raced
        if not tries:
            return None
        why = "; ".join(dict.fromkeys(self.causes)) or "see the notebook's output"
        if self.shrunk and self.kv_memory_gib and min(self.kv_memory_gib) <= 0:
            why += f"; KV cache memory {min(self.kv_memory_gib):g} GiB"
        first = "the first start" if tries == 1 else f"the first {tries} starts"
        if not self.shrunk:
            return (f"vLLM engine: {first} failed ({why}) and Unsloth started it again unchanged; fix: a GPU that no "
                    f"other run shares (another process freed GPU memory while vLLM measured it).")
        share = self.sizes.get("gpu_memory_utilization")
        runs = ", ".join(part for part in (
            f"gpu_memory_utilization {share:.3g}" if share is not None else "",
            f"{self.sizes['max_num_seqs']:.0f} sequences" if "max_num_seqs" in self.sizes else "",
            f"{self.sizes['max_num_batched_tokens']:,.0f} batched tokens" if "max_num_batched_tokens" in self.sizes else "",
            f"a KV cache of {self.kv_tokens} tokens" if self.kv_tokens else "") if part)
        return (f"vLLM engine: {first} failed ({why}) and Unsloth started it again with smaller sizes"
                + (f": {runs}" if runs else "") + f" (a slower load); fix: {self._fix(share)}.")

    def _fix(self, share: float | None) -> str:
        """The fix for what failed (vLLM 0.26: v1/worker/utils.py ``request_memory``, v1/worker/gpu_worker.py
        ``determine_available_memory``, which counts what other processes allocate while it measures)."""
        now = f" (it runs with {share:.3g})" if share is not None else ""
        causes = " ".join(self.causes)
        if "less than desired GPU memory utilization" in causes:
            return f"a smaller {GPU_MEMORY_ENV}{now}, or a GPU that no other run shares"
        if "No available memory for the cache blocks" in causes:
            return (f"a GPU that no other run shares (vLLM counts what other processes allocate while it measures), "
                    f"or a larger {GPU_MEMORY_ENV}{now}")
        return f"a GPU that no other run shares, or a smaller {GPU_MEMORY_ENV}{now} or max_seq_length"

    def __enter__(self) -> EngineStartWatch:
        self._stdout = sys.stdout
        self._tee = sys.stdout = _Tee(sys.stdout, self)
        self._handler = _Records(self)
        logging.getLogger("vllm").addHandler(self._handler)  # vLLM's records stay in its own logger
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        logging.getLogger("vllm").removeHandler(self._handler)
        self._tee.active = False  # a handler configured meanwhile may hold it: it only passes text on now
        if sys.stdout is self._tee:
            sys.stdout = self._stdout
        if exc_type is None and (line := self.line()):
            notice(line)


def watch_engine_start(active: bool = True):
    """:class:`EngineStartWatch` around an engine start (``active``), else a context that does nothing."""
    return EngineStartWatch() if active else contextlib.nullcontext()

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
