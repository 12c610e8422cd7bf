"""Where a GRPO rollout's time goes: the suite's model (helpers.model.load + helpers.model.lora, Unsloth) generating as
GRPOTrainer makes it generate (inside Unsloth's RL generation scope, TRL's sampling settings), timed per token
for several batch sizes and options, and one short rollout under torch.profiler.

    python benchmarks/grpo_speed_gpu/decode_probe.py --shape smollm2-1.7b --tokens 1024 --batches 16 32 --profile-tokens 64 \
        --out probe.json --profile-out probe_profile.txt
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="smollm2-1.7b")
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--batches", type=int, nargs="+", default=[16])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--speed", nargs="*", default=[])
    p.add_argument("--modes", nargs="+", default=["graphs", "eager"],
                   help="graphs: Unsloth in its RL scope (its default), eager: Unsloth's graphs off, "
                        "fast / fast_keep: helpers.generate.fast_sampler (releasing / keeping its cache between rollouts)")
    p.add_argument("--check", type=int, default=0, help="greedy tokens to compare: fast graphed vs fast eager vs Unsloth")
    p.add_argument("--profile-tokens", type=int, default=0)
    p.add_argument("--profile-out", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    from helpers.runtime import speed_options as gpu_speed

    applied = gpu_speed.apply(a.speed)
    import torch
    from grpo_gpu import MODELS, SHAPES, build, decode_graph_stats, prompts
    from transformers import GenerationConfig
    from unsloth import FastLanguageModel
    from unsloth.models import _decode_graphs

    from helpers.model.load import load_model
    from helpers.model.lora import add_lora

    if a.shape in SHAPES and not (MODELS / a.shape / "config.json").exists():
        build([a.shape])
    model, tok = load_model(str(MODELS / a.shape), profile="gpu", max_seq_length=a.tokens + 256)
    model, _ = add_lora(model, 64)
    gen_cfg = GenerationConfig(max_new_tokens=a.tokens, do_sample=True, pad_token_id=tok.pad_token_id,
                               bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id], temperature=1.0,
                               top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0, disable_compile=True)
    # As GRPOTrainer batches them: each prompt repeated for its group of 16 generations.
    chats = prompts(max(a.batches) // 16 + 1)
    texts = [tok.apply_chat_template(chats[i // 16], tokenize=False, add_generation_prompt=True)
             for i in range(max(a.batches))]
    tok.padding_side = "left"

    from helpers.generate import fast_sampler as fast_rollout

    samplers = {"fast": fast_rollout.FastSampler(model), "fast_keep": fast_rollout.FastSampler(model, keep=True),
                "fast_torch": fast_rollout.FastSampler(model, kernels="torch")}

    def rollout(bsz, n, mode, profile=None, greedy=False, out_ids=None):
        batch = tok(texts[:bsz], return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
        cfg = GenerationConfig(**{**gen_cfg.to_dict(), "max_new_tokens": n, **({"do_sample": False} if greedy else {})})
        if mode.startswith("fast"):
            sampler = samplers[mode] if mode in samplers else fast_rollout.FastSampler(model, use_graphs=False)
            if mode == "fast_eager_torch":
                sampler = fast_rollout.FastSampler(model, use_graphs=False, kernels="torch")
            torch.cuda.synchronize()
            t = time.perf_counter()
            if profile is not None:
                with profile:
                    out = sampler.generate(batch["input_ids"], batch["attention_mask"], cfg)
                    torch.cuda.synchronize()
            else:
                out = sampler.generate(batch["input_ids"], batch["attention_mask"], cfg)
            torch.cuda.synchronize()
            if out_ids is not None:
                out_ids.append(out)
            return time.perf_counter() - t, out.shape[1] - batch["input_ids"].shape[1], batch["input_ids"].shape[1]
        _decode_graphs.ENABLED = None if mode == "graphs" else False
        FastLanguageModel.for_inference(model)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with _decode_graphs.rl_generation(), torch.no_grad():
            if profile is not None:
                with profile:
                    out = model.generate(**batch, generation_config=cfg)
                    torch.cuda.synchronize()
            else:
                out = model.generate(**batch, generation_config=cfg)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if out_ids is not None:
            out_ids.append(out)
        _decode_graphs.release_for_training(model)
        FastLanguageModel.for_training(model)
        new = out.shape[1] - batch["input_ids"].shape[1]
        return dt, new, batch["input_ids"].shape[1]

    check = None
    if a.check:
        with torch.no_grad():  # a non-zero adapter, so the check covers the LoRA path
            for name, prm in model.named_parameters():
                if "lora_B" in name:
                    prm.normal_(0, 0.02)
        outs = []
        for mode in ("fast", "fast_eager", "fast_torch", "graphs"):
            rollout(16, a.check, mode, greedy=True, out_ids=outs)
        P = outs[0].shape[1] - a.check

        def agree(x, y):
            same = (x[:, P:] == y[:, P:]).int()
            first_diff = (same.cumprod(1).sum(1)).float()
            return dict(equal=bool(torch.equal(x, y)), tokens_equal=round(same.float().mean().item(), 4),
                        mean_prefix_equal=round(first_diff.mean().item(), 1))

        check = dict(tokens=a.check, graphed_vs_eager=agree(outs[0], outs[1]), triton_vs_torch=agree(outs[0], outs[2]),
                     fast_vs_unsloth=agree(outs[0], outs[3]),
                     fast_stats=dict(samplers["fast"].stats))
        print("CHECK", json.dumps(check), flush=True)

    rows = []
    for mode in a.modes:
        for bsz in a.batches:
            if mode not in ("graphs", "fast", "fast_keep", "fast_torch") and bsz != a.batches[0]:
                continue  # the reference modes at the first batch size only
            times = []
            for _ in range(a.repeat + 1):
                dt, new, plen = rollout(bsz, a.tokens, mode)
                times.append(dt)
            best = statistics.median(times[1:])
            row = dict(mode=mode, batch=bsz, tokens=new, prompt_len=plen, first_s=round(times[0], 2),
                       s=round(best, 3), ms_per_token=round(1000 * best / new, 3),
                       tok_s=round(bsz * new / best, 1), graphs=decode_graph_stats(model),
                       fast=dict(samplers[mode].stats) if mode in samplers else None,
                       mem_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
            print("ROW", json.dumps(row), flush=True)
            rows.append(row)
    prof_summary = None
    if a.profile_tokens:
        from torch.profiler import ProfilerActivity, profile

        pmode = a.modes[0]
        rollout(a.batches[0], a.profile_tokens, pmode)  # warm
        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        dt, new, _ = rollout(a.batches[0], a.profile_tokens, pmode, profile=prof)
        ev = prof.key_averages()
        gpu = sum(e.self_device_time_total for e in ev) / 1e6
        prof_summary = dict(wall_s=round(dt, 3), gpu_busy_s=round(gpu, 3), tokens=new)
        print("PROFILE", json.dumps(prof_summary))
        if a.profile_out:
            with open(a.profile_out, "w") as fh:
                fh.write(json.dumps(prof_summary) + "\n\n")
                fh.write(ev.table(sort_by="self_cuda_time_total", row_limit=35))
                fh.write("\n\n")
                fh.write(ev.table(sort_by="self_cpu_time_total", row_limit=50))
    res = dict(shape=a.shape, speed=a.speed, applied=applied, rows=rows, profile=prof_summary, check=check,
               device=torch.cuda.get_device_name(0))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print("| mode | batch | tokens | s | ms/token | tok/s |")
    for r in rows:
        print(f"| {r['mode']} | {r['batch']} | {r['tokens']} | {r['s']} | {r['ms_per_token']} | {r['tok_s']} |")


if __name__ == "__main__":
    main()
