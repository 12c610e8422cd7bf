"""GPU speed options for GRPO rollouts without vLLM (Unsloth + Hugging Face generation).

Without vLLM, GRPO's time goes into generation: one token at a time for the whole group. Unsloth's fast
path (``FastLanguageModel``) already replaces transformers' decode step with its own, and in an RL trainer's
``generate()`` it replays that step as CUDA graphs (``unsloth/models/_decode_graphs.py``: one graph segment per
layer, the attention core eager between them, bit for bit the eager step). These options tune that path; each
is named, measured in ``benchmarks/README.md``, and kept as a default only where it measured faster without
changing what is computed.

``apply(options)`` must run before ``import unsloth`` (``helpers.model.load.load_model`` imports it), since some
options are environment variables Unsloth reads at import:

- ``prealloc``: ``UNSLOTH_DECODE_GRAPH_PREALLOC=1``: size the graph-mode KV cache for prompt + max new tokens
  once per ``generate()``; otherwise it starts small and doubles, and every growth re-captures the graphs.
- ``qwen2_graphs``: let the CUDA-graph decode run for Qwen2 / Qwen2.5 models too. Unsloth enables it for
  ``llama`` and ``qwen3`` only ("Qwen2 shares the Llama attention but is untested"); Qwen2 runs the same
  ``LlamaAttention_fast_forward_inference`` (with q/k/v biases, which the graph captures like any weight).
- ``no_graphs``: ``UNSLOTH_DECODE_CUDA_GRAPHS=0``: the eager decode step (a reference for measuring).
- ``no_compile``: ``UNSLOTH_COMPILE_DISABLE=1``: no ``torch.compile`` of Unsloth's losses and modules (a
  shorter first step, at the price of slower later ones: measure).
- ``fast_rollout``: ``helpers.generate.fast_sampler``: the whole decode step (all layers, attention, sampling) as one CUDA
  graph per KV-width bucket, in front of the model's ``generate`` (``prepare_model``); the cache and graphs are
  freed after each rollout. ``fast_rollout_keep``: the same, keeping them between rollouts (no re-capture;
  the cache stays allocated during training).
"""

from __future__ import annotations

import os

from helpers.runtime.hardware import detect

ENV_OPTIONS = {
    "prealloc": {"UNSLOTH_DECODE_GRAPH_PREALLOC": "1"},
    "no_graphs": {"UNSLOTH_DECODE_CUDA_GRAPHS": "0"},
    "no_compile": {"UNSLOTH_COMPILE_DISABLE": "1"},
}
PATCH_OPTIONS = ("qwen2_graphs",)
MODEL_OPTIONS = ("fast_rollout", "fast_rollout_keep")
OPTIONS = tuple(ENV_OPTIONS) + PATCH_OPTIONS + MODEL_OPTIONS
# What the suite turns on by default on a CUDA GPU with unsloth and no vLLM (measured: benchmarks/README.md):
# the graphed sampler, and no Unsloth compile (without vLLM the rollout is ~90% of a step, the compiled training
# part ~10%, and compiling made the first step 2-4x longer). With vLLM: nothing (vLLM samples).
HF_GENERATION_DEFAULT = ("fast_rollout", "no_compile")
DEFAULT: tuple[str, ...] = ()
ENV = "GRPO_GPU_SPEED"  # a comma-separated list of options, or "none": overrides defaults()


def defaults(hw=None) -> tuple[str, ...]:
    """The options for this machine: ``$GRPO_GPU_SPEED`` when set ("none": no option), else
    ``HF_GENERATION_DEFAULT`` on a CUDA GPU with unsloth and without vLLM, else none."""
    forced = os.environ.get(ENV, "").strip()
    if forced:
        return () if forced.lower() == "none" else tuple(check_options(o.strip() for o in forced.split(",") if o.strip()))
    if hw is None:
        hw = detect()
    if hw.cuda and hw.unsloth and not hw.vllm:
        return HF_GENERATION_DEFAULT
    return ()


def check_options(options) -> list[str]:
    options = list(options)
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown GPU speed option(s) {unknown}; use some of {', '.join(OPTIONS)}.")
    if "no_graphs" in options and "qwen2_graphs" in options:
        raise ValueError("no_graphs and qwen2_graphs contradict each other; pick one.")
    if "fast_rollout" in options and "fast_rollout_keep" in options:
        raise ValueError("fast_rollout and fast_rollout_keep are two modes of one option; pick one.")
    return options


def environment(options) -> dict[str, str]:
    """The environment variables ``options`` set (for a subprocess, or to show a user)."""
    env: dict[str, str] = {}
    for option in check_options(options):
        env.update(ENV_OPTIONS.get(option, {}))
    return env


def apply(options=DEFAULT) -> dict[str, str]:
    """Turn ``options`` on in this process; return what was done (option -> how). Call before loading a model."""
    done: dict[str, str] = {}
    options = check_options(options)
    for option in options:
        for key, value in ENV_OPTIONS.get(option, {}).items():
            os.environ[key] = value
            done[option] = f"{key}={value}"
    if "qwen2_graphs" in options:
        done["qwen2_graphs"] = enable_graphs_for("qwen2")
    return done


def enable_graphs_for(model_type: str) -> str:
    """Add ``model_type`` to the families Unsloth's CUDA-graph decode accepts (imports unsloth)."""
    try:
        import unsloth  # noqa: F401  (must come first)
        from unsloth.models import _decode_graphs
    except ImportError as exc:  # CPU installs without unsloth: nothing to do
        return f"unavailable ({exc.__class__.__name__})"
    supported = getattr(_decode_graphs, "_SUPPORTED_MODEL_TYPES", None)
    if not isinstance(supported, set):
        return "unavailable (unsloth changed its decode graphs)"
    supported.add(model_type)
    return f"unsloth _decode_graphs now accepts {sorted(supported)}"
