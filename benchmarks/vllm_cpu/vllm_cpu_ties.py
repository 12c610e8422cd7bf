"""Where vLLM's and transformers' greedy completions differ on the benchmark's held-out set, is it a tie?

The 64 problems and 96 tokens of ``benchmarks/vllm_cpu/vllm_cpu.py`` (base model, float32): vLLM's greedy tokens,
checked teacher-forced against transformers as ``tests/test_vllm_cpu.py`` checks them (every token must be
transformers' argmax; where one is not, the gap between transformers' two best logits there), and compared
as texts with transformers' own batched greedy decoding (``generate_completions``, batches of 16).

    VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 .venv-vllm/bin/python benchmarks/vllm_cpu/vllm_cpu_ties.py [--no-lora]

The engine is the benchmark's (LoRA slots of rank 16, the base model requested) unless ``--no-lora``.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

if __name__ == "__main__":  # vLLM starts its engine core in a spawned process
    import test_vllm_cpu as checks
    import torch
    from vllm import LLM

    from helpers.data.chat_template import render_prompt
    from helpers.evaluate.held_out import held_out_sets
    from helpers.generate.completions import generate_completions
    from helpers.generate.vllm_requests import vllm_engine_kwargs
    from helpers.model.embedded import embedded_model_path
    from helpers.model.load import load_model

    torch.set_num_threads(2)
    model, tokenizer = load_model(profile="cpu")
    ds = held_out_sets(64, gsm8k=False, svamp_n=0, profile="cpu")["synthetic"]
    texts = [render_prompt(tokenizer, p) for p in ds["prompt"]]
    lora_slots = "--no-lora" not in sys.argv  # the benchmark's engine serves LoRA requests (rank-16 slots)
    engine = LLM(**vllm_engine_kwargs(embedded_model_path(), lora_rank=16 if lora_slots else None))
    ids, logps = checks._vllm_greedy(engine, tokenizer, texts, max_new_tokens=96)
    report = checks._compare(ids, logps, model, tokenizer, texts, max_new_tokens=96)
    batched = generate_completions(model, tokenizer, texts, max_new_tokens=96, progress=False)
    vllm_texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    print(json.dumps({
        "problems": len(texts), "engine_lora_slots": lora_slots,
        "same_as_transformers_teacher_forced": sum(report["same"]),
        "parted": [{"problem": i, "token": k, "top2_logit_gap": gap}
                   for i, (k, gap) in enumerate(zip(report["parted_at"], report["tie_gap"], strict=True)) if k is not None],
        "max_logprob_diff_before_parting": report["max_logprob_diff"],
        "texts_differing_from_batched_transformers": [i for i, (a, b) in enumerate(zip(vllm_texts, batched.texts, strict=True))
                                                      if a != b[0]],
    }, indent=2))
