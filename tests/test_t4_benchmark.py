"""benchmarks/t4 (issue 29, item 3): the arithmetic that turns a GRPO step measured on a large GPU into a predicted
T4 step, checked on a CPU (the measurement itself needs a GPU: benchmarks/t4/README.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

T4_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "t4"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"t4_{name}", T4_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


estimate = _load("estimate")


def test_predict_by_hand():
    """H card: 3,000 GB/s and 650 TFLOPS measured; rollout 2 s of which 1 s is its bytes, training 1 s of which
    0.5 s is its FLOPs. T4 at the central efficiencies: 240 GB/s, 24.05 TFLOPS."""
    p = estimate.predict(2.0, 1.0, 3000.0, 650.0, rollout_bytes_read=3000e9, train_flops=325e12)
    ratio_bw, ratio_f = 3000 / (320 * 0.75), 650 / (65 * 0.37)
    assert p["ratios"]["central"] == pytest.approx({"bandwidth": ratio_bw, "fp16": ratio_f})
    assert p["simple"]["central"] == pytest.approx(2.0 * ratio_bw + 1.0 * ratio_f)
    assert p["two_part"]["central"] == pytest.approx(3000e9 / 240e9 + 1.0 + 325e12 / (65e12 * 0.37) + 0.5)
    assert p["floor"] == pytest.approx(3000e9 / 320e9 + 325e12 / 65e12)
    assert (p["bandwidth_share"], p["compute_share"]) == (0.5, 0.5)


def test_fully_bound_parts_make_both_estimates_agree():
    """Where the large card's rollout is all bandwidth and its training all matmul, scaling the bound part only is
    the same as scaling everything: the two estimates meet."""
    p = estimate.predict(1.5, 0.4, 2000.0, 500.0, rollout_bytes_read=1.5 * 2000e9, train_flops=0.4 * 500e12)
    for level in ("low", "central", "high"):
        assert p["two_part"][level] == pytest.approx(p["simple"][level])


def test_the_range_is_ordered_and_above_the_floor():
    p = estimate.predict(2.4, 0.8, 3100.0, 700.0, rollout_bytes_read=1.6e12, train_flops=5e13)
    for model in ("simple", "two_part"):
        assert p[model]["high"] <= p[model]["central"] <= p[model]["low"]  # higher T4 efficiency: faster
    assert p["floor"] <= p["range"][0] <= p["two_part"]["central"] <= p["simple"]["central"] <= p["range"][1]


@pytest.mark.parametrize("bad", [{"rollout_s": -1.0}, {"card_bandwidth_gbs": 0.0}, {"train_flops": float("nan")}])
def test_bad_measurements_are_refused(bad):
    args = dict(rollout_s=1.0, train_s=1.0, card_bandwidth_gbs=1.0, card_fp16_tflops=1.0, rollout_bytes_read=1.0,
                train_flops=1.0)
    with pytest.raises(ValueError, match="must be"):
        estimate.predict(**{**args, **bad})


def test_bytes_and_flops():
    # 512 new tokens after an 80-token prompt: 511 decode steps over widths 256 (176 steps), 512 (256), 768 (79)
    assert estimate.kv_positions_read(80, 512) == 176 * 256 + 256 * 512 + 79 * 768
    assert estimate.rollout_bytes(1000, 10, rows=2, prompt=80, new_tokens=512) == (
        511 * 1000 + 2 * 10 * estimate.kv_positions_read(80, 512))
    assert estimate.training_flops(100, 7, rows=8, prompt=80, completion=512) == 6 * 8 * (100 * 592 + 7 * 512)


def test_published_figures():
    assert estimate.T4["bandwidth_gbs"] == 320.0 and estimate.T4["fp16_tflops"] == 65.0
    assert estimate.published_for("NVIDIA H100 PCIe")["bandwidth_gbs"] == 2000.0
    assert estimate.published_for("NVIDIA H100 80GB HBM3")["fp16_tflops"] == 989.4
    assert estimate.published_for("Tesla T4") is None


def test_model_sizes_are_read_from_a_peft_model():
    """measure.py's reading of the loaded model: tied embedding counted once, LoRA at 2 bytes, layer matrices."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    measure = _load("measure")
    cfg = Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True, use_sliding_window=False)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float16)
    base = sum(p.numel() for p in model.parameters()) * 2  # parameters() already skips the tied head
    linear = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    sizes = measure._sizes_of(model)
    assert sizes["weight_bytes"] == base + 2 * lora and sizes["linear_params"] == linear
    assert sizes["kv_bytes_per_position"] == 2 * 2 * 2 * 8 * 2 and sizes["head_params"] == 100 * 32


def test_table_reads_a_result():
    measure = _load("measure")
    g = dict(rows_per_step=8, L=512, median_step_s=3.1, median_rollout_s=2.2, median_train_s=0.9, first_step_s=14.0,
             cap_gib=15.0, peak_allocated_gib=9.5, peak_reserved_gib=10.2, outside_torch_gib=0.6)
    res = dict(device="NVIDIA H100 80GB HBM3", bandwidth_gbs=2950.0, fp16_tflops=700.0, is_t4=False, grpo=g,
               prediction=estimate.predict(2.2, 0.9, 2950.0, 700.0, 1.6e12, 5e13))
    text = measure.table(res)
    assert "88% of 3,350 published" in text and "two-part" in text and "10.2 GiB reserved" in text
    assert "measured on a T4" in measure.table({**res, "device": "Tesla T4", "is_t4": True})


def test_measure_says_it_needs_a_gpu_in_one_line():
    proc = subprocess.run([sys.executable, str(T4_DIR / "measure.py"), "--micro-only"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("benchmarks/t4/measure.py needs a")
