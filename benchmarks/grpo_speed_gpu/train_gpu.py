"""The suite's own GPU path end to end, headless: helpers.model.load (Unsloth) → helpers.model.lora → helpers.train.grpo.train_grpo
(TRL's GRPOTrainer as Unsloth patches it, checkpoints) with helpers.dashboard.callback.callback writing metrics JSONL and PNG curves,
on the suite's synthetic arithmetic problems and reward functions (helpers.data.problems.problems, helpers.rewards.functions.functions).

The model is a local folder (``benchmarks/grpo_speed_gpu/grpo_gpu.py build``: random weights of a real shape with SmolLM2's
real tokenizer), so the run measures the path and its cost; random weights earn no reward worth learning from.

    python benchmarks/grpo_speed_gpu/train_gpu.py --shape smollm2-360m --steps 30 --G 16 --L 256 --save-steps 15 --run-dir runs/train30
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="smollm2-360m")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--G", type=int, default=None, help="default: the profile's num_generations")
    p.add_argument("--L", type=int, default=None, help="default: the profile's max_completion_length")
    p.add_argument("--save-steps", type=int, default=10)
    p.add_argument("--speed", nargs="*", default=[])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    os.environ["GRPO_PROFILE"] = a.profile
    from helpers.runtime import speed_options as gpu_speed

    if a.speed:  # else: the suite's defaults for this machine (helpers.runtime.speed_options.defaults)
        os.environ[gpu_speed.ENV] = ",".join(o for o in a.speed if o != "none") or "none"
    applied = {"options": ",".join(gpu_speed.defaults()) if not a.speed else os.environ[gpu_speed.ENV]}
    import torch
    from grpo_gpu import MODELS, SHAPES, build

    from helpers.data.synthetic import synthetic_dataset
    from helpers.model.load import load_model
    from helpers.model.lora import add_lora
    from helpers.rewards.reward_set import reward_functions
    from helpers.train.grpo import train_grpo

    t0 = time.perf_counter()
    overrides = dict(max_steps=a.steps, save_steps=a.save_steps)
    if a.G:
        overrides.update(num_generations=a.G, per_device_train_batch_size=a.G)
    if a.L:
        overrides.update(max_completion_length=a.L)
    if a.shape in SHAPES and not (MODELS / a.shape / "config.json").exists():
        build([a.shape])  # random weights of the shape, the embedded model's tokenizer (grpo_gpu.py)
    model, tok = load_model(str(MODELS / a.shape) if not os.path.isdir(a.shape) else a.shape, profile=a.profile)
    model, report = add_lora(model, 64)
    print(report, flush=True)
    dataset = synthetic_dataset(max(200, a.steps * 4), seed=0)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train_grpo(model, tok, dataset, reward_functions(), run_dir=a.run_dir, profile=a.profile,
                        dashboard={"notebook": False}, **overrides)
    print(result, flush=True)
    run = Path(a.run_dir)
    files = sorted(str(f.relative_to(run)) for f in run.rglob("*") if f.is_file() and "checkpoint-" not in str(f))
    res = dict(shape=a.shape, profile=a.profile, steps=result.steps, seconds=round(result.seconds, 1),
               wall_s=round(time.perf_counter() - t0, 1), speed=applied, metrics_rows=len(result.history),
               checkpoints=[c.name for c in result.checkpoints], files=files,
               peak_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
               peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
               last=result.history[-1] if result.history else None,
               fast_rollout=dict(model._fast_sampler.stats, fallbacks=model._fast_sampler.fallbacks)
               if getattr(model, "_fast_sampler", None) else None)
    print("TRAIN", json.dumps(res), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
