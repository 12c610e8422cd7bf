"""The table of benchmarks/multi_gpu/measure.sh's runs: GRPO completions (and completion tokens) per second on 1 and
N GPUs, steps after the first two (vLLM's and the kernels' warm-up), peak GPU memory per GPU, and the speed-up.

    python benchmarks/multi_gpu/summarize.py /tmp/mg/1 /tmp/mg/2
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def summarize(folder: Path) -> dict:
    rows = [json.loads(line) for line in (folder / "run" / "grpo" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    info = json.loads((folder / "run" / "grpo" / "adapter" / "training.json").read_text())
    s, processes = info["settings"], info["processes"]
    per_step = s["per_device_train_batch_size"] * s["gradient_accumulation_steps"] * processes
    steady = [r for r in rows if r.get("step_time") and r["step"] > 2]
    seconds = sum(r["step_time"] for r in steady)
    tokens = sum(r["completions/mean_length"] * per_step for r in steady)
    peak = defaultdict(float)
    memory = folder / "memory.csv"
    for line in memory.read_text().splitlines() if memory.exists() else ():
        gpu, used = (x.strip() for x in line.split(","))
        peak[gpu] = max(peak[gpu], float(used) / 1024)
    return {"processes": processes, "steps": len(steady), "completions_per_step": per_step,
            "median_step_s": statistics.median(r["step_time"] for r in steady),
            "completions_per_s": per_step * len(steady) / seconds, "tokens_per_s": tokens / seconds,
            "mean_length": tokens / (per_step * len(steady)), "peak_gib": dict(peak)}


def main(folders: list[str]) -> None:
    results = [summarize(Path(f)) for f in folders]
    base = results[0]
    print("| GPUs | steps timed | completions/step | median s/step | completions/s | completion tokens/s | mean length | "
          "peak memory per GPU (GiB, nvidia-smi) | speed-up (completions/s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        peak = ", ".join(f"{v:.1f}" for _, v in sorted(r["peak_gib"].items())) or "n/a"
        print(f"| {r['processes']} | {r['steps']} | {r['completions_per_step']} | {r['median_step_s']:.2f} | "
              f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['mean_length']:.0f} | {peak} | "
              f"{r['completions_per_s'] / base['completions_per_s']:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
