"""Issue 15 lever: sampling GRPO's 8 rows x 80 tokens on the CPU with bf16 weights instead of float32 (the
machine has AVX512-BF16). One torch thread, median of 3, the embedded model; see benchmarks/learning_cpu/README.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_cpu/bf16_sampling_probe.py
"""

from __future__ import annotations

import statistics
import time

import torch

from helpers.data.synthetic import synthetic_dataset
from helpers.model.load import load_model


def median_seconds(model, batch, pad_token_id: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)
        start = time.perf_counter()
        model.generate(**batch, max_new_tokens=80, min_new_tokens=80, do_sample=True, temperature=0.7, top_k=0,
                       top_p=1.0, pad_token_id=pad_token_id)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    model, tok = load_model(profile="cpu")
    rows = synthetic_dataset(8, split="test", seed=0)
    prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    fp32 = median_seconds(model, batch, tok.pad_token_id)
    bf16 = median_seconds(model.to(torch.bfloat16), batch, tok.pad_token_id)
    print(f"fp32 {fp32:.2f}s  bf16 {bf16:.2f}s  ratio {fp32 / bf16:.2f}x  (8 rows x 80 tokens, 1 thread)")


if __name__ == "__main__":
    main()
