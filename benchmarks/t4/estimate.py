"""The arithmetic of benchmarks/t4: from a GRPO step measured on a large GPU to a predicted T4 step (no GPU needed).

A step splits into its rollout (decoding: each new token reads every weight and the KV cache once, so it is bound by
memory bandwidth) and its training part (forward, recomputed forward and backward over the group's tokens: bound by
fp16 matrix throughput). Each part is scaled by its own ratio of the two cards:

    T4 step = rollout_H * BW_H / BW_T4  +  train_H * F_H / F_T4                                 (simple)

with BW_H, F_H the large card's bandwidth (device-to-device copy) and fp16 matmul throughput measured in the same
run, and BW_T4, F_T4 what a T4 reaches: its published peak (``T4``) times the share of it a T4 reaches in practice
(``EFFICIENCY``: low / central / high). On the large card a part of each is not bandwidth or matrix work (kernel
launches, small kernels, Python): scaling that part too overstates the T4's time. So a second estimate scales only
the bound part, the bytes the rollout must read and the FLOPs the training must do, and keeps the rest as measured
(which understates the T4's time: its launches and small kernels are no faster):

    T4 step = bytes / BW_T4 + (rollout_H - bytes / BW_H)  +  flops / F_T4 + (train_H - flops / F_H)   (two-part)

The predicted range runs from the two-part estimate at the high efficiencies to the simple one at the low ones; the
floor is the bytes and FLOPs at the T4's published peaks. Peak memory is measured (under a 15 GiB cap), never scaled.
"""

from __future__ import annotations

import math

# NVIDIA T4 Tensor Core GPU datasheet (nvidia.com, "T4 Tensor Core GPU for AI Inference"): 16 GB GDDR6 at
# 320 GB/s (256-bit, 10 Gbps), 65 TFLOPS mixed-precision FP16/FP32 on its tensor cores (at the 1,590 MHz boost
# clock), 70 W. Colab shows 15 GiB of it.
T4 = {"name": "Tesla T4", "bandwidth_gbs": 320.0, "fp16_tflops": 65.0, "memory_gib": 15.0,
      "source": "NVIDIA T4 datasheet: 320 GB/s GDDR6, 65 TFLOPS FP16 (tensor cores, boost clock), 70 W"}

# The share of those peaks a T4 reaches (assumptions, replace with a T4's own numbers: measure.py prints them when
# run on a T4). fp16: a cuBLAS 4096^3 fp16 matmul held at ~24 TFLOPS (0.37 of 65) on a T4 under its 70 W power cap
# (NVIDIA developer forum, "About GPU peak performance", 2023); short bursts run faster. Bandwidth: a GDDR6 board's
# device-to-device copy typically reaches 65-85% of its peak (no T4 measurement at hand: the widest uncertainty).
EFFICIENCY = {"bandwidth": (0.65, 0.75, 0.85), "fp16": (0.30, 0.37, 0.60)}  # (low, central, high)

# Published peaks of the large cards, only to report how close the measured figures come (the formula uses the
# measured ones): NVIDIA H100 and H200 datasheets, dense FP16 tensor throughput (without sparsity).
PUBLISHED = {
    "H100 SXM": {"bandwidth_gbs": 3350.0, "fp16_tflops": 989.4},
    "H100 PCIe": {"bandwidth_gbs": 2000.0, "fp16_tflops": 756.0},
    "H100 NVL": {"bandwidth_gbs": 3900.0, "fp16_tflops": 835.0},
    "H200": {"bandwidth_gbs": 4800.0, "fp16_tflops": 989.4},
}


def published_for(device_name: str) -> dict | None:
    """The published peaks of a card by its CUDA name ("NVIDIA H100 80GB HBM3" is the SXM one), or None.

    >>> published_for("NVIDIA H100 80GB HBM3")["bandwidth_gbs"], published_for("NVIDIA H200")["bandwidth_gbs"]
    (3350.0, 4800.0)
    >>> published_for("NVIDIA A100-SXM4-80GB") is None
    True
    """
    name = device_name.upper()
    if "H200" in name:
        return PUBLISHED["H200"]
    if "H100" in name:
        return PUBLISHED["H100 PCIe" if "PCIE" in name else "H100 NVL" if "NVL" in name else "H100 SXM"]
    return None


def kv_positions_read(prompt: int, new_tokens: int, bucket: int = 256) -> int:
    """KV-cache positions the suite's sampler reads over one rollout: each decode step attends over the cache up to
    its width bucket (``helpers.generate.fast_sampler``: the prompt plus the tokens so far, rounded up to ``bucket``).

    >>> kv_positions_read(80, 3, bucket=256)  # two decode steps, each over 256 columns
    512
    """
    capacity = -(-(prompt + new_tokens) // bucket) * bucket
    return sum(min(-(-(prompt + done) // bucket) * bucket, capacity) for done in range(1, new_tokens))


def rollout_bytes(weight_bytes: int, kv_bytes_per_position: int, rows: int, prompt: int, new_tokens: int,
                  bucket: int = 256) -> float:
    """Bytes one rollout must read from GPU memory at least: the weights once per decode step (``new_tokens`` - 1
    steps after the prefill) plus each row's KV cache up to the step's width."""
    steps = new_tokens - 1
    return steps * weight_bytes + rows * kv_bytes_per_position * kv_positions_read(prompt, new_tokens, bucket)


def training_flops(linear_params: int, head_params: int, rows: int, prompt: int, completion: int) -> float:
    """FLOPs of one GRPO training pass over ``rows`` sequences with LoRA and gradient checkpointing: the forward,
    its recomputation and the backward to the activations (the base weights are frozen: no weight gradients), each
    2 FLOPs per weight per token over prompt + completion for the decoder's linear layers, and over the completion
    tokens only for the output head (TRL keeps those logits). Attention scores and the LoRA matrices are left out
    (under 5% here).

    >>> training_flops(1_000, 10, rows=2, prompt=3, completion=5)
    96600.0
    """
    return 3.0 * 2.0 * rows * (linear_params * (prompt + completion) + head_params * completion)


def predict(rollout_s: float, train_s: float, card_bandwidth_gbs: float, card_fp16_tflops: float,
            rollout_bytes_read: float, train_flops: float, t4: dict = T4, efficiency: dict = EFFICIENCY) -> dict:
    """The predicted T4 step (seconds): ``simple`` and ``two_part`` at the low / central / high T4 efficiencies,
    ``range`` (two-part at high efficiency .. simple at low), ``floor`` (the bytes and FLOPs at the T4's published
    peaks), ``bandwidth_share`` / ``compute_share``: how much of the large card's rollout / training time its
    measured bandwidth / throughput accounts for; ``ratios`` per efficiency level.

    >>> p = predict(2.0, 1.0, 3000.0, 650.0, rollout_bytes_read=3000e9, train_flops=325e12)
    >>> p["bandwidth_share"], p["compute_share"], round(p["simple"]["central"], 1), round(p["two_part"]["central"], 1)
    (0.5, 0.5, 52.0, 27.5)
    """
    values = dict(rollout_s=rollout_s, train_s=train_s, card_bandwidth_gbs=card_bandwidth_gbs,
                  card_fp16_tflops=card_fp16_tflops, rollout_bytes_read=rollout_bytes_read, train_flops=train_flops)
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    if card_bandwidth_gbs <= 0 or card_fp16_tflops <= 0:
        raise ValueError("the measured bandwidth and fp16 throughput must be > 0")
    bound_rollout = rollout_bytes_read / (card_bandwidth_gbs * 1e9)
    bound_train = train_flops / (card_fp16_tflops * 1e12)
    rest_rollout, rest_train = max(rollout_s - bound_rollout, 0.0), max(train_s - bound_train, 0.0)
    out = {"simple": {}, "two_part": {}, "ratios": {}}
    for i, level in enumerate(("low", "central", "high")):
        bw_t4 = t4["bandwidth_gbs"] * efficiency["bandwidth"][i]
        f_t4 = t4["fp16_tflops"] * efficiency["fp16"][i]
        r_bw, r_f = card_bandwidth_gbs / bw_t4, card_fp16_tflops / f_t4
        out["ratios"][level] = {"bandwidth": r_bw, "fp16": r_f}
        out["simple"][level] = rollout_s * r_bw + train_s * r_f
        out["two_part"][level] = (rollout_bytes_read / (bw_t4 * 1e9) + rest_rollout
                                  + train_flops / (f_t4 * 1e12) + rest_train)
    out["range"] = (out["two_part"]["high"], out["simple"]["low"])
    out["floor"] = rollout_bytes_read / (t4["bandwidth_gbs"] * 1e9) + train_flops / (t4["fp16_tflops"] * 1e12)
    out["bandwidth_share"] = min(bound_rollout / rollout_s, 1.0) if rollout_s > 0 else 0.0
    out["compute_share"] = min(bound_train / train_s, 1.0) if train_s > 0 else 0.0
    return out
