"""A CUDA-graphed sampler for GRPO rollouts without vLLM: the whole one-token decode step in one graph.

Why: with Hugging Face generation a GRPO step is almost all rollout. Unsloth's decode already replays CUDA
graphs, but as one graph segment per layer with the attention core and transformers' sampling loop run
eagerly between them (bit for bit the eager step), so each token still costs many host round trips: on an
H100, SmolLM2-1.7B with 16 × 1024 tokens decodes at ~7.7 ms per token, where reading the weights and the KV
cache once takes ~2 ms (benchmarks/README.md).

What: ``FastSampler`` decodes a LoRA model (PEFT ``lora.Linear`` layers, as ``helpers.model.lora.add_lora`` makes
them, on Unsloth's or transformers' Llama / Qwen2 model) with its own code: the same math as transformers'
Llama / Qwen2 forward (RMSNorm in float32, rotary embeddings of the ``default`` type, grouped-query
attention, SiLU MLP, each projection ``x W^T (+ b) + s · (x A^T) B^T``) on a preallocated KV cache
``[batch, kv_heads, capacity, head_dim]``. The prompt is prefilled eagerly; every decode step (embedding,
all layers, the head, sampling, the end-of-sequence bookkeeping) is one CUDA graph replay that reads its
position and cache column from device tensors, so the host only launches graphs. Attention reads the cache
up to a width bucket (a multiple of ``bucket`` columns), one graph per bucket, masked to the real columns.
Sampling is exact categorical sampling at the given temperature (Gumbel-max, ``argmax(logits / T + G)``, the
same distribution as softmax + multinomial), and rows that emitted an end-of-sequence token continue with
the pad token, as transformers does. The graphs capture parameter addresses, and the optimizer updates the
LoRA weights in place, so the graphs stay valid across optimizer steps; LoRA weights in another dtype than
the base weights are cast into fixed buffers before each rollout.

Where it does not apply (another architecture, DoRA, quantized weights, a sliding window, rope scaling,
top-k / top-p / min-p / repetition penalty, beams, or no CUDA for graphs) ``generate`` falls back to the
model's own ``generate`` and says why once (``FastSampler.fallbacks``). Where it fails (a kernel that does not
compile or launch on this GPU, a graph that cannot be captured, out of memory), the installed ``generate`` says
so in one line on stderr, frees the sampler's cache and generates with the model's own ``generate`` from then on
(``FastSampler.failed``); ``probe()`` makes such a failure show before training starts.

``helpers.generate.sampler_install.install(model)`` puts the sampler in front of ``model.generate`` (the PEFT model TRL's ``GRPOTrainer``
generates with); ``uninstall(model)`` removes it. The KV cache and the graphs are released after each rollout
unless ``keep=True`` (faster: no re-capture, but the cache's memory stays allocated during training).

The model is read (and checked) by ``helpers.generate.fast_model``; the norms, rotary embeddings and the Triton decode
step are ``helpers.generate.fast_kernels``'. Here: the sampler (prefill, decode step, sampling, graphs).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

from helpers.generate.fast_kernels import _rms, _rope, decode_triton, triton
from helpers.generate.fast_model import Unsupported, describe, sampling_request


class FastSampler:
    """Samples completions for a batch of left-padded prompts; see the module docstring."""

    def __init__(self, model, *, bucket: int = 256, keep: bool = False, use_graphs: bool | None = None,
                 kernels: str | None = None):
        self.model = model
        self.kernels = kernels  # "triton" | "torch" | None (triton on CUDA when available)
        self.bucket = bucket
        self.keep = keep
        self.use_graphs = use_graphs
        self.fallbacks: list[str] = []
        self.failed: str | None = None  # why the sampler gave up for good (set by fail())
        self.stats = {"rollouts": 0, "captures": 0, "replays": 0, "eager_steps": 0}
        self._spec = None
        self._state = None

    # -- model description (built once; raises Unsupported) ------------------------------------------------
    def _build(self):
        if self._spec is not None:
            return self._spec
        try:
            self._spec = describe(self.model)
        except (AttributeError, TypeError, KeyError) as exc:
            raise Unsupported(f"unexpected model layout ({type(exc).__name__}: {exc})") from None
        return self._spec

    # -- the step --------------------------------------------------------------------------------------------
    def _rope(self, positions):
        """cos and signed sin [b, 1, t, d] for ``_rope`` (as transformers' default rotary embedding computes them)."""
        spec = self._spec
        freqs = positions.float()[..., None] * spec["inv_freq"]  # [b, t, d/2]
        cos = torch.cat((freqs, freqs), dim=-1).cos().to(spec["dtype"])[:, None]
        sin = freqs.sin()
        sin_signed = torch.cat((-sin, sin), dim=-1).to(spec["dtype"])[:, None]
        return cos, sin_signed

    def _forward(self, ids, positions, col0, width, attn_mask):
        """Hidden state of the last position after all layers. ids/positions [b, t]; K/V written at columns col0
        onward (a device tensor [1] in a decode step, an int in the prefill, even of one token); attention over
        cache[:, :, :width] with attn_mask [b, 1, t, width] (True = attend)."""
        spec, st = self._spec, self._state
        b, t = ids.shape
        H, KV, d = spec["n_heads"], spec["n_kv"], spec["head_dim"]
        groups = H // KV
        x = F.embedding(ids, spec["embed"])
        cos, sin = self._rope(positions)
        scale = 1.0 / math.sqrt(d)
        keep = attn_mask[:, :, None]  # [b, 1, 1, t | 1, width]
        for i, layer in enumerate(spec["layers"]):
            h = _rms(x, layer.norm1, layer.eps1)
            q = layer.q(h).view(b, t, H, d).transpose(1, 2)
            k = layer.k(h).view(b, t, KV, d).transpose(1, 2)
            v = layer.v(h).view(b, t, KV, d).transpose(1, 2)
            q = _rope(q, cos, sin)
            k = _rope(k, cos, sin)
            K, V = st["K"][i], st["V"][i]
            if isinstance(col0, torch.Tensor):  # a decode step: the column is a device tensor (graph-safe)
                K.index_copy_(2, col0, k)
                V.index_copy_(2, col0, v)
            else:
                K[:, :, col0:col0 + t] = k
                V[:, :, col0:col0 + t] = v
            Kw, Vw = K[:, :, :width], V[:, :, :width]
            # grouped-query attention without copying K / V: [b, KV, groups * t, d] queries per KV head
            # (head h uses KV head h // groups, as transformers' repeat_kv)
            qg = q.reshape(b, KV, groups * t, d)
            scores = torch.matmul(qg, Kw.transpose(-1, -2)).view(b, KV, groups, t, width)
            scores = scores.float().mul_(scale).masked_fill_(~keep, float("-inf"))
            probs = torch.softmax(scores, dim=-1).to(v.dtype).view(b, KV, groups * t, width)
            a = torch.matmul(probs, Vw).view(b, H, t, d).transpose(1, 2).reshape(b, t, H * d)
            x = x + layer.o(a)
            h = _rms(x, layer.norm2, layer.eps2)
            x = x + layer.down(F.silu(layer.gate(h)) * layer.up(h))
        return _rms(x[:, -1], spec["norm"], spec["norm_eps"])

    def _sample(self, hidden):
        st = self._state
        logits = F.linear(hidden, self._spec["head"].weight, self._spec["head"].bias).float()
        if st["temperature"] > 0:
            u = torch.rand_like(logits).clamp_(min=1e-20, max=1.0 - 1e-7)
            nxt = torch.argmax(logits / st["temperature"] - torch.log(-torch.log(u)), dim=-1)
        else:
            nxt = torch.argmax(logits, dim=-1)
        nxt = torch.where(st["finished"], st["pad"], nxt)
        if st["eos"].numel():
            st["finished"] |= torch.isin(nxt, st["eos"])
        return nxt

    def _decode_step(self, width):
        """One token for every row, all on the device: reads seq[:, col], writes seq[:, col + 1]."""
        st = self._state
        col = st["col"]
        ids = st["seq"].index_select(1, col)  # [b, 1]
        st["valid"].index_fill_(1, col, True)
        if self._use_triton():
            hidden = decode_triton(self._spec, st, ids, col, width)
        else:
            mask = st["valid"][:, None, None, :width]  # [b, 1, 1, width]
            hidden = self._forward(ids, st["pos"][:, None], col, width, mask)
        nxt = self._sample(hidden)
        st["seq"].index_copy_(1, col + 1, nxt[:, None])
        st["col"] += 1
        st["pos"] += 1

    def _use_triton(self):
        spec = self._spec
        if self.kernels == "torch" or triton is None:
            return False
        d = spec["head_dim"]
        ok = d & (d - 1) == 0 and spec["n_heads"] % spec["n_kv"] == 0
        if self.kernels == "triton":
            return ok
        return ok and spec["device"].type == "cuda"

    # -- state -----------------------------------------------------------------------------------------------
    def _alloc(self, b, capacity, device):
        spec = self._spec
        st = self._state
        if st is not None and st["b"] == b and st["capacity"] >= capacity:
            return st
        self._release()
        shape = (b, spec["n_kv"], capacity, spec["head_dim"])
        n = len(spec["layers"])
        st = dict(b=b, capacity=capacity, graphs={}, pool=None,
                  K=[torch.zeros(shape, dtype=spec["dtype"], device=device) for _ in range(n)],
                  V=[torch.zeros(shape, dtype=spec["dtype"], device=device) for _ in range(n)],
                  seq=torch.zeros((b, capacity + 1), dtype=torch.long, device=device),
                  valid=torch.zeros((b, capacity + 1), dtype=torch.bool, device=device),
                  pos=torch.zeros((b,), dtype=torch.long, device=device),
                  col=torch.zeros((1,), dtype=torch.long, device=device),
                  finished=torch.zeros((b,), dtype=torch.bool, device=device),
                  pad=torch.zeros((), dtype=torch.long, device=device),
                  eos=torch.zeros((0,), dtype=torch.long, device=device), temperature=1.0, eos_buffers={},
                  key=None)
        self._state = st
        return st

    def _release(self):
        if self._state is not None:
            self._state["graphs"].clear()
            self._state = None

    # -- public ----------------------------------------------------------------------------------------------
    def probe(self) -> None:
        """Generate 3 greedy tokens for one row, as a rollout would (graphs on CUDA): compiles the Triton kernels,
        captures and replays a decode graph on this GPU. Raises what ``generate`` raises (``Unsupported`` too)."""
        from transformers import GenerationConfig

        spec = self._build()
        ids = torch.zeros((1, 1), dtype=torch.long, device=spec["device"])
        self.generate(ids, None, GenerationConfig(max_new_tokens=3, do_sample=False, pad_token_id=0))

    def fail(self, exc: BaseException) -> str:
        """Give the sampler up for this process after ``exc``: free its cache and graphs, print one line on
        stderr, return it. The installed ``generate`` then always calls the model's own."""
        text = str(exc).strip()
        self.failed = f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'no message'}"
        self._release()
        if torch.cuda.is_available():
            try:
                torch.cuda.empty_cache()
            except Exception:  # a broken CUDA context: the model's generate will say so
                pass
        line = (f"fast rollout failed on this GPU ({self.failed}); generating with the model's own generate "
                "from now on")
        print(line, file=sys.stderr, flush=True)
        return line

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, generation_config=None, **kwargs):
        """``[batch, prompt + new]`` token ids, like ``model.generate`` (the prompt part is ``input_ids``)."""
        spec = self._build()
        max_new, temperature, eos, pad = sampling_request(generation_config, kwargs)
        device = spec["device"]
        graphs = torch.cuda.is_available() and device.type == "cuda" if self.use_graphs is None else self.use_graphs
        input_ids = input_ids.to(device)
        b, P = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device).bool()
        if not bool(attention_mask[:, -1].all()):
            raise Unsupported("right-padded prompts (left padding expected)")
        capacity = -(-(P + max_new) // self.bucket) * self.bucket
        with torch.autocast(device.type, enabled=False):
            for layer in spec["layers"]:
                layer.refresh()
            st = self._alloc(b, capacity, device)
            st["temperature"] = temperature
            st["pad"].fill_(pad)
            key = tuple(eos)
            if key not in st["eos_buffers"]:  # graphs read the buffer's address: keep each one alive
                st["eos_buffers"][key] = torch.tensor(eos, dtype=torch.long, device=device)
            st["eos"] = st["eos_buffers"][key]
            st["key"] = (temperature, key)
            st["finished"].zero_()
            st["valid"].zero_()
            st["valid"][:, :P] = attention_mask
            st["seq"][:, :P] = input_ids
            # prefill: positions as transformers counts them (left padding), causal over the prompt
            positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
            causal = torch.ones((P, P), dtype=torch.bool, device=device).tril_()
            mask = (causal[None] & attention_mask[:, None, :]) | torch.eye(P, dtype=torch.bool, device=device)[None]
            hidden = self._forward(input_ids, positions, 0, P, mask[:, None])
            st["seq"][:, P] = self._sample(hidden)
            st["pos"].copy_(positions[:, -1] + 1)
            st["col"].fill_(P)
            done = 1
            while done < max_new:
                width = min(-(-(P + done) // self.bucket) * self.bucket, capacity)
                if graphs:
                    self._graph_step(width)
                else:
                    self._decode_step(width)
                    self.stats["eager_steps"] += 1
                done += 1
                if eos and done % 64 == 0 and bool(st["finished"].all()):
                    break
            out = st["seq"][:, :P + done].clone()
        self.stats["rollouts"] += 1
        if not self.keep:
            self._release()
        return out

    def _graph_step(self, width):
        st = self._state
        g = st["graphs"].get((width, st["key"]))
        if g is not None:
            g.replay()
            self.stats["replays"] += 1
            return
        # the first step at this width runs eagerly (warms kernels and allocator), then is captured
        self._decode_step(width)
        self.stats["eager_steps"] += 1
        if st["pool"] is None:
            st["pool"] = torch.cuda.graph_pool_handle()
        # capturing records without running; the recorded step advances col/pos itself when replayed
        g = torch.cuda.CUDAGraph()
        saved = (st["col"].clone(), st["pos"].clone(), st["finished"].clone())
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            with torch.cuda.graph(g, pool=st["pool"], stream=stream):
                self._decode_step(width)
        torch.cuda.current_stream().wait_stream(stream)
        # in-place ops are not executed during capture, but restore in case a kernel ran anyway
        st["col"].copy_(saved[0])
        st["pos"].copy_(saved[1])
        st["finished"].copy_(saved[2])
        st["graphs"][(width, st["key"])] = g
        self.stats["captures"] += 1
