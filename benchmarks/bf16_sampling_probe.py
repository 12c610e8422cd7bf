"""Issue 15 lever: sampling GRPO's 8 rows x 80 tokens on the CPU with bf16 weights instead of float32 (the
machine has AVX512-BF16). One torch thread, median of 3, the embedded model; see benchmarks/learning.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bf16_sampling_probe.py
"""
import time, torch, statistics
torch.set_num_threads(1)
from helpers.loading import load_model
from helpers.data import synthetic_dataset
model, tok = load_model(profile="cpu")
ds = synthetic_dataset(8, split="test", seed=0)
prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in ds]
tok.padding_side = "left"
batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
def run(m, n=3):
    ts = []
    for i in range(n):
        torch.manual_seed(0)
        t = time.perf_counter()
        out = m.generate(**batch, max_new_tokens=80, min_new_tokens=80, do_sample=True, temperature=0.7, top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out
t32, _ = run(model)
m16 = model.to(torch.bfloat16)
t16, _ = run(m16)
print(f"fp32 {t32:.2f}s  bf16 {t16:.2f}s  ratio {t32/t16:.2f}x  (8 rows x 80 tokens, 1 thread)")
