"""The fast sampler's reading of a LoRA model (``helpers.generate.fast_sampler``): what it supports and the weights
it computes with.

``describe(model)`` finds the ``*ForCausalLM`` under the PEFT wrappers, checks that it is a Llama / Qwen2
decoder the sampler implements (SiLU, no sliding window, ``default`` rotary embeddings, plain 16/32-bit
``Linear`` projections, LoRA without DoRA / biases / merging) and returns its layers and tensors; anything
else raises ``Unsupported``. ``sampling_request`` checks a ``generate`` call the same way (plain sampling or
greedy, no top-k / top-p / penalties / beams). ``_Proj`` is one projection with its LoRA adapters (``x W^T + b + Σ s · (x A^T)
B^T``), ``_Fused`` stacks the LoRA A matrices of projections that read the same input, ``_Layer`` holds one
decoder layer's projections and norms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")


class Unsupported(Exception):
    """The model or the request is outside what the sampler implements: fall back to ``generate``."""


def _inner_model(model):
    """The ``*ForCausalLM`` under PEFT wrappers: the first module whose own children are ``lm_head`` and a
    ``model`` holding ``layers`` (PEFT forwards attribute lookups, so plain ``hasattr`` would mislead)."""
    for node in model.modules():
        children = node._modules
        if "lm_head" in children and "layers" in getattr(children.get("model"), "_modules", {}):
            return node
    raise Unsupported(f"no decoder layers found in {type(model).__name__}")


class _Proj:
    """One linear projection with its active LoRA adapters: ``x W^T + b + Σ s · (x A^T) B^T``."""

    def __init__(self, module, dtype):
        base = getattr(module, "base_layer", module)
        if not isinstance(base, torch.nn.Linear) or type(base.weight) is not torch.nn.Parameter:
            raise Unsupported(f"projection {type(base).__name__} is not a plain 16/32-bit Linear")
        if base.weight.dtype != dtype:
            raise Unsupported(f"weight dtype {base.weight.dtype} differs from the model's {dtype}")
        self.W, self.b = base.weight, base.bias
        self.lora = []
        if hasattr(module, "lora_A") and not getattr(module, "disable_adapters", False):
            if getattr(module, "merged", False):
                raise Unsupported("merged LoRA adapters")
            for name in module.active_adapters:
                if name not in module.lora_A:
                    continue
                if getattr(module, "use_dora", {}).get(name, False):
                    raise Unsupported("DoRA adapters")
                if getattr(module, "lora_bias", {}).get(name, False):
                    raise Unsupported("LoRA biases")
                A, B = module.lora_A[name].weight, module.lora_B[name].weight
                scale = float(module.scaling[name])
                if A.dtype == dtype:
                    self.lora.append((A, B, scale, None))
                else:  # cast into fixed buffers (refresh() before each rollout)
                    self.lora.append((A, B, scale, (A.detach().to(dtype), B.detach().to(dtype))))

    def refresh(self):
        for A, B, _, cast in self.lora:
            if cast is not None:
                cast[0].copy_(A.detach())
                cast[1].copy_(B.detach())

    def __call__(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y = F.linear(x2, self.W, self.b)
        for A, B, scale, cast in self.lora:
            if cast is not None:
                A, B = cast
            y.addmm_(F.linear(x2, A), B.t(), alpha=scale)
        return y.view(*shape[:-1], y.shape[-1])


class _Fused:
    """Projections that read the same input (q/k/v; gate/up): their LoRA A matrices stacked, so one matrix product
    gives every ``x A^T`` (one launch instead of three or two); the base products and the B updates stay apart."""

    def __init__(self, projs, dtype):
        self.projs = projs
        self.buf = None
        shapes = {tuple(p.lora[0][0].shape) for p in projs if len(p.lora) == 1}
        if all(len(p.lora) == 1 for p in projs) and len(shapes) == 1:
            r, n_in = shapes.pop()
            self.r = r
            self.buf = torch.empty((r * len(projs), n_in), dtype=dtype, device=projs[0].W.device)

    def refresh(self):
        if self.buf is not None:
            for i, p in enumerate(self.projs):
                self.buf[i * self.r:(i + 1) * self.r].copy_(p.lora[0][0].detach())

    def __call__(self, x2):
        if self.buf is None:
            return [p(x2) for p in self.projs]
        xa = F.linear(x2, self.buf)
        outs = []
        for i, p in enumerate(self.projs):
            y = F.linear(x2, p.W, p.b)
            _, B, scale, cast = p.lora[0]
            y.addmm_(xa[:, i * self.r:(i + 1) * self.r], (cast[1] if cast is not None else B).t(), alpha=scale)
            outs.append(y)
        return outs


class _Layer:
    def __init__(self, layer, dtype):
        attn, mlp = layer.self_attn, layer.mlp
        self.q, self.k, self.v, self.o = (_Proj(getattr(attn, n), dtype) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        self.gate, self.up, self.down = (_Proj(getattr(mlp, n), dtype) for n in ("gate_proj", "up_proj", "down_proj"))
        self.norm1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        self.qkv = _Fused((self.q, self.k, self.v), dtype)
        self.gate_up = _Fused((self.gate, self.up), dtype)

    def projs(self):
        return (self.q, self.k, self.v, self.o, self.gate, self.up, self.down)

    def refresh(self):
        for proj in self.projs():
            proj.refresh()
        self.qkv.refresh()
        self.gate_up.refresh()


def sampling_request(generation_config, kwargs):
    """What a ``generate(..., generation_config=..., **kwargs)`` call asks the sampler for: (max_new_tokens,
    temperature or 0 for greedy, eos ids, pad id); ``Unsupported`` for anything it does not implement."""
    extra = {k for k, v in kwargs.items() if v is not None and k not in ("disable_compile",)}
    if extra:
        raise Unsupported(f"generate() arguments {sorted(extra)}")
    g = generation_config
    if g is None:
        raise Unsupported("no generation_config")

    def off(name, *neutral):
        value = getattr(g, name, None)
        if value not in (None, *neutral):
            raise Unsupported(f"{name}={value!r}")

    off("num_beams", 1)
    off("top_k", 0)
    off("top_p", 1.0)
    off("min_p")
    off("typical_p", 1.0)
    off("epsilon_cutoff", 0.0)
    off("eta_cutoff", 0.0)
    off("repetition_penalty", 1.0)
    off("no_repeat_ngram_size", 0)
    off("bad_words_ids")
    off("suppress_tokens")
    off("begin_suppress_tokens")
    off("forced_bos_token_id")
    off("forced_eos_token_id")
    off("min_new_tokens", 0)
    off("min_length", 0)
    off("sequence_bias")
    off("penalty_alpha")
    off("guidance_scale", 1.0)
    off("num_return_sequences", 1)
    off("output_scores", False)
    off("output_logits", False)
    off("return_dict_in_generate", False)
    off("assistant_model")
    off("prompt_lookup_num_tokens")
    if g.max_new_tokens is None:
        raise Unsupported("max_new_tokens is not set")
    temperature = float(g.temperature if g.temperature is not None else 1.0) if g.do_sample else 0.0
    eos = g.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    pad = g.pad_token_id if g.pad_token_id is not None else (eos[0] if eos else 0)
    return int(g.max_new_tokens), temperature, eos, int(pad)


def describe(model):
    """What the sampler computes with, read from ``model`` (raises ``Unsupported`` where it does not apply):
    the layers as ``_Layer``s, embedding, head, final norm, head counts, rotary ``inv_freq``, dtype, device."""
    lm = _inner_model(model)
    config = lm.config
    mtype = getattr(config, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise Unsupported(f"model type {mtype!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise Unsupported(f"activation {config.hidden_act!r}")
    if getattr(config, "use_sliding_window", False):
        raise Unsupported("sliding-window attention")
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise Unsupported(f"rope type {rope.get('rope_type', rope.get('type'))!r}")
    theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    embed = lm.model.embed_tokens
    if type(embed) is not torch.nn.Embedding:
        raise Unsupported(f"embedding {type(embed).__name__}")
    head = lm.lm_head
    head = getattr(head, "base_layer", head)
    if not isinstance(head, torch.nn.Linear) or getattr(lm.lm_head, "lora_A", None):
        raise Unsupported("an adapted or unusual output head")
    dtype = embed.weight.dtype
    layers = [_Layer(layer, dtype) for layer in lm.model.layers]
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = layers[0].q.W.shape[0] // n_heads
    if layers[0].k.W.shape[0] != n_kv * head_dim:
        raise Unsupported("unexpected key projection shape")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=embed.weight.device) / head_dim))
    return dict(lm=lm, config=config, dtype=dtype, layers=layers, embed=embed.weight, head=head,
                norm=lm.model.norm.weight, norm_eps=lm.model.norm.variance_epsilon, n_heads=n_heads,
                n_kv=n_kv, head_dim=head_dim, inv_freq=inv_freq, device=embed.weight.device)
