"""Putting the suite's sampler (:class:`helpers.generate.fast_sampler.FastSampler`) in front of a model's
``generate`` (:func:`install`) and taking it away (:func:`uninstall`): each call goes to the sampler, to the model's
own ``generate`` when the request is one the sampler does not implement, and for good once the sampler failed."""

from __future__ import annotations

import warnings

from helpers.generate.fast_model import Unsupported
from helpers.generate.fast_sampler import FastSampler


def install(model, **options) -> FastSampler:
    """Route ``model.generate`` through a :class:`FastSampler` (falling back to the original per call when
    the request or model is unsupported, and for good once the sampler fails). Returns the sampler;
    ``uninstall(model)`` undoes it."""
    if getattr(model, "_fast_sampler", None) is not None:
        return model._fast_sampler
    sampler = FastSampler(model, **options)
    original = model.generate

    def generate(*args, **kwargs):
        if sampler.failed is not None:
            return original(*args, **kwargs)
        call = dict(kwargs)
        if args:
            call.setdefault("input_ids", args[0])
        try:
            if len(args) > 1:
                raise Unsupported("positional generate() arguments")
            ids = call.pop("input_ids", None)
            if ids is None:
                raise Unsupported("no input_ids")
            return sampler.generate(ids, call.pop("attention_mask", None), call.pop("generation_config", None), **call)
        except Unsupported as why:
            if str(why) not in sampler.fallbacks:
                sampler.fallbacks.append(str(why))
                if call.get("generation_config") is not None or "generation_config" in kwargs:
                    # a trainer's rollout (TRL passes a GenerationConfig): say once why it is not the fast one;
                    # keyword-style calls (evaluation helpers) fall back quietly
                    warnings.warn(f"fast rollout not used ({why}); generating with model.generate", stacklevel=2)
            return original(*args, **kwargs)
        except Exception as exc:  # a compile, launch or capture failure on this GPU never sinks a run
            sampler.fail(exc)
            return original(*args, **kwargs)

    generate._fast_sampler_original = original
    model.generate = generate
    model._fast_sampler = sampler
    return sampler


def uninstall(model) -> None:
    """Give ``model`` its own ``generate`` back and drop the sampler (and its cache and graphs)."""
    gen = model.__dict__.get("generate")
    if gen is not None and hasattr(gen, "_fast_sampler_original"):
        del model.generate
    model.__dict__.pop("_fast_sampler", None)
