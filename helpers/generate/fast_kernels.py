"""The compute kernels of ``helpers.generate.fast_sampler``'s decode step: Triton kernels and their torch counterparts.

Triton (shipped with CUDA builds of torch; ``TRITON_INTERPRET=1`` runs the kernels on a CPU): ``_add_rms_kernel``
(residual add + RMSNorm), ``_rope_cache_kernel`` (rotary embedding of q and k, k / v written to the KV cache),
``_decode_attn_kernel`` (one token's attention over the cache, online softmax) and ``_silu_mul_kernel``
(SiLU(gate) · up); ``decode_triton`` runs one decode step with them, the projections staying cuBLAS matrix
products. ``triton`` is ``None`` where Triton is not installed. Torch: ``_rms`` and ``_rope``, transformers'
RMSNorm and rotary embedding, used by the sampler's torch forward (prefill, and decoding with ``kernels="torch"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

try:  # Triton kernels for the decode step (CUDA builds of torch ship Triton; TRITON_INTERPRET=1 runs them on a CPU)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU installs: the sampler's torch path is used
    triton = None


if triton is not None:

    @triton.jit
    def _add_rms_kernel(X, D, W, OUT, N, eps, HAS_D: tl.constexpr, BLOCK: tl.constexpr):
        """Per row: x += d (stored back, rounded to x's dtype), out = w * rms_norm(x) (float32 inside)."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        m = cols < N
        ty = X.dtype.element_ty
        x = tl.load(X + row * N + cols, mask=m, other=0.0)
        if HAS_D:
            d = tl.load(D + row * N + cols, mask=m, other=0.0)
            x = (x.to(tl.float32) + d.to(tl.float32)).to(ty)
            tl.store(X + row * N + cols, x, mask=m)
        xf = x.to(tl.float32)
        var = tl.sum(xf * xf, axis=0) / N
        h = (xf * (1.0 / tl.sqrt(var + eps))).to(ty)
        w = tl.load(W + cols, mask=m, other=0.0)
        tl.store(OUT + row * N + cols, (w.to(tl.float32) * h.to(tl.float32)).to(ty), mask=m)

    @triton.jit
    def _rope_cache_kernel(Q, K, V, QOUT, KC, VC, POS, COL, INV, H, KV, CAP,
                           D: tl.constexpr, HALF: tl.constexpr):
        """Rotary embedding of one token's q (into QOUT) and k, and k / v written to the cache at column COL.
        Program (row, head): heads < H rotate q, the others rotate k and store k and v."""
        b = tl.program_id(0)
        h = tl.program_id(1)
        ty = QOUT.dtype.element_ty
        i = tl.arange(0, HALF)
        f = tl.load(POS + b).to(tl.float32) * tl.load(INV + i)
        cos = tl.cos(f).to(ty).to(tl.float32)
        sin = tl.sin(f).to(ty).to(tl.float32)
        if h < H:
            src = Q + (b * H + h) * D
            dst = QOUT + (b * H + h) * D
        else:
            kh = h - H
            src = K + (b * KV + kh) * D
            col = tl.load(COL)
            dst = KC + ((b * KV + kh) * CAP + col) * D
            j = tl.arange(0, D)
            v = tl.load(V + (b * KV + kh) * D + j)
            tl.store(VC + ((b * KV + kh) * CAP + col) * D + j, v)
        x1 = tl.load(src + i).to(tl.float32)
        x2 = tl.load(src + HALF + i).to(tl.float32)
        o1 = ((x1 * cos).to(ty).to(tl.float32) - (x2 * sin).to(ty).to(tl.float32)).to(ty)
        o2 = ((x2 * cos).to(ty).to(tl.float32) + (x1 * sin).to(ty).to(tl.float32)).to(ty)
        tl.store(dst + i, o1)
        tl.store(dst + HALF + i, o2)

    @triton.jit
    def _decode_attn_kernel(Q, KC, VC, VALID, OUT, width, scale, H, KV, CAP, VSTRIDE,
                            GROUPS: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr):
        """softmax(q K^T * scale over the valid columns < width) V for one (row, head); online softmax."""
        b = tl.program_id(0)
        h = tl.program_id(1)
        kh = h // GROUPS
        d = tl.arange(0, D)
        q = tl.load(Q + (b * H + h) * D + d).to(tl.float32)
        kbase = KC + (b * KV + kh) * CAP * D
        vbase = VC + (b * KV + kh) * CAP * D
        m_i = tl.max(tl.full([BLOCK_N], -1e30, tl.float32), axis=0)
        l_i = tl.sum(tl.zeros([BLOCK_N], tl.float32), axis=0)
        acc = tl.zeros([D], tl.float32)
        start = 0
        while start < width:  # (a while loop: Triton's CPU interpreter cannot range() over a runtime bound)
            n = start + tl.arange(0, BLOCK_N)
            nm = n < width
            keep = nm & (tl.load(VALID + b * VSTRIDE + n, mask=nm, other=0) != 0)
            k = tl.load(kbase + n[:, None] * D + d[None, :], mask=nm[:, None], other=0.0).to(tl.float32)
            s = tl.sum(k * q[None, :], axis=1) * scale
            s = tl.where(keep, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            v = tl.load(vbase + n[:, None] * D + d[None, :], mask=nm[:, None], other=0.0).to(tl.float32)
            acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
            m_i = m_new
            start += BLOCK_N
        tl.store(OUT + (b * H + h) * D + d, (acc / l_i).to(OUT.dtype.element_ty))

    @triton.jit
    def _silu_mul_kernel(G, U, OUT, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        ty = OUT.dtype.element_ty
        g = tl.load(G + i, mask=m, other=0.0).to(tl.float32)
        u = tl.load(U + i, mask=m, other=0.0).to(tl.float32)
        s = (g / (1.0 + tl.exp(-g))).to(ty).to(tl.float32)
        tl.store(OUT + i, (s * u).to(ty), mask=m)


def _rms(x, weight, eps):
    """transformers' LlamaRMSNorm / Qwen2RMSNorm: normalise in float32, cast back, then scale."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _rope(x, cos, sin_signed):
    """``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = cat(-x2, x1)``: ``roll`` by half a head swaps the
    halves, ``sin_signed = cat(-sin1, sin2)`` puts the minus sign on the first half."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


def decode_triton(spec, st, ids, col, width):
    """The decode step with Triton kernels for the norms (+ residual adds), rotary + cache write, attention and
    SiLU·up; the projections (and LoRA) stay cuBLAS matrix products. Same math as ``FastSampler._forward`` for
    one token. ``spec``: ``helpers.generate.fast_model.describe(model)``; ``st``: the sampler's state (KV cache, positions,
    valid columns); ``col``: the cache column (device tensor [1]). Returns the final-normed hidden state [b, hidden]."""
    b = ids.shape[0]
    H, KV, d = spec["n_heads"], spec["n_kv"], spec["head_dim"]
    hidden = spec["embed"].shape[1]
    x = F.embedding(ids[:, 0], spec["embed"])  # [b, hidden], updated in place by the residual adds
    h = torch.empty_like(x)
    block = triton.next_power_of_2(hidden)
    valid = st["valid"].view(torch.uint8)
    scale = 1.0 / math.sqrt(d)
    pending = None
    for i, layer in enumerate(spec["layers"]):
        _add_rms_kernel[(b,)](x, pending if pending is not None else x, layer.norm1, h, hidden, layer.eps1,
                              HAS_D=pending is not None, BLOCK=block)
        q, k, v = layer.qkv(h)
        qr = torch.empty_like(q)
        K, V = st["K"][i], st["V"][i]
        _rope_cache_kernel[(b, H + KV)](q, k, v, qr, K, V, st["pos"], col, spec["inv_freq"], H, KV,
                                        st["capacity"], D=d, HALF=d // 2)
        a = torch.empty_like(q)
        _decode_attn_kernel[(b, H)](qr, K, V, valid, a, width, scale, H, KV, st["capacity"], valid.stride(0),
                                    GROUPS=H // KV, D=d, BLOCK_N=64)
        o = layer.o(a)
        _add_rms_kernel[(b,)](x, o, layer.norm2, h, hidden, layer.eps2, HAS_D=True, BLOCK=block)
        g, u = layer.gate_up(h)
        m = torch.empty_like(g)
        n = m.numel()
        _silu_mul_kernel[(triton.cdiv(n, 1024),)](g, u, m, n, BLOCK=1024)
        pending = layer.down(m)
    _add_rms_kernel[(b,)](x, pending, spec["norm"], h, hidden, spec["norm_eps"], HAS_D=True, BLOCK=block)
    return h
