"""The table of benchmarks/multi_gpu/measure.sh's runs: GRPO completions (and completion tokens) per second on 1 and
N GPUs, steps after the first two (vLLM's and the kernels' warm-up), peak GPU memory per GPU, and the speed-up of
each pair's N-GPU run over its 1-GPU run.

    python benchmarks/multi_gpu/summarize.py                      # from benchmarks/multi_gpu/raw.tar.xz
    python benchmarks/multi_gpu/summarize.py runs/multi_gpu       # your own: runs/multi_gpu/<pair>/{1,2}/

A raw folder holds pairs ``<pair>/1`` and ``<pair>/N`` (measure.sh's output folders) and, optionally, single runs
(``<name>/run/grpo/metrics.jsonl`` directly under it).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shelf import main, markdown, rounded  # noqa: E402


def summarize(folder: Path) -> dict:
    """One run folder of measure.sh: steps after the first two, completions and tokens per second, peak memory."""
    rows = [json.loads(line) for line in (folder / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
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
    wall = folder / "wall"  # "END START" in seconds since the epoch, written by measure.sh
    end, start = (float(x) for x in wall.read_text().split()) if wall.exists() else (None, None)
    return {"gpus": processes, "steps_timed": len(steady), "completions_per_step": per_step,
            "median_step_s": rounded(statistics.median(r["step_time"] for r in steady), 4),
            "completions_per_s": rounded(per_step * len(steady) / seconds, 4),
            "tokens_per_s": rounded(tokens / seconds, 2), "mean_length": rounded(tokens / (per_step * len(steady)), 2),
            "peak_gib_per_gpu": [rounded(v, 3) for _, v in sorted(peak.items())],
            "wall_s": None if end is None else rounded(end - start, 1)}


def build(raw: Path) -> dict:
    runs = []
    for pair in sorted(p for p in raw.iterdir() if p.is_dir()):
        if (pair / "run").is_dir():  # a single run
            runs.append({"run": pair.name, **summarize(pair), "speedup_completions": None, "speedup_tokens": None})
            continue
        members = sorted((p for p in pair.iterdir() if p.is_dir()), key=lambda p: int(p.name))
        results = [summarize(p) for p in members]
        base = results[0]
        for r in results:
            runs.append({"run": pair.name, **r,
                         "speedup_completions": rounded(r["completions_per_s"] / base["completions_per_s"], 4),
                         "speedup_tokens": rounded(r["tokens_per_s"] / base["tokens_per_s"], 4)})
    return {"runs": runs}


def render(tables: dict) -> dict[str, str]:
    rows = []
    for r in tables["runs"]:
        speedup = ("-" if r["speedup_completions"] is None else
                   f"{r['speedup_completions']:.2f}× ({r['speedup_tokens']:.2f}×)")
        rows.append([r["run"], r["gpus"], r["steps_timed"], r["completions_per_step"], f"{r['median_step_s']:.2f}",
                     f"{r['completions_per_s']:.1f}", f"{r['tokens_per_s']:,.0f}", f"{r['mean_length']:.0f}",
                     ", ".join(f"{v:.1f}" for v in r["peak_gib_per_gpu"]) or "n/a", speedup,
                     "-" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f}"])
    return {"runs": markdown(["run", "GPUs", "steps timed", "completions/step", "median s/step", "completions/s",
                              "completion tokens/s", "mean length", "peak memory per GPU (GiB, nvidia-smi)",
                              "speed-up over 1 GPU, completions/s (tokens/s)", "wall min (measure.sh)"], rows)}


if __name__ == "__main__":
    main(HERE, build, render)
